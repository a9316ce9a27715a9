import Foundation
import KafkaCodegen
import Testing

/// The committed generated code is exactly what the generator writes from the specs.
@Suite struct CodegenTests {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func committedCodeMatchesTheSpecs() throws {
        let specs = Self.packageRoot.appendingPathComponent("Sources/KafkaCodegen/Specs")
        let generator = Generator(specsDirectory: specs)
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("apus-codegen-\(getpid())")
        defer { try? FileManager.default.removeItem(at: temporary) }
        try generator.write(to: temporary)
        // What a fresh regeneration wrote must equal the committed tree, file for file.
        for folder in Generator.outputFolders {
            let fresh = try FileManager.default.contentsOfDirectory(atPath: temporary.appendingPathComponent(folder).path).sorted()
            let committed = try FileManager.default.contentsOfDirectory(atPath: Self.packageRoot.appendingPathComponent(folder).path).sorted()
            #expect(fresh == committed, "files in \(folder)")
            for name in fresh {
                let a = try String(contentsOf: temporary.appendingPathComponent("\(folder)/\(name)"), encoding: .utf8)
                let b = try? String(contentsOf: Self.packageRoot.appendingPathComponent("\(folder)/\(name)"), encoding: .utf8)
                #expect(a == b, "\(folder)/\(name) is out of date: run `swift run apus-codegen`")
            }
        }
        #expect(try generator.differences(from: Self.packageRoot).isEmpty)
    }
}
