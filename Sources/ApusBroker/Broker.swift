import ApusStorage
import KafkaProtocol
import KafkaWire
import Logging

/// Identifies a client connection to the broker (assigned by the server).
public typealias ConnectionID = Int

/// What the server does with a request once the broker has seen it.
public enum HandleOutcome {
    /// Send this response (in order with the connection's other responses).
    case respond(ResponseFrame)
    /// Nothing is sent (Produce with acks=0).
    case noResponse
    /// The response comes later, from ``Broker/endOfTurn(nowMs:)``.
    case pending
    /// Close this connection (malformed or unsupported request), logging the reason.
    case close(String)
}

/// A response completed after its request's turn (produce acks, long-poll fetches).
public struct Completion {
    public var connection: ConnectionID
    /// The connection's number for the request (see ``RequestContext/sequence``).
    public var sequence: UInt64
    public var correlationId: Int32
    public var frame: ResponseFrame
}

/// What a handler knows about the request it serves.
public struct RequestContext {
    public var connection: ConnectionID
    /// The request's position on its connection (assigned by the server): completions are
    /// matched by it, since a client may reuse correlation ids.
    public var sequence: UInt64
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?
    public var nowMs: Int64
    /// Response header version (0, or 1 for flexible versions; always 0 for ApiVersions).
    public var responseHeaderVersion: Int16
}

/// The Kafka broker's request handling: pure logic over the storage engine, no sockets.
///
/// Used from one thread (the shard that owns its logs); not thread-safe. The server hands it
/// complete request frames with ``handle(frame:connection:nowMs:)`` and, once per loop turn,
/// calls ``endOfTurn(nowMs:)`` which commits the turn's appends (group commit) and returns
/// the responses that became ready.
public final class Broker {
    public let config: BrokerConfig
    let logs: LogManager
    let shard: LogShard
    let logger: Logger
    /// Topic name → its partitions' logs, in partition order.
    var topics: [String: [PartitionLog]] = [:]
    var pendingProduces: [PendingProduce] = []
    var parkedFetches: [ParkedFetch] = []
    var producerIds: ProducerIdAllocator
    /// Idempotent-producer state per partition, rebuilt from the log on first use.
    var producerStates: [TopicPartition: ProducerStateTable] = [:]
    /// Classic consumer groups; committed offsets live in the internal `__consumer_offsets` log.
    var groups: GroupCoordinator<GroupToken>
    var offsetsLog: PartitionLog?
    var groupCompletions: [Completion] = []
    var pendingGroupWrites: [PendingGroupWrite] = []

    public init(config: BrokerConfig, logs: LogManager, shard: LogShard, logger: Logger, nowMs: Int64) throws(StorageError) {
        self.config = config
        self.logs = logs
        self.shard = shard
        self.logger = logger
        self.producerIds = ProducerIdAllocator(seed: nowMs)
        self.groups = GroupCoordinator(config: config.groups)
        var found: [String: [Int32: PartitionLog]] = [:]
        for tp in try logs.existingPartitions() where tp.topic != Broker.offsetsTopic {
            let log = try logs.openLog(tp, nowMs: nowMs)
            shard.adopt(log)
            found[tp.topic, default: [:]][tp.partition] = log
        }
        for (topic, partitions) in found {
            // A topic's partitions are 0..<n; a gap means a damaged data directory.
            let ordered = partitions.keys.sorted()
            guard ordered == Array(0..<Int32(ordered.count)) else {
                logger.error("topic has missing partitions; ignoring it", metadata: ["topic": "\(topic)", "partitions": "\(ordered)"])
                continue
            }
            topics[topic] = ordered.map { partitions[$0]! }
        }
        try loadGroupOffsets(nowMs: nowMs)
        if !topics.isEmpty {
            logger.info("loaded topics", metadata: ["count": "\(topics.count)", "partitions": "\(topics.values.reduce(0) { $0 + $1.count })"])
        }
    }

    // MARK: Dispatch

