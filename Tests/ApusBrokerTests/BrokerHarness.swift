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
///
/// With `shards` > 1 the shards' brokers share one mesh and are driven in turns from the test's
/// thread, as their event loops would: jobs between shards go through their real inboxes.
final class BrokerHarness {
    let path: String
    let brokers: [Broker]
    var broker: Broker { brokers[0] }
    var correlation: Int32 = 0
    /// The shard requests go to unless a call says otherwise.
    var via = 0
    /// Completions for other requests that arrived while a call waited for its own.
    var others: [Completion] = []

    /// - Parameter logger: the brokers' (by default one that logs only critical lines).
    init(config: BrokerConfig = BrokerConfig(), path: String? = nil, shards: Int = 1, logger: Logger? = nil) throws {
        self.path = path ?? NSTemporaryDirectory() + "apus-broker-\(UUID().uuidString.prefix(8))"
        let logger = logger ?? {
            var quiet = Logger(label: "apus.broker.test")
            quiet.logLevel = .critical
            return quiet
        }()
        let logs = try Self.reopen(self.path, config: config.log, logger: logger)
        if shards == 1 {
            brokers = [try Broker(config: config, logs: logs, shard: LogShard(backend: PosixAppendBackend()), logger: logger, nowMs: 1_700_000_000_000)]
        } else {
            let mesh = ShardMesh(count: shards, catalog: try TopicCatalog.load(logs: logs, shards: shards, broker: config, logger: logger, nowMs: 1_700_000_000_000),
                                 security: try SecurityStore.load(logs: logs, logger: logger))
            brokers = try (0..<shards).map { index in
                try Broker(config: config, logs: logs, shard: LogShard(backend: PosixAppendBackend()), logger: logger,
                           nowMs: 1_700_000_000_000, mesh: mesh, index: index)
            }
        }
    }

    /// Opens the data directory. A reopen right after a shutdown may find the `.lock` still held
    /// by this very process for a moment: every test target runs in one process, and a child
    /// another test is spawning holds a copy of the closed lock descriptor until its exec closes
    /// it (CLOEXEC). Only that case — the holder is us — is waited for, up to 5 s.
    static func reopen(_ path: String, config: LogConfig, logger: Logger) throws -> LogManager {
        let deadline = Date().addingTimeInterval(5)
        let me = "pid \(getpid())"
        while true {
            do {
                return try LogManager(dataDirectory: path, defaultConfig: config, logger: logger)
            } catch {
                guard case .dataDirectoryInUse(_, let holder) = error, holder == me, Date() < deadline else { throw error }
                usleep(10_000)
            }
        }
    }

    /// Sends requests through a shard that does not own `partition` of `topic` (with several
    /// shards), so that they take the cross-shard path.
    func viaOtherShard(than topic: String, _ partition: Int32 = 0) {
        via = (broker.mesh.owner(topic: topic, partition: partition) + 1) % brokers.count
    }

    /// Syncs every shard's logs and marks a clean shutdown.
    func shutdown() throws {
        for broker in brokers.dropFirst() { broker.syncAll(nowMs: 1_700_000_000_000) }
        try broker.shutdown(nowMs: 1_700_000_000_000)
    }

    /// Connections each shard's turns asked to close so far.
    var closes: [[(connection: ConnectionID, reason: String)]] = []

    /// One turn of every shard; returns the completions for connections of shard `via`.
    func turn(nowMs: Int64, collecting via: Int) -> [Completion] {
        var mine: [Completion] = []
        if closes.count < brokers.count { closes = Array(repeating: [], count: brokers.count) }
        for (index, broker) in brokers.enumerated() {
            broker.startOfTurn()
            let done = broker.endOfTurn(nowMs: nowMs)
            broker.finishJobs()
            closes[index] += done.closes
            if index == via { mine += done.completions }
        }
        return mine
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Sends a request and returns the decoded response, running turns until it is ready.
    /// - Parameter via: the shard whose connection sends it (connection ids ≡ shard mod shards).
    func call<R: KafkaRequest>(_ request: R, version: Int16, via: Int? = nil, nowMs: Int64 = 1_700_000_000_000,
                               session: ClientSession = Broker.plaintextSession) throws -> R.Response? {
        guard let frame = try send(request, version: version, via: via ?? self.via, nowMs: nowMs, session: session) else { return nil }
        return try decode(frame, R.self, version: version)
    }

    /// Sends a request; runs turns until its response is ready (nil for acks=0 produce).
    func send<R: KafkaRequest>(_ request: R, version: Int16, via: Int = 0, nowMs: Int64 = 1_700_000_000_000, turns: Int = 100,
                               session: ClientSession = Broker.plaintextSession) throws -> ResponseFrame? {
        correlation += 1
        var w = WireWriter()
        RequestHeader(requestApiKey: R.apiKey, requestApiVersion: version, correlationId: correlation, clientId: "test")
            .encode(into: &w, version: R.requestHeaderVersion(version))
        request.encode(into: &w, version: version)
        let connection = brokers.count == 1 ? 1 : via + brokers.count
        let outcome = w.bytes.withUnsafeBytes { brokers[via].handle(frame: $0, connection: connection, sequence: UInt64(correlation), nowMs: nowMs, session: session) }
        switch outcome {
        case .respond(let f): return f
        case .noResponse:
            for _ in 0..<3 { _ = turn(nowMs: nowMs, collecting: via) }
            return nil
        case .close(let why): throw HarnessError(why)
        case .pending:
            // A minute later: long polls end at their deadline.
            return try waitFor(correlation, via: via, nowMs: nowMs + 60_000, turns: turns)
        }
    }

    /// Runs turns until the response to `correlationId` arrives at shard `via`: at least
    /// `turns` turns, and for up to 10 s while it waits for work off the shards (syncs and
    /// file work on the disk workers).
    func waitFor(_ correlationId: Int32, via: Int = 0, nowMs: Int64, turns: Int = 100) throws -> ResponseFrame {
        let deadline = Date().addingTimeInterval(10)
        var turned = 0
        while turned < turns || Date() < deadline {
            let done = turn(nowMs: nowMs, collecting: via)
            others += done.filter { $0.correlationId != correlationId }
            if let frame = done.first(where: { $0.correlationId == correlationId })?.frame { return frame }
            turned += 1
            if turned >= turns { usleep(500) }
        }
        throw HarnessError("no response to request \(correlationId) after \(turned) turns")
    }

    func decode<R: KafkaRequest>(_ frame: ResponseFrame, _: R.Type, version: Int16, correlationId: Int32? = nil) throws -> R.Response {
        let correlation = correlationId ?? self.correlation
        let bytes = try Self.bytes(of: frame)
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
