import Foundation
import KafkaCodegen

// apus-codegen [--specs DIR] [--root DIR] [--check]
// Regenerates KafkaProtocol's message types (and their test helpers) from Kafka's JSON specs
// (the copies in Sources/KafkaCodegen/Specs, taken from Apache Kafka; see README.md there).
// --check writes nothing and exits 1 if the committed files differ from what would be generated.
var specs = "Sources/KafkaCodegen/Specs"
var root = "."
var check = false
var args = CommandLine.arguments.dropFirst()
while let arg = args.popFirst() {
    switch arg {
    case "--specs": specs = args.popFirst() ?? specs
    case "--root": root = args.popFirst() ?? root
    case "--check": check = true
    default:
        FileHandle.standardError.write(Data("usage: apus-codegen [--specs DIR] [--root DIR] [--check]\n".utf8))
        exit(2)
    }
}

do {
    let generator = Generator(specsDirectory: URL(fileURLWithPath: specs))
    let rootURL = URL(fileURLWithPath: root)
    let differences = try generator.differences(from: rootURL)
    if check {
        for d in differences { print("out of date: \(d)") }
        exit(differences.isEmpty ? 0 : 1)
    }
    try generator.write(to: rootURL)
    print("generated \(try generator.generate().count) files; \(differences.count) changed")
} catch {
    FileHandle.standardError.write(Data("apus-codegen: \(error)\n".utf8))
    exit(1)
}
