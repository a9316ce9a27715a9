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
    /// Produce requests sent and not yet answered, at most.
    public var maxInFlight: Int = 5
    public var partitioner: Partitioner = .murmur2
    public var requestTimeoutMs: Int32 = 30_000
    public var clientId: String = "apus-lab"
    /// The lab's end-to-end latency stamp: when a batch is sent, the first 8 bytes of its first
    /// record's value are overwritten with `Sys.monotonicNs()` (big-endian), before compression
    /// and the CRC. Skipped when that value is shorter than 8 bytes. Costs one extra CRC pass
    /// over the batch (the builder is finished twice). Off by default.
    public var stampBatches = false

    public init(bootstrap: String) { self.bootstrap = bootstrap }

    /// Sets one Java-style property: acks, batch.size, linger.ms, compression.type,
    /// max.in.flight.requests.per.connection, partitioner (round-robin|sticky|murmur2),
    /// request.timeout.ms, client.id.
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
        case "partitioner":
            guard let p = Partitioner(rawValue: value) else { throw ClientError("partitioner=\(value): expected round-robin, sticky or murmur2") }
            partitioner = p
        case "request.timeout.ms": requestTimeoutMs = Int32(try int(1...Int(Int32.max)))
        case "client.id": clientId = value
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

/// A fast Kafka producer for one topic on one broker.
///
/// Records are written straight into one `RecordBatchBuilder` per partition (nothing is
/// allocated per record); a full batch, or one older than `linger.ms`, becomes a ProduceRequest
/// written by hand around the batch bytes (no copy) and sent on the caller's thread with up to
/// `max.in.flight.requests.per.connection` requests pipelined; responses are matched by
/// correlation id and reported to `onAck` once per batch. Timestamps: one wall-clock and one
/// monotonic reading per batch, and a monotonic reading every 256 records for linger.
///
/// Not thread-safe: one thread calls `send`, `poll`, `flush` and receives `onAck` on that thread.
/// Run one producer per thread for more.
public final class Producer {
    public let config: ProducerConfig
    public let topic: String
    public let partitionCount: Int
    public let produceVersion: Int16
    /// Called on the producer's thread once per batch.
    public var onAck: (ProduceAck) -> Void = { _ in }

