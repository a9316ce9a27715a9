import Foundation
import KafkaProtocol
import KafkaWire
import Testing

/// Requests captured from real clients (kcat/librdkafka 2.0.2, confluent-kafka with a recent
/// librdkafka, kafka-python) by tools/capture-fixtures: each decodes, consumes every byte,
/// re-encodes to the same bytes, and produce requests carry exactly the records sent.
@Suite struct FixtureTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// One manifest entry (the file name; its JSON object is looked up in `manifest`).
    struct Entry: Sendable, CustomStringConvertible {
        let file: String
        var json: [String: Any] { FixtureTests.manifest[file] ?? [:] }
        var description: String { file }
    }

    nonisolated(unsafe) static let manifest: [String: [String: Any]] = {
        let data = (try? Data(contentsOf: folder.appendingPathComponent("manifest.json"))) ?? Data("[]".utf8)
        let list = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.map { ($0["file"] as! String, $0) })
    }()

    static let entries: [Entry] = manifest.keys.sorted().map(Entry.init(file:))

    @Test func manifestListsEveryFixture() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { $0.hasSuffix(".bin") }
        #expect(Self.entries.count >= 70)
        #expect(Set(files) == Set(Self.entries.map(\.file)))
    }

    @Test(arguments: entries)
    func decodesAndReencodesExactly(_ entry: Entry) throws {
        let bytes = try [UInt8](Data(contentsOf: Self.folder.appendingPathComponent(entry.file)))
        let apiKey = try #require(ApiKey(rawValue: Int16(entry.json["apiKey"] as! Int)))
        let version = Int16(entry.json["apiVersion"] as! Int)
        try Self.check(apiKey.requestType, bytes: bytes, version: version, entry: entry)
    }

    static func check<M: KafkaRequest>(_ type: M.Type, bytes: [UInt8], version: Int16, entry: Entry) throws {
        try bytes.withUnsafeBytes { raw in
            var r = WireReader(raw)
            let headerVersion = M.requestHeaderVersion(version)
            let header = try RequestHeader.decode(from: &r, version: headerVersion)
            #expect(header.requestApiKey == M.apiKey)
            #expect(header.requestApiVersion == version)
            #expect(Int(header.correlationId) == entry.json["correlationId"] as? Int)
            #expect(header.clientId == entry.json["clientId"] as? String)
            let body = try M.decode(from: &r, version: version)
            #expect(r.isAtEnd, "\(entry.file): \(r.remaining) bytes left after the body")

            var w = WireWriter()
            header.encode(into: &w, version: headerVersion)
            body.encode(into: &w, version: version)
            #expect(w.bytes == bytes, "\(entry.file) re-encodes differently")

            if let produce = body as? ProduceRequest { try checkProduce(produce, entry) }
            if let apiVersions = body as? ApiVersionsRequest, version >= 3 {
                let client = try #require(entry.json["client"] as? String)
                #expect(!apiVersions.clientSoftwareName.isEmpty && client.contains(apiVersions.clientSoftwareName.prefix(5)))
                if let name = entry.json["clientSoftwareName"] as? String {
                    #expect(apiVersions.clientSoftwareName == name)
                    #expect(apiVersions.clientSoftwareVersion == entry.json["clientSoftwareVersion"] as? String)
                }
            }
        }
    }

    /// The record batches decode (decompressing) to the keys, values and headers the client sent.
    static func checkProduce(_ request: ProduceRequest, _ entry: Entry) throws {
        #expect(Int(request.acks) == entry.json["acks"] as? Int)
        #expect(Int(request.timeoutMs) == entry.json["timeoutMs"] as? Int)
        let codec = try #require(entry.json["compression"] as? String)
        let idempotent = entry.json["idempotent"] as? Bool ?? false
        let expected = try #require(entry.json["expected"] as? [[String: Any]])
        #expect(!expected.isEmpty)
        for part in expected {
            let topic = try #require(request.topicData.first { $0.name == part["topic"] as? String })
            let partition = try #require(topic.partitionData.first { Int($0.index) == part["partition"] as? Int })
            let records = try #require(partition.records)
            var decoded: [Record] = []
            try records.withUnsafeBytes { raw in
                var batches = RecordBatchSequence(raw)
                while let view = try batches.next() {
                    #expect("\(try view.compression)" == codec, "\(entry.file) codec")
                    if idempotent {
                        #expect(view.producerId >= 0 && view.baseSequence >= 0, "\(entry.file) idempotent fields")
                    } else {
                        #expect(view.producerId == -1)
                    }
                    let batch = try RecordBatch(view)
                    #expect(batch.records.count == Int(view.recordCount))
                    #expect(batch.lastOffsetDelta == Int32(batch.records.count - 1))
                    decoded += batch.records
                }
                #expect(batches.trailingBytes == 0)
            }
            let want = try #require(part["records"] as? [[String: Any]])
            #expect(decoded.count == want.count, "\(entry.file) record count")
            for (record, w) in zip(decoded, want) {
                #expect(record.key == (w["key"] as? String).map { Array($0.utf8) }, "\(entry.file) key")
                #expect(record.value == (w["value"] as? String).map { Array($0.utf8) }, "\(entry.file) value")
                let headers = (w["headers"] as? [[Any]] ?? []).map {
                    RecordHeader(key: $0[0] as! String, value: ($0[1] as? String).map { Array($0.utf8) })
                }
                #expect(record.headers == headers, "\(entry.file) headers")
            }
        }
    }
}
