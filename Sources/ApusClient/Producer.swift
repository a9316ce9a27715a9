import ApusIO
#if canImport(Glibc)
import Glibc  // iovec
#endif
import KafkaProtocol
import KafkaWire

/// How a producer picks the partition of a record.
public enum Partitioner: String, Sendable, Codable {
    /// Keyless records fill one partition's batch, then the next partition (in order).
    case roundRobin = "round-robin"
    /// Keyless records fill one partition's batch, then a random other partition (Java's default).
    case sticky
    /// Keyed records go to `toPositive(murmur2(key)) % partitions` like the Java client;
    /// keyless records are sticky.
    case murmur2
}

/// Producer settings, named as the Java client names them where it has the same setting.
public struct ProducerConfig: Sendable {
    public var bootstrap: String
    /// 0 (no response), 1 (leader) or -1 (all in-sync replicas).
    public var acks: Int16 = -1
    /// The largest batch in bytes (uncompressed, header included). The lab defaults to 1 MiB.
    public var batchSize: Int = 1 << 20
    /// How long a non-full batch may wait for more records.
    public var lingerMs: Int = 5
    public var compression: CompressionCodec = .none
    /// Produce requests sent and not yet answered, at most, per connection.
    public var maxInFlight: Int = 5
    /// A produce request carries the ready batches of as many of its broker's partitions
    /// (one each) as fit in this many bytes (at least one batch).
    public var maxRequestSize = 1 << 20
    public var partitioner: Partitioner = .murmur2
    public var requestTimeoutMs: Int32 = 30_000
    public var clientId: String = "apus-lab"
    /// The lab's end-to-end latency stamp: when a batch is sent, the first 8 bytes of its first
    /// record's value are overwritten with `Sys.monotonicNs()` (big-endian), before compression
    /// and the CRC. Skipped when that value is shorter than 8 bytes. Costs one extra CRC pass
    /// over the batch (the builder is finished twice). Off by default.
    public var stampBatches = false
    /// Times a batch that failed with a retriable error is sent again (within `deliveryTimeoutMs`).
    public var retries = Int(Int32.max)
    public var retryBackoffMs = 100
    /// A batch is reported failed once this long has passed since its first record, retries or not.
    public var deliveryTimeoutMs = 120_000
    /// InitProducerId, then a producer id, epoch and sequence numbers on every batch, so that
    /// the broker drops a retried batch it already has. Needs acks=all and at most 5 in flight.
    public var enableIdempotence = false
    /// Partitions are looked up again this often, and after an error that says they moved.
    public var metadataMaxAgeMs = 300_000
    /// Bytes of batches the producer may hold unacknowledged (in flight, or waiting for a
    /// leader or a retry) before `send` waits: while one partition has no leader, the others
    /// go on until this is full.
    public var bufferMemory = 32 << 20
    /// What makes `send` wait while a leader's connection has `maxInFlight` requests out:
    /// `fullRequest` (the default) once the next request there is full — a second never-sent
    /// batch of the partition, or `max.request.size`; `bufferMemory` only when buffer.memory
    /// is, as Kafka's clients do: ready batches queue per partition and the records go on.
    public var sendWaits = SendWait.fullRequest

    public enum SendWait: String, Sendable, CaseIterable {
        case fullRequest = "full-request", bufferMemory = "buffer-memory"
    }

    public init(bootstrap: String) { self.bootstrap = bootstrap }

    /// Sets one Java-style property: acks, batch.size, linger.ms, compression.type,
    /// max.in.flight.requests.per.connection, partitioner (round-robin|sticky|murmur2),
    /// request.timeout.ms, client.id, retries, retry.backoff.ms, delivery.timeout.ms,
    /// enable.idempotence, metadata.max.age.ms, buffer.memory, max.request.size, and this
    /// generator's send.waits (full-request|buffer-memory).
    public mutating func set(_ key: String, _ value: String) throws(ClientError) {
        func int(_ range: ClosedRange<Int>) throws(ClientError) -> Int {
            guard let v = Int(value), range.contains(v) else { throw ClientError("\(key)=\(value): expected an integer in \(range)") }
            return v
        }
        switch key {
        case "acks":
            if value == "all" { acks = -1 } else { acks = Int16(try int(-1...1)) }
        case "batch.size": batchSize = try int(128...(256 << 20))
        case "linger.ms": lingerMs = try int(0...3_600_000)
        case "compression.type":
            guard let codec = CompressionCodec.named(value) else { throw ClientError("compression.type=\(value): expected none, gzip, snappy, lz4 or zstd") }
            compression = codec
        case "max.in.flight.requests.per.connection": maxInFlight = try int(1...1024)
        case "max.request.size": maxRequestSize = try int(1...Int(Int32.max))
        case "partitioner":
            guard let p = Partitioner(rawValue: value) else { throw ClientError("partitioner=\(value): expected round-robin, sticky or murmur2") }
            partitioner = p
        case "request.timeout.ms": requestTimeoutMs = Int32(try int(1...Int(Int32.max)))
        case "client.id": clientId = value
        case "retries": retries = try int(0...Int(Int32.max))
        case "retry.backoff.ms": retryBackoffMs = try int(0...3_600_000)
        case "delivery.timeout.ms": deliveryTimeoutMs = try int(1...Int(Int32.max))
        case "metadata.max.age.ms": metadataMaxAgeMs = try int(0...Int(Int32.max))
        case "buffer.memory": bufferMemory = try int(0...Int(Int32.max))
        case "send.waits":
            guard let w = SendWait(rawValue: value) else { throw ClientError("send.waits=\(value): expected full-request or buffer-memory") }
            sendWaits = w
        case "enable.idempotence":
            guard let b = Bool(value) else { throw ClientError("enable.idempotence=\(value): expected true or false") }
            enableIdempotence = b
        default: throw ClientError("unknown producer property '\(key)'")
        }
    }
}

