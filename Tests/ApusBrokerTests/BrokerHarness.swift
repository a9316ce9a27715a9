import ApusBroker
import ApusIO
import ApusStorage
import ApusTestSupport
import Foundation
import KafkaProtocol
import KafkaWire
import Logging

/// A broker over real logs in a temporary directory, driven without sockets: requests go in
/// as frames, responses come out as bytes (file ranges read back with pread).
final class BrokerHarness {
    let path: String
    let broker: Broker
    var correlation: Int32 = 0

    init(config: BrokerConfig = BrokerConfig(), path: String? = nil) throws {
        self.path = path ?? NSTemporaryDirectory() + "apus-broker-\(UUID().uuidString.prefix(8))"
        var logger = Logger(label: "apus.broker.test")
        logger.logLevel = .critical
        let logs = try LogManager(dataDirectory: self.path, defaultConfig: config.log, logger: logger)
        broker = try Broker(config: config, logs: logs, shard: LogShard(backend: PosixAppendBackend()), logger: logger, nowMs: 1_700_000_000_000)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Sends a request and returns the decoded response, running turns until it is ready.
    func call<R: KafkaRequest>(_ request: R, version: Int16) throws -> R.Response? {
        correlation += 1
        var w = WireWriter()
        RequestHeader(requestApiKey: R.apiKey, requestApiVersion: version, correlationId: correlation, clientId: "test")
            .encode(into: &w, version: R.requestHeaderVersion(version))
        request.encode(into: &w, version: version)
        let outcome = w.bytes.withUnsafeBytes { broker.handle(frame: $0, connection: 1, sequence: UInt64(correlation), nowMs: 1_700_000_000_000) }
        var frame: ResponseFrame?
        switch outcome {
        case .respond(let f): frame = f
        case .noResponse: _ = broker.endOfTurn(nowMs: 1_700_000_000_000); return nil
        case .close(let why): throw HarnessError(why)
        case .pending:
            for _ in 0..<100 where frame == nil {
                frame = broker.endOfTurn(nowMs: 1_700_000_000_000 + 60_000).first { $0.correlationId == correlation }?.frame
            }
        }
        let bytes = try Self.bytes(of: try frame.orThrow("no response"))
        return try bytes.withUnsafeBytes { raw in
            var reader = WireReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
            let header = try ResponseHeader.decode(from: &reader, version: R.responseHeaderVersion(version))
            guard header.correlationId == correlation else { throw HarnessError("correlation id \(header.correlationId)") }
            return try R.Response.decode(from: &reader, version: version)
        }
    }

    /// A frame's bytes with file ranges read back.
    static func bytes(of frame: ResponseFrame) throws -> [UInt8] {
        var out: [UInt8] = []
        for part in frame.parts {
            switch part {
            case .bytes(let b): out += b
            case .file(let range):
                var chunk = [UInt8](repeating: 0, count: range.length)
                let n = try chunk.withUnsafeMutableBytes { try Sys.preadFully(range.fd, $0, at: range.position) }
                out += chunk.prefix(n)
            }
        }
        return out
    }
}

extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let self else { throw HarnessError(message) }
        return self
    }
}

/// A record batch as a producer would send it.
func makeBatch(values: [String], producerId: Int64 = -1, epoch: Int16 = -1, sequence: Int32 = -1) -> [UInt8] {
    var builder = RecordBatchBuilder(capacity: 4096)
    builder.reset(baseTimestamp: 1_700_000_000_000, producerId: producerId, producerEpoch: epoch, baseSequence: sequence)
    for v in values {
        _ = Array(v.utf8).withUnsafeBytes { builder.append(key: nil, value: $0) }
    }
    return Array(try! builder.finish())
}

func produceRequest(topic: String, partition: Int32 = 0, batch: [UInt8], acks: Int16 = -1) -> ProduceRequest {
    ProduceRequest(acks: acks, timeoutMs: 1000, topicData: [.init(name: topic, partitionData: [.init(index: partition, records: batch)])])
}