    let connection: KafkaConnection
    let builders: UnsafeMutablePointer<RecordBatchBuilder>
    let batchInfo: UnsafeMutablePointer<BatchInfo>
    var current = 0
    var random = SplitMix64(seed: UInt64(truncatingIfNeeded: Sys.monotonicNs()))
    var sinceClock = 0
    var prefix = WireWriter(capacity: 512)
    var inFlight: [InFlight] = []
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 3)
    let suffixBytes = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 4)
    let prefixCapacity = 4096
    let prefixBytes = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    var open = true

    struct BatchInfo {
        var createdNanos: UInt64 = 0
        var userTime: UInt64 = 0
    }

    struct InFlight {
        var correlationId: Int32
        var partition: Int32
        var recordCount: Int
        var createdNanos: UInt64
        var sentNanos: UInt64
        var userTime: UInt64
    }

    /// Connects, agrees versions (Produce v3+) and reads the topic's partitions (creating the
    /// topic if the broker auto-creates topics).
    public init(config: ProducerConfig, topic: String) throws(ClientError) {
        self.config = config
        self.topic = topic
        connection = try KafkaConnection(bootstrap: config.bootstrap, clientId: config.clientId)
        produceVersion = try connection.version(of: ProduceRequest.self, supported: 3...11)
        partitionCount = try connection.partitions(of: topic).partitions.count
        builders = .allocate(capacity: partitionCount)
        batchInfo = .allocate(capacity: partitionCount)
        for p in 0..<partitionCount {
            (builders + p).initialize(to: RecordBatchBuilder(capacity: config.batchSize))
            (batchInfo + p).initialize(to: BatchInfo())
        }
        current = Int(random.next() % UInt64(partitionCount))
        inFlight.reserveCapacity(config.maxInFlight + 1)
        suffixBytes.initializeMemory(as: UInt8.self, repeating: 0, count: 4)  // empty tagged-field sections
    }

    deinit {
        builders.deinitialize(count: partitionCount)
        builders.deallocate()
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

    /// Sends batches older than `linger.ms` and reads any responses that have arrived,
    /// without blocking (unless max-in-flight is reached). Call it while idle.
    public func poll() throws(ClientError) {
        while try readResponse(wait: false) {}
        let now = Sys.monotonicNs()
        let linger = UInt64(config.lingerMs) * 1_000_000
        for p in 0..<partitionCount where !builders[p].isEmpty && now &- batchInfo[p].createdNanos >= linger {
            try sendBatch(p)
            if p == current { advance() }
        }
    }

    /// Sends every open batch and waits until every request is answered.
    public func flush() throws(ClientError) {
        for p in 0..<partitionCount where !builders[p].isEmpty { try sendBatch(p) }
        while !inFlight.isEmpty { _ = try readResponse(wait: true) }
    }

    /// Requests sent and not yet answered.
    public var inFlightCount: Int { inFlight.count }

    func sendBatch(_ p: Int) throws(ClientError) {
        while inFlight.count >= config.maxInFlight { _ = try readResponse(wait: true) }
        let batch: UnsafeRawBufferPointer
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
        let correlationId = connection.nextCorrelationId
        connection.nextCorrelationId = correlationId == Int32.max ? 1 : correlationId + 1
        ProduceRequestEncoder.writePrefix(
            into: &prefix, version: produceVersion, correlationId: correlationId, clientId: config.clientId,
            acks: config.acks, timeoutMs: config.requestTimeoutMs, topic: topic, partition: Int32(p), recordsLength: batch.count)
        let suffix = ProduceRequestEncoder.suffixLength(version: produceVersion)
        guard prefix.count <= prefixCapacity else { throw ClientError("topic or client id too long") }
        prefix.bytes.withUnsafeBytes { prefixBytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        iov[0] = iovec(iov_base: prefixBytes, iov_len: prefix.count)
        iov[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: batch.baseAddress), iov_len: batch.count)
        iov[2] = iovec(iov_base: suffixBytes, iov_len: suffix)
        do { try connection.transport.writeAll(iov, count: suffix > 0 ? 3 : 2) } catch { throw ClientError(error) }
        let sent = Sys.monotonicNs()
        builders[p].reset(baseTimestamp: 0)
        if config.acks == 0 {
            onAck(ProduceAck(partition: Int32(p), baseOffset: -1, recordCount: count, errorCode: 0,
                             createdNanos: info.createdNanos, sentNanos: sent, ackNanos: sent, userTime: info.userTime))
        } else {
            inFlight.append(InFlight(correlationId: correlationId, partition: Int32(p), recordCount: count,
                                     createdNanos: info.createdNanos, sentNanos: sent, userTime: info.userTime))
        }
    }

    /// Writes `now` (big-endian) into the first 8 bytes of the first record's value of an
    /// uncompressed finished batch, if that value has at least 8 bytes.
    static func stamp(_ batch: UnsafeRawBufferPointer, now: UInt64) {
        var records = RecordBatchView(unchecked: batch).records
        guard let first = try? records.next(), let value = first.value, value.count >= 8, let address = value.baseAddress else { return }
        UnsafeMutableRawPointer(mutating: address).storeBytes(of: now.bigEndian, as: UInt64.self)
    }

    /// Handles one response if one is (or, with `wait`, becomes) available.
    func readResponse(wait: Bool) throws(ClientError) -> Bool {
        while true {
            if let frame = try connection.reader.nextFrame() {
                try handle(frame)
                return true
            }
            if inFlight.isEmpty && !wait { return false }
            if try connection.reader.fill(from: connection.transport, wait: wait) == 0 { return false }
        }
    }

    func handle(_ frame: UnsafeRawBufferPointer) throws(ClientError) {
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
        guard let index = inFlight.firstIndex(where: { $0.correlationId == correlationId }) else {
            throw ClientError("ProduceResponse with unknown correlation id \(correlationId)")
        }
        let request = inFlight.remove(at: index)
        var result = ProduceAck(partition: request.partition, baseOffset: -1, recordCount: request.recordCount, errorCode: -1,
                                createdNanos: request.createdNanos, sentNanos: request.sentNanos, ackNanos: ack, userTime: request.userTime)
        if let p = response.responses.first(where: { $0.name == topic })?.partitionResponses.first(where: { $0.index == request.partition }) {
            result.errorCode = p.errorCode
            result.baseOffset = p.errorCode == 0 ? p.baseOffset : -1
        }
        onAck(result)
    }

    /// The connection, for metadata and list-offsets calls once nothing is in flight.
    public var kafkaConnection: KafkaConnection { connection }
}