extension CompressionCodec {
    public static func named(_ name: String) -> CompressionCodec? {
        switch name {
        case "none": CompressionCodec.none
        case "gzip": .gzip
        case "snappy": .snappy
        case "lz4": .lz4
        case "zstd": .zstd
        default: nil
        }
    }
}

/// The outcome of one batch.
public struct ProduceAck: Sendable {
    public var partition: Int32
    /// The offset the broker gave the batch's first record (-1 with acks=0 or on error).
    public var baseOffset: Int64
    public var recordCount: Int
    /// Kafka error code, 0 on success.
    public var errorCode: Int16
    /// Monotonic times: first record appended, request written, response read.
    public var createdNanos: UInt64
    public var sentNanos: UInt64
    public var ackNanos: UInt64
    /// The `userTime` passed with the batch's first record (the lab: its intended send time).
    public var userTime: UInt64
}

/// What a producer did, for `--print-metrics` (counted per batch or request, never per record).
public struct ProducerMetrics: Sendable, Equatable {
    /// Batches sent (first attempts) and the records and bytes in them.
    public var batches: UInt64 = 0
    public var records: UInt64 = 0
    /// Bytes of record batches as sent (compressed when they are) and before compression.
    public var batchBytes: UInt64 = 0
    public var uncompressedBytes: UInt64 = 0
    /// Produce requests written, retries included, and the batches they carried.
    public var requests: UInt64 = 0
    public var sentBatches: UInt64 = 0
    public var retries: UInt64 = 0
    /// Batches reported failed, by Kafka error code.
    public var errorsByCode: [Int16: UInt64] = [:]
    public var metadataRefreshes: UInt64 = 0
    /// Connections to a leader that failed (closed, refused, or a request unanswered for
    /// `request.timeout.ms`); their requests were retried.
    public var connectionFailures: UInt64 = 0
    /// Request written → response read, over answered requests.
    public var requestLatencyTotalNanos: UInt64 = 0
    public var requestLatencyMaxNanos: UInt64 = 0
    public var answeredRequests: UInt64 = 0
    public var maxInFlight = 0
    /// Time `send` spent waiting for room (buffer.memory full, or its batch's connection full
    /// with the next request already holding a batch of that partition), as Java's
    /// bufferpool-wait-time: an open-loop caller runs behind its schedule meanwhile.
    public var roomWaitTotalNanos: UInt64 = 0
    public var roomWaitMaxNanos: UInt64 = 0

    public init() {}

    public mutating func add(_ o: ProducerMetrics) {
        batches += o.batches
        records += o.records
        batchBytes += o.batchBytes
        uncompressedBytes += o.uncompressedBytes
        requests += o.requests
        sentBatches += o.sentBatches
        retries += o.retries
        errorsByCode.merge(o.errorsByCode, uniquingKeysWith: +)
        metadataRefreshes += o.metadataRefreshes
        connectionFailures += o.connectionFailures
        requestLatencyTotalNanos += o.requestLatencyTotalNanos
        requestLatencyMaxNanos = max(requestLatencyMaxNanos, o.requestLatencyMaxNanos)
        answeredRequests += o.answeredRequests
        maxInFlight = max(maxInFlight, o.maxInFlight)
        roomWaitTotalNanos += o.roomWaitTotalNanos
        roomWaitMaxNanos = max(roomWaitMaxNanos, o.roomWaitMaxNanos)
    }

    /// `name: value` lines in the spirit of kafka-producer-perf-test's --print-metrics.
    public var lines: [(String, String)] {
        func f(_ v: Double) -> String {  // three decimals, without Foundation
            let m = Int64((v * 1000).rounded())
            let frac = String(abs(m) % 1000)
            return (m < 0 ? "-" : "") + "\(abs(m) / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        let b = Double(max(batches, 1))
        var out: [(String, String)] = [
            ("batch-size-avg (bytes)", f(Double(batchBytes) / b)),
            ("records-per-batch-avg", f(Double(records) / b)),
            ("compression-rate-avg", f(uncompressedBytes == 0 ? 1 : Double(batchBytes) / Double(uncompressedBytes))),
            ("request-total", String(requests)),
            ("batches-per-request-avg", f(requests == 0 ? 0 : Double(sentBatches) / Double(requests))),
            ("record-retry-total (batches)", String(retries)),
            ("record-error-total (batches)", String(errorsByCode.values.reduce(0, +))),
            ("request-latency-avg (ms)", f(answeredRequests == 0 ? 0 : Double(requestLatencyTotalNanos) / Double(answeredRequests) / 1e6)),
            ("request-latency-max (ms)", f(Double(requestLatencyMaxNanos) / 1e6)),
            ("requests-in-flight-max", String(maxInFlight)),
            ("wait-for-room-total (ms)", f(Double(roomWaitTotalNanos) / 1e6)),
            ("wait-for-room-max (ms)", f(Double(roomWaitMaxNanos) / 1e6)),
            ("metadata-refresh-total", String(metadataRefreshes)),
            ("connection-failure-total", String(connectionFailures)),
        ]
        for (code, n) in errorsByCode.sorted(by: { $0.key < $1.key }) { out.append(("errors-with-code-\(code) (batches)", String(n))) }
        return out
    }
}

/// A fast Kafka producer for one topic, sending each partition's batches to its leader.
///
/// Records are written straight into one `RecordBatchBuilder` per partition (nothing is
/// allocated per record); a full batch, or one older than `linger.ms`, is ready. Ready batches go
/// to their partition's leader on the caller's thread, in ProduceRequests written by hand around
/// the batch bytes (no copy), with up to `max.in.flight.requests.per.connection` requests
/// pipelined on each leader's connection. While a connection has that many, its partitions'
/// ready batches wait in order and the records go on into new ones; each answer lets the next
/// request carry the first waiting batch of every partition of that broker (up to
/// `max.request.size`), as Kafka's clients drain their accumulator — so a producer that falls
/// behind catches up with fuller requests. Unlike Kafka's, `send` then waits once the next
/// request is full (a second batch of a partition, or `max.request.size`), not only when
/// `buffer.memory` is: deeper queues add latency and cold buffers, not throughput — unless
/// `send.waits=buffer-memory` asks for Kafka's behaviour (open-loop probes). Responses are matched by connection and
/// correlation id and reported to `onAck` once per batch. Timestamps: one wall-clock and one monotonic reading per batch, and
/// a monotonic reading every 256 records for linger.
///
/// In a cluster, a leader that moves (NOT_LEADER_OR_FOLLOWER…), whose connection fails, or that
/// leaves a request unanswered for `request.timeout.ms` (a stopped broker) sends its batches back
/// to be retried after a metadata refresh, as Kafka's clients do; metadata comes from any broker
/// that answers. Only when no known broker answers does the producer throw.
///
/// Not thread-safe: one thread calls `send`, `poll`, `flush` and receives `onAck` on that thread.
/// Run one producer per thread for more.
public final class Producer {
    public let config: ProducerConfig
    public let topic: String
    public private(set) var partitionCount: Int
    public let produceVersion: Int16
    public private(set) var metrics = ProducerMetrics()
    /// The producer id and epoch with `enableIdempotence` (-1 otherwise).
    public private(set) var producerId: Int64 = -1
    public private(set) var producerEpoch: Int16 = -1
    /// Called on the producer's thread once per batch.
    public var onAck: (ProduceAck) -> Void = { _ in }

