// swift-tools-version: 6.1
import PackageDescription


let package = Package(
    name: "apus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KafkaWire", targets: ["KafkaWire"]),
        .library(name: "KafkaProtocol", targets: ["KafkaProtocol"]),
        .library(name: "ApusIO", targets: ["ApusIO"]),
        .library(name: "ApusStorage", targets: ["ApusStorage"]),
        .library(name: "ApusClient", targets: ["ApusClient"]),
        .library(name: "ApusLab", targets: ["ApusLab"]),
        .executable(name: "apus-codegen", targets: ["apus-codegen"]),
        .executable(name: "apus", targets: ["apus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C libraries from Debian (-dev packages; see .ci/run for the install line).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSnappy", pkgConfig: "snappy", providers: [.apt(["libsnappy-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // CRC32C: ISA-L (libisal, loaded at run time) with an SSE4.2 fallback.
        .target(
            name: "CCRC32C",
            cSettings: [.unsafeFlags(["-O3"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),

        // Kafka wire primitives, RecordBatch v2, CRC32C, compression codecs.
        .target(
            name: "KafkaWire",
            dependencies: ["CCRC32C", "CZlib", "CSnappy", "CLZ4", "CZstd"]
        ),
        // The only module that makes syscalls: file I/O wrappers and the append backends.
        // ... and thread placement (CPU affinity, libnuma).
        .target(name: "CApusSys", linkerSettings: [.linkedLibrary("numa"), .linkedLibrary("pthread")]),
        // liburing behind a narrow C binding (see its header for why not a system module).
        .target(name: "CApusUring", linkerSettings: [.linkedLibrary("uring")]),
        .target(name: "ApusIO", dependencies: ["CApusUring", "CApusSys"]),

        // OpenSSL 3 (libssl-dev) behind a narrow binding: SCRAM's hashes and TLS over memory.
        .target(name: "CApusTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // Partition logs: segments, indexes, group commit, durability, recovery, retention.
        .target(name: "ApusStorage", dependencies: ["ApusIO", "KafkaWire", .product(name: "Logging", package: "swift-log")]),

        // The Kafka broker's logic: one handler file per API, no sockets, no syscalls.
        .target(name: "ApusBroker", dependencies: ["ApusStorage", "KafkaProtocol", "CApusTLS", "KafkaWire", .product(name: "Logging", package: "swift-log")]),

        // apus serve's settings: the one table of configuration keys (the lab checks plans with it).
        .target(name: "ApusConfig", dependencies: [
            "ApusBroker", "ApusIO", "ApusStorage", .product(name: "Yams", package: "Yams"),
        ]),
        // Cluster metadata on etcd (its v3 JSON gateway over ApusIO's sockets).
        .target(name: "ApusCluster", dependencies: ["ApusIO", .product(name: "Logging", package: "swift-log")]),
        // apus serve: the event loop, connections, lifecycle, the metrics endpoint.
        .target(name: "ApusServer", dependencies: [
            "ApusBroker", "ApusClient", "ApusCluster", "ApusConfig", "CApusTLS", "ApusIO", "ApusStorage", "KafkaProtocol",
            .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
        ]),
        // A fast Kafka producer (the lab's instrument); its socket and clocks come from ApusIO.
        .target(name: "ApusClient", dependencies: ["ApusIO", "KafkaWire", "KafkaProtocol"]),
        // The lab: open-loop load, latency histograms (and their .hlog encoding), sweeps, reports.
        .target(name: "ApusLab", dependencies: [
            "ApusClient", "ApusConfig", "ApusIO", "KafkaProtocol", "KafkaWire", "CZlib", .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Yams", package: "Yams"),
        ]),

        .executableTarget(name: "apus", dependencies: [
            "ApusServer", "ApusConfig", "ApusStorage", "ApusIO", "ApusLab", "ApusClient", "ApusCluster",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Request/response types generated from ../shared/kafka-protocol (committed).
        .target(name: "KafkaProtocol", dependencies: ["KafkaWire"]),

        // The code generator: a library (so tests can regenerate) and its command.
        .target(name: "KafkaCodegen", exclude: ["Specs"]),
        .executableTarget(name: "apus-codegen", dependencies: ["KafkaCodegen"]),

        // The child process of the storage crash tests (Tests/ApusStorageTests/CrashRecoveryTests.swift).
        .executableTarget(
            name: "apus-storage-crashtest",
            dependencies: ["ApusStorage", "ApusIO", "KafkaWire", .product(name: "Logging", package: "swift-log")]
        ),

        .testTarget(
            name: "ApusStorageTests",
            dependencies: ["ApusStorage", "ApusIO", "KafkaWire", "apus-storage-crashtest", .product(name: "Logging", package: "swift-log")]
        ),
        // Test support shared by the test targets: a real apus serve child process, commands.
        .target(name: "ApusTestSupport", path: "Tests/ApusTestSupport"),
        .testTarget(name: "ApusServerTests", dependencies: ["apus", "ApusServer", "ApusConfig", "ApusStorage", "ApusIO", "KafkaProtocol", "KafkaWire", "ApusTestSupport"]),
        .testTarget(name: "ApusBrokerTests", dependencies: ["ApusBroker", "ApusStorage", "ApusIO", "KafkaProtocol", "KafkaWire", .product(name: "Logging", package: "swift-log"), "ApusTestSupport"]),
        .testTarget(name: "ApusClientTests", dependencies: ["ApusClient", "ApusLab", "KafkaProtocol", "KafkaWire", "apus", "ApusTestSupport"]),
        .testTarget(name: "ApusLabTests", dependencies: ["ApusLab", "ApusClient", "KafkaWire", "apus", "ApusTestSupport", .product(name: "Histogram", package: "hdrhistogram-swift")]),
        .testTarget(name: "ApusClusterTests", dependencies: ["ApusCluster", "ApusTestSupport", "apus", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "KafkaWireTests", dependencies: ["KafkaWire", "CLZ4", "CSnappy", "CZstd"]),
        .testTarget(
            name: "KafkaProtocolTests",
            dependencies: ["KafkaProtocol", "KafkaWire", "KafkaCodegen"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