    /// Handles one request frame (the bytes after the size prefix).
    public func handle(frame: UnsafeRawBufferPointer, connection: ConnectionID, sequence: UInt64 = 0, nowMs: Int64) -> HandleOutcome {
        guard let preamble = RequestPreamble(frame) else { return .close("request shorter than its header") }
        guard let entry = Handlers.byKey[preamble.apiKey] else {
            return .close("unknown API key \(preamble.apiKey)")
        }
        guard entry.versions.contains(preamble.apiVersion) else {
            if preamble.apiKey == ApiVersionsRequest.apiKey {
                return .respond(Handlers.unsupportedApiVersions(correlationId: preamble.correlationId))
            }
            return .close("unsupported version \(preamble.apiVersion) of \(entry.api.name)")
        }
        let requestType = entry.api.requestType
        var r = WireReader(frame)
        do {
            let header = try RequestHeader.decode(from: &r, version: requestType.requestHeaderVersion(preamble.apiVersion))
            let context = RequestContext(
                connection: connection, sequence: sequence, apiKey: preamble.apiKey, apiVersion: preamble.apiVersion,
                correlationId: preamble.correlationId, clientId: header.clientId, nowMs: nowMs,
                responseHeaderVersion: requestType.responseHeaderVersion(preamble.apiVersion))
            return try entry.handle(self, context, &r)
        } catch {
            return .close("malformed request: \(error)")
        }
    }

    /// Encodes `response` with the response header for `context`.
    func frame<R: KafkaResponse>(_ response: R, _ context: RequestContext) -> ResponseFrame {
        ResponseFrame(correlationId: context.correlationId, headerVersion: context.responseHeaderVersion) {
            response.encode(into: &$0, version: context.apiVersion)
        }
    }

    func respond<R: KafkaResponse>(_ response: R, _ context: RequestContext) -> HandleOutcome {
        .respond(frame(response, context))
    }

    // MARK: Turns

    /// Commits this turn's appends and returns every response that is now ready.
    public func endOfTurn(nowMs: Int64) -> [Completion] {
        var completions: [Completion] = []
        let failures = shard.commit(nowMs: nowMs)
        shard.poll()
        completeProduces(failures: failures, nowMs: nowMs, into: &completions)
        completeFetches(nowMs: nowMs, into: &completions)
        completeGroups(nowMs: nowMs, into: &completions)
        return completions
    }

    /// The earliest time something parked needs attention (long-poll deadlines), if any.
    public var nextDeadlineMs: Int64? {
        (parkedFetches.map(\.deadlineMs) + [groups.nextDeadlineMs].compactMap { $0 }).min()
    }

    /// Whether responses are waiting on a sync in flight (the server should poll soon).
    public var awaitingSync: Bool {
        !pendingProduces.isEmpty || !pendingGroupWrites.isEmpty
    }

    /// A connection went away: forget what it was waiting for.
    public func connectionClosed(_ connection: ConnectionID) {
        parkedFetches.removeAll { $0.context.connection == connection }
        for i in pendingProduces.indices where pendingProduces[i].context.connection == connection {
            pendingProduces[i].abandoned = true
        }
    }

    /// Periodic upkeep (every few seconds): retention on every log, and recovery points so
    /// that recovery after a crash scans only what came since.
    public func maintenance(nowMs: Int64) {
        for log in topics.values.joined() { log.enforceRetention(nowMs: nowMs) }
        logs.checkpoint()
    }

    /// Syncs every log and marks a clean shutdown.
    public func shutdown(nowMs: Int64) throws(StorageError) {
        shard.syncAll(nowMs: nowMs)
        try logs.close()
    }

    // MARK: Topics

    static func isValidTopicName(_ name: String) -> Bool {
        guard !name.isEmpty, !name.hasPrefix("__"), name.utf8.count <= 249, name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }

    /// Creates a topic's partitions (empty logs).
    func createTopic(_ name: String, partitions: Int32, nowMs: Int64) throws(StorageError) -> [PartitionLog] {
        var created: [PartitionLog] = []
        for p in 0..<partitions {
            let log = try logs.openLog(TopicPartition(name, p), config: config.log, nowMs: nowMs)
            shard.adopt(log)
            created.append(log)
        }
        topics[name] = created
        logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitions)"])
        return created
    }

    func deleteTopic(_ name: String) throws(StorageError) {
        guard let partitions = topics.removeValue(forKey: name) else { return }
        for log in partitions {
            producerStates[log.topicPartition] = nil
            log.takeOffline("topic deleted")  // appends staged this turn are answered with an error
            shard.release(log)
            try logs.deleteLog(log.topicPartition)
        }
        logger.info("deleted topic", metadata: ["topic": "\(name)"])
    }

    func log(_ topic: String, _ partition: Int32) -> PartitionLog? {
        guard let partitions = topics[topic], partition >= 0, Int(partition) < partitions.count else { return nil }
        return partitions[Int(partition)]
    }
}

/// Hands out producer ids that do not repeat across restarts (seeded from the clock).
struct ProducerIdAllocator {
    var next: Int64

    init(seed: Int64) { next = max(seed, 1) * 1000 }

    mutating func allocate() -> Int64 {
        defer { next += 1 }
        return next
    }
}