    /// For metadata (and the caller's admin calls): never carries produce requests, so a
    /// refresh does not wait behind them. Replaced by one to another broker if it fails.
    var connection: KafkaConnection
    var metadataFetchedNanos: UInt64
    var metadataStale = false
    /// The brokers produce requests go to (leaders met so far), each with its connection.
    var links: [Link] = []
    /// Per partition, its leader's index in `links` (-1: no leader known).
    var leaderLink: [Int] = []
    /// Per partition, its batches waiting to be sent — ready while its leader's connection had
    /// max.in.flight requests, or to be retried (their time not yet come, or no leader known) —
    /// in creation order: a new batch of the partition goes behind them, so nothing is reordered.
    var queues: [BatchQueue] = []
    /// Batches in `queues`.
    var queued = 0
    /// The partition `drain` starts from, moved on each time so that none is always last.
    var drainStart = 0
    /// The batches of the request being written (kept between calls), and where each
    /// partition's head ends in `prefix`.
    var outgoing: [InFlight] = []
    var cuts: [Int] = []
    /// The batches of the response being handled (kept between calls).
    var answered: [InFlight] = []
    var builders: UnsafeMutablePointer<RecordBatchBuilder>
    var batchInfo: UnsafeMutablePointer<BatchInfo>
    /// With idempotence, the next sequence number per partition.
    var nextSequence: [Int32]
    /// Builders holding sent batches until they are acknowledged (a retry sends the same
    /// bytes): max.in.flight per broker plus one at first, more (allocated when needed) up to
    /// buffer.memory. A sent batch's builder is swapped with a free one here, so nothing is copied.
    let slots: UnsafeMutablePointer<RecordBatchBuilder>
    let slotCount: Int
    var slotsMade = 0
    var freeSlots: [Int]
    var current = 0
    var random = SplitMix64(seed: UInt64(truncatingIfNeeded: Sys.monotonicNs()))
    var sinceClock = 0
    var prefix = WireWriter(capacity: 512)
    var inFlight: [InFlight] = []
    /// `awaitResponses`' poll set and the link of each entry, kept between calls.
    var pollFds: [pollfd] = []
    var pollLinks: [Int] = []
    var iov = UnsafeMutablePointer<iovec>.allocate(capacity: 3)
    var iovCapacity = 3
    let suffixBytes = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 4)
    var prefixCapacity = 4096
    var prefixBytes = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    var open = true

    struct BatchInfo {
        var createdNanos: UInt64 = 0
        var userTime: UInt64 = 0
    }

    /// A broker as Metadata names it, and the connection produce requests to it use (opened
    /// when first needed, dropped when it fails).
    struct Link {
        var nodeId: Int32
        var address: String
        var connection: KafkaConnection?
        var inFlight = 0
        /// After a failure no new connection is tried before this (monotonic ns); the wait
        /// doubles from 50 ms to 1 s while failures go on (Kafka's reconnect.backoff.ms and
        /// reconnect.backoff.max.ms).
        var reconnectAfter: UInt64 = 0
        var reconnectBackoffMs: UInt64 = 50
    }

    /// A partition's waiting batches, oldest first (an array and the index of its first).
    struct BatchQueue {
        var items: [InFlight] = []
        var head = 0
        var isEmpty: Bool { head == items.count }
        var count: Int { items.count - head }
        var first: InFlight { items[head] }
        var last: InFlight { items[items.count - 1] }

        mutating func removeFirst() -> InFlight {
            let item = items[head]
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            }
            return item
        }

