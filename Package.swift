// swift-tools-version: 6.1
import PackageDescription


let package = Package(
    name: "apus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KafkaWire", targets: ["KafkaWire"]),
        .library(name: "KafkaProtocol", targets: ["KafkaProtocol"]),
        .executable(name: "apus-codegen", targets: ["apus-codegen"]),
    ],
    targets: [
        // C libraries from Debian (-dev packages; see .ci/run for the install line).
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CNuma", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSnappy", pkgConfig: "snappy", providers: [.apt(["libsnappy-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // CRC32C: ISA-L (libisal, loaded at run time) with an SSE4.2 fallback.
        .target(
            name: "CCRC32C",
            cSettings: [.unsafeFlags(["-O3", "-msse4.2", "-mpclmul"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),

        // Kafka wire primitives, RecordBatch v2, CRC32C, compression codecs.
        .target(
            name: "KafkaWire",
            dependencies: ["CCRC32C", "CZlib", "CSnappy", "CLZ4", "CZstd"]
        ),
        // Request/response types generated from ../shared/kafka-protocol (committed).
        .target(name: "KafkaProtocol", dependencies: ["KafkaWire"]),

        // The code generator: a library (so tests can regenerate) and its command.
        .target(name: "KafkaCodegen"),
        .executableTarget(name: "apus-codegen", dependencies: ["KafkaCodegen"]),

        .testTarget(name: "KafkaWireTests", dependencies: ["KafkaWire"]),
        .testTarget(
            name: "KafkaProtocolTests",
            dependencies: ["KafkaProtocol", "KafkaWire", "KafkaCodegen"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
