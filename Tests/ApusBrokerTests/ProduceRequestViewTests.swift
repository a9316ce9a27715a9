@testable import ApusBroker
import Foundation
import KafkaProtocol
import KafkaWire
import Testing

/// The hand-read Produce request (one copy of the batches) sees exactly what the generated
/// decoder sees, on every produce request captured from real clients and on random ones.
@Suite struct ProduceRequestViewTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("KafkaProtocolTests/Fixtures")

    func check(_ body: [UInt8], version: Int16) throws {
        let generated = try ProduceRequest.decode(body, version: version)
        try body.withUnsafeBytes { raw in
            var r = WireReader(raw)
            let view = try ProduceRequestView(from: &r, version: version)
            #expect(r.isAtEnd)
            #expect(view.acks == generated.acks)
            #expect(view.topics.map(\.name) == generated.topicData.map(\.name))
            for (v, g) in zip(view.topics, generated.topicData) {
                #expect(v.partitions.map(\.index) == g.partitionData.map(\.index))
                #expect(v.partitions.map { $0.records.map { Array($0) } } == g.partitionData.map(\.records))
            }
        }
    }

    @Test func capturedClientRequests() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.fixtures.path).filter { $0.hasPrefix("produce_request_v") }
        #expect(files.count >= 20)
        for file in files {
            let frame = try [UInt8](Data(contentsOf: Self.fixtures.appendingPathComponent(file)))
            let version = Int16(bigEndian: frame.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: Int16.self) })
            let body = try frame.withUnsafeBytes { raw -> [UInt8] in
                var reader = WireReader(raw)
                _ = try RequestHeader.decode(from: &reader, version: ProduceRequest.requestHeaderVersion(version))
                return Array(raw[reader.position...])
            }
            try check(body, version: version)
        }
    }

    @Test func everyVersionWithRandomContents() throws {
        for version in ProduceRequest.validVersions {
            for i in 0..<20 {
                var request = ProduceRequest(transactionalId: i % 3 == 0 ? "tx" : nil, acks: Int16(i % 3) - 1, timeoutMs: Int32(i))
                for t in 0..<(i % 3) {
                    request.topicData.append(.init(name: "topic-\(t)", partitionData: (0..<(i % 4)).map {
                        .init(index: Int32($0), records: $0 % 2 == 0 ? [UInt8](repeating: UInt8(i), count: i * 7) : nil)
                    }))
                }
                try check(request.encoded(version: version), version: version)
            }
        }
    }

    @Test func truncatedRequestsAreTypedErrors() throws {
        let body = ProduceRequest(acks: 1, timeoutMs: 5, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: [1, 2, 3])])])
            .encoded(version: 8)
        for cut in 0..<body.count {
            let prefix = Array(body.prefix(cut))
            #expect(throws: WireError.self) {
                try prefix.withUnsafeBytes { raw in
                    var r = WireReader(raw)
                    _ = try ProduceRequestView(from: &r, version: 8)
                }
            }
        }
    }
}