        /// Inserts `item` after every batch created before it and before every batch created
        /// after it, so a retry goes back ahead of the partition's newer batches and the queue
        /// stays in creation order.
        mutating func insert(_ item: InFlight) {
            var at = items.count
            while at > head && items[at - 1].createdNanos > item.createdNanos { at -= 1 }
            items.insert(item, at: at)
        }
    }

    struct InFlight {
        var correlationId: Int32
        var partition: Int32
        var recordCount: Int
        var createdNanos: UInt64
        var sentNanos: UInt64
        var userTime: UInt64
        /// The slot holding the batch bytes (-1 with acks=0).
        var slot: Int
        var batch: UnsafeRawBufferPointer
        /// Times written (0: waiting for its first send).
        var attempts: Int
        /// The link it was written to.
        var link = -1
        /// When a waiting batch may be sent (a retry after its backoff; a new batch at once).
        var dueNanos: UInt64 = 0
    }

    /// Errors after which the same batch may succeed (Kafka's RetriableException codes for
    /// produce): CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
    /// NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
    /// KAFKA_STORAGE_ERROR; with idempotence also OUT_OF_ORDER_SEQUENCE_NUMBER (an earlier batch
    /// of the partition is being retried).
    static let retriable: Set<Int16> = Set([ErrorCode.corruptMessage, .unknownTopicOrPartition, .leaderNotAvailable, .notLeaderOrFollower,
                                            .requestTimedOut, .networkException, .notEnoughReplicas, .notEnoughReplicasAfterAppend,
                                            .kafkaStorageError].map(\.rawValue))
    /// Of those, the ones that say the partition's leader may have moved: refresh metadata.
    static let staleMetadata: Set<Int16> = Set([ErrorCode.unknownTopicOrPartition, .leaderNotAvailable, .notLeaderOrFollower,
                                                .networkException, .kafkaStorageError].map(\.rawValue))

    /// Connects, agrees versions (Produce v3+), reads the topic's partitions and their leaders
    /// (creating the topic if the broker auto-creates topics) and connects to each leader.
    public init(config: ProducerConfig, topic: String) throws(ClientError) {
        self.config = config
        self.topic = topic
        if config.enableIdempotence && (config.acks != -1 || config.maxInFlight > 5) {
            throw ClientError("enable.idempotence=true needs acks=all and max.in.flight.requests.per.connection <= 5")
        }
        connection = try KafkaConnection(bootstrap: config.bootstrap, clientId: config.clientId, timeoutMs: Int(config.requestTimeoutMs))
        produceVersion = try connection.version(of: ProduceRequest.self, supported: 3...11)
        let (metadata, brokers) = try connection.metadata(of: topic)
        partitionCount = metadata.partitions.count
        metadataFetchedNanos = Sys.monotonicNs()
        if config.enableIdempotence {
            let version = try connection.version(of: InitProducerIdRequest.self, supported: 0...4)
            var request = InitProducerIdRequest()
            request.transactionalId = nil
            request.transactionTimeoutMs = Int32.max
            let response = try connection.roundTrip(request, version: version)
            guard response.errorCode == 0 else {
                throw ClientError("InitProducerId failed with error \(response.errorCode)", kafkaErrorCode: response.errorCode)
            }
            producerId = response.producerId
            producerEpoch = response.producerEpoch
        }
        builders = .allocate(capacity: partitionCount)
        batchInfo = .allocate(capacity: partitionCount)
        for p in 0..<partitionCount {
            (builders + p).initialize(to: RecordBatchBuilder(capacity: config.batchSize))
            (batchInfo + p).initialize(to: BatchInfo())
        }
        nextSequence = [Int32](repeating: 0, count: partitionCount)
        let first = config.maxInFlight * max(brokers.count, 1) + 1
        slotCount = config.acks == 0 ? 0 : max(first, min(config.bufferMemory / config.batchSize, 4096))
        slots = .allocate(capacity: max(slotCount, 1))
        freeSlots = []
        for _ in 0..<min(first, slotCount) { makeSlot() }
        current = Int(random.next() % UInt64(partitionCount))
        inFlight.reserveCapacity(slotCount + 1)
        suffixBytes.initializeMemory(as: UInt8.self, repeating: 0, count: 4)  // empty tagged-field sections
        leaderLink = [Int](repeating: -1, count: partitionCount)
        queues = [BatchQueue](repeating: BatchQueue(), count: partitionCount)
        apply(metadata, brokers)
        for l in links.indices { links[l].connection = try KafkaConnection(bootstrap: links[l].address, clientId: config.clientId,
                                                                           timeoutMs: Int(config.requestTimeoutMs)) }
    }

    deinit {
        builders.deinitialize(count: partitionCount)
        builders.deallocate()
        slots.deinitialize(count: slotsMade)
        slots.deallocate()
        batchInfo.deallocate()
        iov.deallocate()
        suffixBytes.deallocate()
        prefixBytes.deallocate()
    }

    /// Appends one record; sends the batch it fills. `userTime` is kept for the batch's first
    /// record and returned in its `ProduceAck`.
    public func send(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, userTime: UInt64 = 0) throws(ClientError) {
        let partition: Int
        if let key, config.partitioner == .murmur2 {
            partition = murmur2Partition(key: key, partitions: partitionCount)
        } else {
            partition = current
        }
        try append(partition: partition, key: key, value: value, userTime: userTime)
        sinceClock &+= 1
        if sinceClock & 255 == 0 { try poll() }
    }

    func append(partition p: Int, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, userTime: UInt64) throws(ClientError) {
        if builders[p].isEmpty { startBatch(p, userTime: userTime) }
        if builders[p].append(key: key, value: value) { return }
        try sendBatch(p)
        var target = p
        if target == current {  // keyless: move on to the next partition
            advance()
            target = key != nil && config.partitioner == .murmur2 ? p : current
        }
        startBatch(target, userTime: userTime)
        guard builders[target].append(key: key, value: value) else {
            throw ClientError("a record of \(key?.count ?? 0)+\(value?.count ?? 0) bytes does not fit in batch.size=\(config.batchSize)")
        }
    }

    func advance() {
        guard partitionCount > 1 else { return }
        if config.partitioner == .roundRobin {
            current = (current + 1) % partitionCount
        } else {
            current = (current + 1 + Int(random.next() % UInt64(partitionCount - 1))) % partitionCount
        }
    }

    func startBatch(_ p: Int, userTime: UInt64) {
        builders[p].reset(baseTimestamp: Sys.wallClockMs())
        batchInfo[p] = BatchInfo(createdNanos: Sys.monotonicNs(), userTime: userTime)
    }

    /// Makes ready the batches older than `linger.ms`, sends what waits and may go, reads any
    /// responses that have arrived, refreshes metadata when it is due, without blocking (unless
    /// `buffer.memory` is full). Call it while idle.
    public func poll() throws(ClientError) {
        while try readResponse(wait: false) {}
        let now = Sys.monotonicNs()
        if metadataStale || now &- metadataFetchedNanos >= UInt64(config.metadataMaxAgeMs) * 1_000_000 { try refreshMetadata() }
        if queued > 0 { drain(now: now) }
        let linger = UInt64(config.lingerMs) * 1_000_000
        // A partition with batches waiting keeps filling its open batch (it is ready, and
        // queued, once full), as Kafka's accumulator does: small batches queued one per linger
        // could never catch up.
        for p in 0..<partitionCount where !builders[p].isEmpty && now &- batchInfo[p].createdNanos >= linger
            && (queues[p].isEmpty && leaderLink[p] >= 0 || config.acks == 0) {
            try sendBatch(p)
            if p == current { advance() }
        }
    }

    /// Sends every open batch and waits until every batch is acknowledged or has failed.
    public func flush() throws(ClientError) {
        for p in 0..<partitionCount where !builders[p].isEmpty { try sendBatch(p) }
        while !inFlight.isEmpty || queued > 0 { try waitForProgress() }
    }

    /// Sends what waits and may go, then waits for a response, a failed connection or the next
    /// retry's time.
    func waitForProgress() throws(ClientError) {
        if metadataStale { try refreshMetadata() }
        if queued > 0 { drain(now: Sys.monotonicNs()) }
        if inFlight.isEmpty { try waitForRetry() } else { _ = try readResponse(wait: true) }
    }

    /// Requests sent and not yet answered (counted per batch).
    public var inFlightCount: Int { inFlight.count }

    /// The metadata connection, for admin and list-offsets calls (never carries produce requests).
    public var kafkaConnection: KafkaConnection { connection }

    /// When the first waiting batch that is not yet due may go (nil: none waits for its time).
    func firstDue() -> UInt64? {
        guard queued > 0 else { return nil }
        var due = UInt64.max
        for p in 0..<partitionCount where !queues[p].isEmpty { due = min(due, queues[p].first.dueNanos) }
        return due
    }

    /// Sleeps until the first waiting batch is due and sends what may go.
    func waitForRetry() throws(ClientError) {
        guard let due = firstDue() else { return }
        let now = Sys.monotonicNs()
        if due > now { Sys.sleep(microseconds: UInt32(min(due - now, 1_000_000_000) / 1000)) }
        if metadataStale { try refreshMetadata() }
        drain(now: Sys.monotonicNs())
    }

    /// One more slot for a batch held until acknowledged.
    func makeSlot() {
        (slots + slotsMade).initialize(to: RecordBatchBuilder(capacity: config.batchSize))
        freeSlots.append(slotsMade)
        slotsMade += 1
    }

    /// Whether a slot is free for a batch to be held in (one is made if buffer.memory allows).
    func slotAvailable() -> Bool {
        if !freeSlots.isEmpty { return true }
        guard slotsMade < slotCount else { return false }
        makeSlot()
        return true
    }

    /// Partition `p`'s open batch is ready: it goes now if nothing waits and its leader's
    /// connection has room, else it waits behind what does (in order) and what may go is sent.
    /// The caller waits while buffer.memory is full, and while the batch could not go in its
    /// connection's next request anyway (`mustHold`).
    func sendBatch(_ p: Int) throws(ClientError) {
        if config.acks != 0 && !slotAvailable() { try waitForRoom { !$0.slotAvailable() } }
        let batch: UnsafeRawBufferPointer
        let uncompressed = builders[p].sizeInBytes
        if config.enableIdempotence {
            builders[p].producerId = producerId
            builders[p].producerEpoch = producerEpoch
            builders[p].baseSequence = nextSequence[p]
            let next = Int64(nextSequence[p]) + Int64(builders[p].recordCount)
            nextSequence[p] = Int32(truncatingIfNeeded: next > Int64(Int32.max) ? next - Int64(Int32.max) - 1 : next)
        }
        do {
            if config.stampBatches {
                // Finish uncompressed to see the records in place, stamp, then finish for real
                // (which rewrites the header and CRC, compressing the stamped records if asked).
                Self.stamp(try builders[p].finish(compression: .none), now: Sys.monotonicNs())
            }
            batch = try builders[p].finish(compression: config.compression)
        } catch {
            throw ClientError("compressing a batch: \(error)")
        }
        let count = builders[p].recordCount
        let info = batchInfo[p]
        metrics.batches += 1
        metrics.records += UInt64(count)
        metrics.batchBytes += UInt64(batch.count)
        metrics.uncompressedBytes += UInt64(uncompressed)
        let request = InFlight(correlationId: 0, partition: Int32(p), recordCount: count, createdNanos: info.createdNanos,
                               sentNanos: 0, userTime: info.userTime, slot: -1, batch: batch, attempts: 0)
        if config.acks == 0 {
            // Nothing to hold or retry: written at once, reported at once.
            outgoing.removeAll(keepingCapacity: true)
            outgoing.append(request)
            let l = leaderLink[p]
            var sent = false
            if l >= 0, let c = link(l) {
                do {
                    try writeRequest(on: c)
                    sent = true
                } catch {
                    fail(link: l)
                }
            }
            if !sent { metadataStale = true }
            builders[p].reset(baseTimestamp: 0)
            let at = sent ? outgoing[0].sentNanos : Sys.monotonicNs()
            onAck(ProduceAck(partition: Int32(p), baseOffset: -1, recordCount: count, errorCode: sent ? 0 : ErrorCode.networkException.rawValue,
                             createdNanos: info.createdNanos, sentNanos: at, ackNanos: at, userTime: info.userTime))
            return
        }
        // The batch stays in a slot until it is acknowledged (a retry sends the same bytes);
        // the partition gets the slot's free builder, so nothing is copied.
        var held = request
        held.slot = freeSlots.removeLast()
        swap(&builders[p], &slots[held.slot])
        builders[p].reset(baseTimestamp: 0)
        if mustHold(p, bytes: batch.count) { try waitForRoom { $0.mustHold(p, bytes: batch.count) } }
        let l = leaderLink[p]
        if queued == 0 && l >= 0 && links[l].inFlight < config.maxInFlight {
            // Nothing waits: this batch alone, at once.
            held.attempts = 1
            outgoing.removeAll(keepingCapacity: true)
            outgoing.append(held)
            send(on: l)
            return
        }
        if l < 0 { metadataStale = true }
        queues[p].insert(held)
        queued += 1
        drain(now: Sys.monotonicNs())
    }

    /// Waits for progress while `full` holds, counting the time in the metrics.
    func waitForRoom(while full: (Producer) -> Bool) throws(ClientError) {
        let started = Sys.monotonicNs()
        defer {
            let waited = Sys.monotonicNs() &- started
            metrics.roomWaitTotalNanos &+= waited
            metrics.roomWaitMaxNanos = max(metrics.roomWaitMaxNanos, waited)
        }
        repeat { try waitForProgress() } while full(self)
    }

    /// Whether a ready batch of partition `p` (`bytes` long) must wait for an answer before it
    /// joins the waiting ones: its leader's connection is full and the next request there
    /// already has a batch of `p`, or the batches waiting for it fill `max.request.size`.
    /// Waiting more would only add latency (and cold buffers) without making requests fuller;
    /// retries and partitions without a leader are held by buffer.memory alone, and so is
    /// every batch with `send.waits=buffer-memory`.
    func mustHold(_ p: Int, bytes: Int) -> Bool {
        let l = leaderLink[p]
        guard config.sendWaits == .fullRequest, l >= 0, links[l].inFlight >= config.maxInFlight else { return false }
        if !queues[p].isEmpty && queues[p].last.attempts == 0 { return true }  // never sent: retries come first
        var waiting = 0
        for q in 0..<partitionCount where leaderLink[q] == l && !queues[q].isEmpty { waiting += queues[q].first.batch.count }
        return waiting > 0 && waiting + bytes > config.maxRequestSize
    }

    /// Sends what waits and may go: for each broker whose connection has room, one request
    /// with the first waiting batch of each of its partitions that is due (up to
    /// max.request.size), until its room or its batches run out. A waiting batch past
    /// `delivery.timeout.ms` fails; a partition without a leader asks for new metadata.
    func drain(now: UInt64) {
        let start = drainStart
        drainStart = partitionCount > 0 ? (drainStart + 1) % partitionCount : 0
        let deliveryTimeout = UInt64(config.deliveryTimeoutMs) * 1_000_000
        for p in 0..<partitionCount {
            while !queues[p].isEmpty && now &- queues[p].first.createdNanos >= deliveryTimeout {
                let expired = queues[p].removeFirst()
                queued -= 1
                finish(expired, errorCode: ErrorCode.requestTimedOut.rawValue, baseOffset: -1, at: now)
            }
            if leaderLink[p] < 0 && !queues[p].isEmpty { metadataStale = true }
        }
        for l in links.indices {
            while queued > 0 && links[l].inFlight < config.maxInFlight {
                outgoing.removeAll(keepingCapacity: true)
                var bytes = 0
                for i in 0..<partitionCount {
                    let p = (start + i) % partitionCount
                    guard leaderLink[p] == l, !queues[p].isEmpty, queues[p].first.dueNanos <= now else { continue }
                    let size = queues[p].first.batch.count
                    if !outgoing.isEmpty && bytes + size > config.maxRequestSize { break }
                    var batch = queues[p].removeFirst()
                    queued -= 1
                    if batch.attempts > 0 { metrics.retries += 1 }
                    batch.attempts += 1
                    outgoing.append(batch)
                    bytes += size
                }
                if outgoing.isEmpty { break }
                send(on: l)
            }
        }
    }

    /// Writes `outgoing` as one request to link `l`, whose batches then are in flight; if the
    /// connection cannot be opened or fails, they fail with NETWORK_EXCEPTION (and so wait
    /// for a retry, within retries and delivery.timeout.ms) and the metadata is looked up again.
    func send(on l: Int) {
        if let c = link(l) {
            do {
                try writeRequest(on: c)
                links[l].inFlight += 1
                metrics.maxInFlight = max(metrics.maxInFlight, links[l].inFlight)
                for i in outgoing.indices { outgoing[i].link = l }
                inFlight.append(contentsOf: outgoing)
                return
            } catch {
                fail(link: l)
            }
        }
        metadataStale = true
        let now = Sys.monotonicNs()
        for request in outgoing { finish(request, errorCode: ErrorCode.networkException.rawValue, baseOffset: -1, at: now) }
    }

    /// Link `l`'s connection, opened if it has none (nil if it cannot be).
    func link(_ l: Int) -> KafkaConnection? {
        if let c = links[l].connection { return c }
        guard Sys.monotonicNs() >= links[l].reconnectAfter else { return nil }
        guard let c = try? KafkaConnection(bootstrap: links[l].address, clientId: config.clientId, timeoutMs: Int(config.requestTimeoutMs)) else {
            metrics.connectionFailures += 1
            backOff(l)
            return nil
        }
        links[l].connection = c
        links[l].reconnectBackoffMs = 50
        return c
    }

    /// No new connection to link `l` for a while, longer each time in a row.
    func backOff(_ l: Int) {
        links[l].reconnectAfter = Sys.monotonicNs() + links[l].reconnectBackoffMs * 1_000_000
        links[l].reconnectBackoffMs = min(links[l].reconnectBackoffMs * 2, 1000)
    }

    /// Drops link `l`'s connection; its unanswered requests fail with NETWORK_EXCEPTION (and so
    /// are retried, within retries and delivery.timeout.ms, once the metadata is looked up again).
    func fail(link l: Int) {
        links[l].connection = nil
        links[l].inFlight = 0
        metrics.connectionFailures += 1
        backOff(l)
        metadataStale = true
        let now = Sys.monotonicNs()
        let lost = inFlight.filter { $0.link == l }
        inFlight.removeAll { $0.link == l }
        for request in lost { finish(request, errorCode: ErrorCode.networkException.rawValue, baseOffset: -1, at: now) }
    }

    /// Frames and writes one ProduceRequest around the batches in `outgoing` (one partition
    /// each) with a new correlation id: the header and partition heads go from one buffer,
    /// the batches from where they lie.
    func writeRequest(on c: KafkaConnection) throws(ClientError) {
        let correlationId = c.nextCorrelationId
        c.nextCorrelationId = correlationId == Int32.max ? 1 : correlationId + 1
        ProduceRequestEncoder.writeHeader(
            into: &prefix, version: produceVersion, correlationId: correlationId, clientId: config.clientId,
            acks: config.acks, timeoutMs: config.requestTimeoutMs, topic: topic, partitions: outgoing.count)
        cuts.removeAll(keepingCapacity: true)
        var recordsLength = 0
        for (i, request) in outgoing.enumerated() {
            ProduceRequestEncoder.writePartitionHead(into: &prefix, version: produceVersion, partition: request.partition,
                                                     recordsLength: request.batch.count, first: i == 0)
            cuts.append(prefix.count)
            recordsLength += request.batch.count
        }
        ProduceRequestEncoder.patchSize(&prefix, version: produceVersion, recordsLength: recordsLength)
        if prefix.count > prefixCapacity {
            prefixBytes.deallocate()
            prefixCapacity = prefix.count * 2
            prefixBytes = .allocate(byteCount: prefixCapacity, alignment: 16)
        }
        if 2 * outgoing.count + 1 > iovCapacity {
            iov.deallocate()
            iovCapacity = 2 * outgoing.count + 1
            iov = .allocate(capacity: iovCapacity)
        }
        prefix.bytes.withUnsafeBytes { prefixBytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var from = 0
        for (i, request) in outgoing.enumerated() {
            iov[2 * i] = iovec(iov_base: prefixBytes + from, iov_len: cuts[i] - from)
            iov[2 * i + 1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: request.batch.baseAddress), iov_len: request.batch.count)
            from = cuts[i]
        }
        let suffix = ProduceRequestEncoder.suffixLength(version: produceVersion)
        iov[2 * outgoing.count] = iovec(iov_base: suffixBytes, iov_len: suffix)
        do { try c.transport.writeAll(iov, count: 2 * outgoing.count + (suffix > 0 ? 1 : 0)) } catch { throw ClientError(error) }
        let now = Sys.monotonicNs()
        for i in outgoing.indices {
            outgoing[i].correlationId = correlationId
            outgoing[i].sentNanos = now
        }
        metrics.requests += 1
        metrics.sentBatches += UInt64(outgoing.count)
    }

    /// Looks the topic up again, on the metadata connection or, if that fails, on any other
    /// broker known; more partitions than before get builders of their own (Kafka never takes
    /// partitions away).
    func refreshMetadata() throws(ClientError) {
        var answer = try? connection.metadata(of: topic, wait: false)
        if answer == nil {
            let known = config.bootstrap.split(separator: ",").map(String.init) + links.map(\.address)
            for address in known {
                guard let c = try? KafkaConnection(bootstrap: address, clientId: config.clientId, timeoutMs: Int(config.requestTimeoutMs)),
                      let a = try? c.metadata(of: topic, wait: false) else { continue }
                connection = c
                answer = a
                break
            }
        }
        guard let (metadata, brokers) = answer else {
            throw ClientError("metadata for \(topic): no broker answers (bootstrap \(config.bootstrap), leaders \(links.map(\.address)))")
        }
        metrics.metadataRefreshes += 1
        metadataFetchedNanos = Sys.monotonicNs()
        metadataStale = false
        let count = metadata.partitions.count
        if count > partitionCount {
            let grown = UnsafeMutablePointer<RecordBatchBuilder>.allocate(capacity: count)
            grown.moveInitialize(from: builders, count: partitionCount)
            let info = UnsafeMutablePointer<BatchInfo>.allocate(capacity: count)
            info.moveInitialize(from: batchInfo, count: partitionCount)
            for p in partitionCount..<count {
                (grown + p).initialize(to: RecordBatchBuilder(capacity: config.batchSize))
                (info + p).initialize(to: BatchInfo())
            }
            builders.deallocate()
            batchInfo.deallocate()
            builders = grown
            batchInfo = info
            nextSequence += [Int32](repeating: 0, count: count - partitionCount)
            leaderLink += [Int](repeating: -1, count: count - partitionCount)
            queues += [BatchQueue](repeating: BatchQueue(), count: count - partitionCount)
            partitionCount = count
        }
        apply(metadata, brokers)
    }

    /// Points each partition at its leader's link (added for a broker not met before; a broker
    /// whose address changed gets a new connection). A partition without a leader gets -1.
    func apply(_ metadata: MetadataResponse.MetadataResponseTopic, _ brokers: [MetadataResponse.MetadataResponseBroker]) {
        for p in metadata.partitions where p.partitionIndex >= 0 && Int(p.partitionIndex) < partitionCount {
            guard p.errorCode == 0, p.leaderId >= 0, let b = brokers.first(where: { $0.nodeId == p.leaderId }) else {
                leaderLink[Int(p.partitionIndex)] = -1
                continue
            }
            let address = "\(b.host):\(b.port)"
            if let l = links.firstIndex(where: { $0.nodeId == b.nodeId }) {
                if links[l].address != address {
                    fail(link: l)
                    links[l].address = address
                }
                leaderLink[Int(p.partitionIndex)] = l
            } else {
                links.append(Link(nodeId: b.nodeId, address: address))
                leaderLink[Int(p.partitionIndex)] = links.count - 1
            }
        }
    }

    /// Writes `now` (big-endian) into the first 8 bytes of the first record's value of an
    /// uncompressed finished batch, if that value has at least 8 bytes.
    static func stamp(_ batch: UnsafeRawBufferPointer, now: UInt64) {
        var records = RecordBatchView(unchecked: batch).records
        guard let first = try? records.next(), let value = first.value, value.count >= 8, let address = value.baseAddress else { return }
        UnsafeMutableRawPointer(mutating: address).storeBytes(of: now.bigEndian, as: UInt64.self)
    }

    /// Handles one response if one is (or, with `wait`, becomes) available; with `wait`, also
    /// returns when a connection failed or timed out (its requests went back to their partitions' queues).
    func readResponse(wait: Bool) throws(ClientError) -> Bool {
        var waited = false
        while true {
            for l in links.indices where links[l].inFlight > 0 {
                let frame: UnsafeRawBufferPointer?
                do { frame = try links[l].connection!.reader.nextFrame() } catch {
                    fail(link: l)
                    return true
                }
                if let frame {
                    try handle(frame, link: l)
                    return true
                }
            }
            if inFlight.isEmpty || waited { return false }
            if !wait {
                var read = false
                for l in links.indices where links[l].inFlight > 0 {
                    let c = links[l].connection!
                    do { read = try c.reader.fill(from: c.transport, wait: false) > 0 || read } catch {
                        fail(link: l)
                        return true
                    }
                }
                if !read { return false }
                continue
            }
            if try awaitResponses() { return true }
            // Whatever arrived is read above; then back to the caller, which may have retries due.
            waited = true
        }
    }

    /// Waits until a connection with requests in flight has bytes to read (and reads them), or
    /// until its oldest request has waited `request.timeout.ms` (the connection then fails).
    /// True if a connection failed.
    func awaitResponses() throws(ClientError) -> Bool {
        let now = Sys.monotonicNs()
        let timeout = UInt64(config.requestTimeoutMs) * 1_000_000
        // In-flight requests are in send order: each link's first one is its oldest.
        pollFds.removeAll(keepingCapacity: true)
        pollLinks.removeAll(keepingCapacity: true)
        var firstDeadline = UInt64.max
        for r in inFlight where !pollLinks.contains(r.link) {
            if now &- r.sentNanos >= timeout {
                fail(link: r.link)
                return true
            }
            firstDeadline = min(firstDeadline, r.sentNanos + timeout)
            pollFds.append(pollfd(fd: links[r.link].connection!.transport.fd, events: Int16(POLLIN), revents: 0))
            pollLinks.append(r.link)
        }
        if let due = firstDue() { firstDeadline = min(firstDeadline, max(due, now)) }
        let waitMs = Int32(min((firstDeadline - now) / 1_000_000 + 1, 1000))
        let n = Glibc.poll(&pollFds, nfds_t(pollFds.count), waitMs)
        if n < 0 && errno != EINTR { throw ClientError("poll: errno \(errno)") }
        guard n > 0 else { return false }
        for (i, l) in pollLinks.enumerated() where pollFds[i].revents != 0 {
            let c = links[l].connection!
            do { _ = try c.reader.fill(from: c.transport, wait: false) } catch {
                fail(link: l)
                return true
            }
        }
        return false
    }

    func handle(_ frame: UnsafeRawBufferPointer, link l: Int) throws(ClientError) {
        let ack = Sys.monotonicNs()
        var r = WireReader(frame)
        let response: ProduceResponse
        let correlationId: Int32
        do {
            correlationId = try ResponseHeader.decode(from: &r, version: ProduceRequest.responseHeaderVersion(produceVersion)).correlationId
            response = try ProduceResponse.decode(from: &r, version: produceVersion)
        } catch {
            throw ClientError("decoding a ProduceResponse v\(produceVersion): \(error)")
        }
        // A request's batches were put in flight together, so they are next to each other.
        guard let first = inFlight.firstIndex(where: { $0.link == l && $0.correlationId == correlationId }) else {
            throw ClientError("ProduceResponse with unknown correlation id \(correlationId) from \(links[l].address)")
        }
        var end = first + 1
        while end < inFlight.count && inFlight[end].link == l && inFlight[end].correlationId == correlationId { end += 1 }
        answered.removeAll(keepingCapacity: true)
        answered.append(contentsOf: inFlight[first..<end])
        inFlight.removeSubrange(first..<end)
        links[l].inFlight -= 1
        let sent = answered[0].sentNanos
        metrics.answeredRequests += 1
        metrics.requestLatencyTotalNanos &+= ack &- sent
        metrics.requestLatencyMaxNanos = max(metrics.requestLatencyMaxNanos, ack &- sent)
        let partitions = response.responses.first(where: { $0.name == topic })?.partitionResponses ?? []
        for request in answered {
            // A partition the response leaves out failed with UNKNOWN_SERVER_ERROR (-1).
            var code: Int16 = -1
            var baseOffset: Int64 = -1
            if let p = partitions.first(where: { $0.index == request.partition }) {
                code = p.errorCode
                baseOffset = p.errorCode == 0 ? p.baseOffset : -1
            }
            finish(request, errorCode: code, baseOffset: baseOffset, at: ack)
        }
    }

    /// A request's outcome: acknowledged, queued for a retry (a retriable error within retries
    /// and delivery.timeout.ms), or reported failed.
    func finish(_ request: InFlight, errorCode code: Int16, baseOffset: Int64, at ack: UInt64) {
        if code != 0 && (Self.retriable.contains(code) || (code == ErrorCode.outOfOrderSequenceNumber.rawValue && config.enableIdempotence))
            && request.attempts <= config.retries
            && ack &- request.createdNanos < UInt64(config.deliveryTimeoutMs) * 1_000_000 {
            if Self.staleMetadata.contains(code) { metadataStale = true }
            var retry = request
            retry.link = -1
            retry.dueNanos = ack + UInt64(max(config.retryBackoffMs, 1)) * 1_000_000
            // Before the partition's later batches (a failed connection's requests come back
            // after batches queued meanwhile): each partition's queue stays in creation order.
            queues[Int(request.partition)].insert(retry)
            queued += 1
            return
        }
        if code != 0 { metrics.errorsByCode[code, default: 0] += 1 }
        if request.slot >= 0 {
            slots[request.slot].reset(baseTimestamp: 0)
            freeSlots.append(request.slot)
        }
        onAck(ProduceAck(partition: request.partition, baseOffset: baseOffset, recordCount: request.recordCount, errorCode: code,
                         createdNanos: request.createdNanos, sentNanos: request.sentNanos, ackNanos: ack, userTime: request.userTime))
    }
}
