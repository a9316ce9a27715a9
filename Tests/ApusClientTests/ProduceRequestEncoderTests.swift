import ApusClient
import KafkaProtocol
import KafkaWire
import Testing

@Suite struct ProduceRequestEncoderTests {
    /// A batch built with RecordBatchBuilder, framed by the hand-written encoder, must decode
    /// with the generated types and equal, byte for byte, what the generated encoder writes.
    @Test(arguments: Array(Int16(3)...11))
    func roundTrip(version: Int16) throws {
        var builder = RecordBatchBuilder(capacity: 4096)
        builder.reset(baseTimestamp: 1_700_000_000_000)
        let value = Array("hello, apus".utf8)
        for i in 0..<10 {
            let key = Array("k\(i)".utf8)
            let ok = key.withUnsafeBytes { k in value.withUnsafeBytes { v in builder.append(key: k, value: v) } }
            #expect(ok)
        }
        let batch = Array(try builder.finish(compression: .lz4))

        var w = WireWriter()
        ProduceRequestEncoder.writePrefix(
            into: &w, version: version, correlationId: 42, clientId: "apus-test",
            acks: -1, timeoutMs: 1234, topic: "topic-a", partition: 3, recordsLength: batch.count)
        let frame = w.bytes + batch + ProduceRequestEncoder.flexibleSuffix.prefix(ProduceRequestEncoder.suffixLength(version: version))

        let (header, request) = try Self.decode(frame, version: version)
        #expect(header.requestApiKey == 0 && header.requestApiVersion == version)
        #expect(header.correlationId == 42 && header.clientId == "apus-test")
        #expect(request.transactionalId == nil && request.acks == -1 && request.timeoutMs == 1234)
        #expect(request.topicData.count == 1 && request.topicData[0].name == "topic-a")
        #expect(request.topicData[0].partitionData.count == 1 && request.topicData[0].partitionData[0].index == 3)
        #expect(request.topicData[0].partitionData[0].records == batch)

        // And the batch itself reads back: 10 records, lz4.
        let decoded = try batch.withUnsafeBytes { try RecordBatchView(validating: $0) }
        #expect(decoded.recordCount == 10)
    }

    /// Several partitions in one request: heads between the batches, same bytes as the
    /// generated encoder.
    @Test(arguments: Array(Int16(3)...11))
    func severalPartitions(version: Int16) throws {
        var batches: [[UInt8]] = []
        for n in 1...3 {
            var builder = RecordBatchBuilder(capacity: 4096)
            builder.reset(baseTimestamp: 1_700_000_000_000 + Int64(n))
            for i in 0..<n {
                let value = Array("record \(i) of \(n)".utf8)
                let ok = value.withUnsafeBytes { builder.append(key: nil, value: $0) }
                #expect(ok)
            }
            batches.append(Array(try builder.finish(compression: .none)))
        }
        let partitions: [Int32] = [7, 0, 2]
        var w = WireWriter()
        ProduceRequestEncoder.writeHeader(into: &w, version: version, correlationId: 9, clientId: "apus-test", acks: 1, timeoutMs: 500,
                                          topic: "t", partitions: batches.count)
        var frame: [UInt8] = []
        var from = 0
        for (i, batch) in batches.enumerated() {
            ProduceRequestEncoder.writePartitionHead(into: &w, version: version, partition: partitions[i], recordsLength: batch.count, first: i == 0)
            frame += w.bytes[from...] + batch
            from = w.count
        }
        ProduceRequestEncoder.patchSize(&w, version: version, recordsLength: batches.reduce(0) { $0 + $1.count })
        frame.replaceSubrange(0..<4, with: w.bytes[0..<4])
        frame += ProduceRequestEncoder.flexibleSuffix.prefix(ProduceRequestEncoder.suffixLength(version: version))
        let (_, request) = try Self.decode(frame, version: version)
        #expect(request.topicData.count == 1 && request.topicData[0].name == "t")
        #expect(request.topicData[0].partitionData.map(\.index) == partitions)
        #expect(request.topicData[0].partitionData.map(\.records) == batches)
    }

    /// Decodes a whole frame with the generated types, checking that the size prefix covers the
    /// rest, nothing is left over, and the generated encoder writes the same bytes.
    static func decode(_ frame: [UInt8], version: Int16) throws -> (RequestHeader, ProduceRequest) {
        #expect(frame.prefix(4).reduce(0) { $0 << 8 | Int($1) } == frame.count - 4)
        let body = Array(frame.dropFirst(4))
        let (header, request) = try body.withUnsafeBytes { raw in
            var r = WireReader(raw)
            let header = try RequestHeader.decode(from: &r, version: ProduceRequest.requestHeaderVersion(version))
            let request = try ProduceRequest.decode(from: &r, version: version)
            #expect(r.isAtEnd)
            return (header, request)
        }
        var g = WireWriter()
        header.encode(into: &g, version: ProduceRequest.requestHeaderVersion(version))
        request.encode(into: &g, version: version)
        #expect(g.bytes == body)
        return (header, request)
    }
}
