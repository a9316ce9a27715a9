import ApusIO
import Dispatch
#if canImport(Glibc)
import Glibc  // iovec
#endif
import KafkaProtocol
import KafkaWire
import Synchronization

/// Where a consumer starts when it has no position of its own.
public enum OffsetReset: String, Sendable, Codable {
    case earliest
    case latest
}

/// Consumer settings, named as the Java client names them.
public struct ConsumerConfig: Sendable {
    public var bootstrap: String
    public var clientId: String = "apus-lab"
    /// The broker answers once this many bytes are ready (or `fetchMaxWaitMs` passed).
    public var fetchMinBytes: Int32 = 1
    public var fetchMaxWaitMs: Int32 = 500
    /// At most this many bytes per partition per fetch (the broker still returns one whole
    /// batch for the first partition with data, whatever its size).
    public var maxPartitionFetchBytes: Int32 = 1 << 20
    /// At most this many bytes per fetch over all partitions.
    public var fetchMaxBytes: Int32 = 50 << 20
    public var autoOffsetReset: OffsetReset = .earliest
    /// Validate each batch's CRC32C (and lengths) before reading it.
    public var checkCRCs = true
    /// The largest decompressed records section accepted (zip-bomb guard).
    public var decompressionLimit = 256 << 20
    /// Receive fetch responses on a thread of the consumer's own, one response ahead of the
    /// `poll` that delivers them (like the Java consumer's background fetching), so that
    /// receiving and walking records use two cores. Call `close()` when done.
    public var receiveThread = false
    /// Fetches kept in flight while every partition has data waiting (catching up), each for
    /// its own share of the partitions (partition p in share p mod n). With 1 (the Java
    /// consumer's way) the broker idles while each response is read and the next fetch
    /// travels; with 2 the other share's fetch is queued behind it. Near the log end one fetch
    /// asks for every partition, as with 1: a share with nothing to read would wait
    /// `fetch.max.wait.ms` at the broker, and the responses behind it with it.
    public var fetchesInFlight = 1

    public init(bootstrap: String) { self.bootstrap = bootstrap }

    /// Sets one Java-style property: fetch.min.bytes, fetch.max.wait.ms,
    /// max.partition.fetch.bytes, fetch.max.bytes, auto.offset.reset (earliest|latest),
    /// check.crcs (true|false), client.id, receive.thread (true|false), fetches.in.flight (1–8).
    public mutating func set(_ key: String, _ value: String) throws(ClientError) {
        func int(_ range: ClosedRange<Int>) throws(ClientError) -> Int {
            guard let v = Int(value), range.contains(v) else { throw ClientError("\(key)=\(value): expected an integer in \(range)") }
            return v
        }
        switch key {
        case "fetch.min.bytes": fetchMinBytes = Int32(try int(0...Int(Int32.max)))
        case "fetch.max.wait.ms": fetchMaxWaitMs = Int32(try int(0...Int(Int32.max)))
        case "max.partition.fetch.bytes": maxPartitionFetchBytes = Int32(try int(1...Int(Int32.max)))
        case "fetch.max.bytes": fetchMaxBytes = Int32(try int(1...Int(Int32.max)))
        case "auto.offset.reset":
            guard let r = OffsetReset(rawValue: value) else { throw ClientError("auto.offset.reset=\(value): expected earliest or latest") }
            autoOffsetReset = r
        case "check.crcs":
            guard let b = Bool(value) else { throw ClientError("check.crcs=\(value): expected true or false") }
            checkCRCs = b
        case "client.id": clientId = value
        case "receive.thread":
            guard let b = Bool(value) else { throw ClientError("receive.thread=\(value): expected true or false") }
            receiveThread = b
        case "fetches.in.flight": fetchesInFlight = try int(1...8)
        default: throw ClientError("unknown consumer property '\(key)'")
        }
    }
}

/// One batch handed to `Consumer.onBatch`. The pointers are valid only during the callback.
public struct ConsumedBatch {
    public var partition: Int32
    public var baseOffset: Int64
    public var lastOffset: Int64
    /// Records delivered from this batch (records below the fetch position are skipped).
    public var recordCount: Int
    /// The batch's size on the wire (header included, compressed if it is).
    public var bytes: Int
    /// Key plus value bytes of the delivered records (what kafka-consumer-perf-test counts).
    public var payloadBytes: Int
    /// The first delivered record's value (nil for a null value): the lab's latency stamp.
    public var firstValue: UnsafeRawBufferPointer?
    /// Monotonic time the fetch response holding this batch was read.
    public var receivedNanos: UInt64
}

/// An assign-mode consumer (no group, no commits) of every partition of one topic on one broker.
///
/// Each `poll` completes one Fetch (v4–11, sessionless) and hands out its batches. The response
/// is parsed by hand in the connection's frame buffer: record sections are never copied; batches
/// are walked in place with `RecordBatchSequence` (CRC checked unless `check.crcs=false`) and
/// records with `RecordIterator`; compressed batches are decompressed into one reused buffer.
/// Nothing is allocated per record. A partial batch at the end of a partition's data is left
/// for the next fetch, which starts at `lastOffset + 1` of the last whole batch.
///
/// Pipelining: once a response is parsed and the next positions are known, the next fetch is
/// sent before the batches are delivered, so the broker works while the callbacks run. With
/// `fetches.in.flight` = n and data waiting in every partition, the partitions are split into n
/// shares, each with its own fetch in flight: the broker has the next share's fetch while a
/// response travels (near the log end, one fetch for all partitions again). Fetches are
/// therefore in flight between polls; call `drain()` before using `kafkaConnection` directly.
///
/// Not thread-safe: one thread calls everything and receives the callbacks.
public final class Consumer {
    public let config: ConsumerConfig
    public let topic: String
    public let partitionCount: Int
    public let fetchVersion: Int16
    /// Called once per batch with records at or after the fetch position.
    public var onBatch: (ConsumedBatch) -> Void = { _ in }
    /// Called once per record when set (partition, offset, record viewed in place).
    public var onRecord: ((Int32, Int64, RecordView) -> Void)?

    let connection: KafkaConnection
    /// Per partition, the offset after the last record delivered (the next one the caller
    /// will see). Updated by `poll`, on the caller's thread.
    public private(set) var positions: [Int64]
    /// The high watermark per partition from the last response delivered (-1 before any).
    public private(set) var highWatermarks: [Int64]
    /// The receiving side's own positions and watermarks: where the next fetch starts. They run
    /// ahead of `positions` by the responses received and not yet delivered.
    var fetchPositions: [Int64]
    var fetchWatermarks: [Int64]
    /// A fetch sent and not answered yet: which request (``requests``) and the offsets it asked for.
    struct SentFetch {
        var correlationId: Int32
        var request: Int
        var requested: [Int64]
    }
    /// Oldest first: one fetch of every partition, or one per share.
    var inFlight: [SentFetch] = []
    /// The Fetch requests: [0] asks for every partition, [1...n] for share 1...n (with
    /// `fetches.in.flight` = n > 1); each with its partitions and where its list starts next.
    var requests: [FetchRequest] = []
    var requestPartitions: [[Int]] = []
    var rotations: [Int] = []
    /// The shares' fetches are no longer sent again: one of them found nothing to read, so
    /// the next fetch, once the others are answered, asks for every partition.
    var joining = false
    /// Fetches sent for a share of the partitions (not all of them); read it after `drain()`.
    public private(set) var shareFetches = 0
    var writer = WireWriter(capacity: 512)
    var parts: [PartData] = []
    var scratch: [UInt8] = []
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 1)

    struct PartData {
        var partition: Int32
        var errorCode: Int16
        var highWatermark: Int64
        var records: UnsafeRawBufferPointer
    }

    /// Connects, reads the topic's partitions and their start positions (`auto.offset.reset`).
    public init(config: ConsumerConfig, topic: String) throws(ClientError) {
        self.config = config
        self.topic = topic
        connection = try KafkaConnection(bootstrap: config.bootstrap, clientId: config.clientId)
        fetchVersion = try connection.version(of: FetchRequest.self, supported: 4...11)
        partitionCount = try connection.partitions(of: topic).partitions.count
        positions = config.autoOffsetReset == .earliest
            ? try connection.startOffsets(of: topic, partitions: partitionCount)
            : try connection.endOffsets(of: topic, partitions: partitionCount)
        highWatermarks = [Int64](repeating: -1, count: partitionCount)
        fetchPositions = positions
        fetchWatermarks = highWatermarks
        parts.reserveCapacity(partitionCount)
        let shares = max(1, min(config.fetchesInFlight, partitionCount))
        requestPartitions = [Array(0..<partitionCount)]
        if shares > 1 {
            requestPartitions += (0..<shares).map { Array(stride(from: $0, to: partitionCount, by: shares)) }
        }
        for partitions in requestPartitions {
            var request = FetchRequest()
            request.replicaId = -1
            request.maxWaitMs = config.fetchMaxWaitMs
            request.minBytes = config.fetchMinBytes
            request.maxBytes = config.fetchMaxBytes
            request.isolationLevel = 0
            request.sessionId = 0
            request.sessionEpoch = -1
            request.topics = [FetchRequest.FetchTopic(topic: topic, partitions: partitions.map {
                FetchRequest.FetchPartition(partition: Int32($0), fetchOffset: 0, partitionMaxBytes: config.maxPartitionFetchBytes)
            })]
            requests.append(request)
        }
        rotations = [Int](repeating: 0, count: requests.count)
        inFlight.reserveCapacity(shares)
    }

    deinit { iov.deallocate() }

    /// The connection, for metadata and list-offsets calls after `drain()`.
    public var kafkaConnection: KafkaConnection { connection }

    /// Moves a partition's position (only while no fetch is in flight: after `drain()`).
    public func seek(partition: Int, offset: Int64) {
        precondition(inFlight.isEmpty && handoff == nil, "seek with a fetch in flight; call drain() first")
        positions[partition] = offset
        fetchPositions[partition] = offset
    }

    /// Waits for the in-flight fetches, if any, and discards their responses; positions stay
    /// where they are (the discarded data will be fetched again). Stops the receive thread
    /// first (`close`).
    public func drain() throws(ClientError) {
        close()
        fetchPositions = positions
        for _ in inFlight { _ = try readFrame() }
        inFlight.removeAll(keepingCapacity: true)
        joining = false
    }

    /// Sends a fetch if none is in flight, waits for its response (the broker holds it up to
    /// `fetch.max.wait.ms` for `fetch.min.bytes`), sends the next fetch, then delivers the
    /// batches. Returns the number of records delivered. With `receive.thread`, the response
    /// was received ahead by the consumer's thread and this only delivers it.
    @discardableResult
    public func poll() throws(ClientError) -> Int {
        if config.receiveThread { return try pollReceived() }
        let response = try receive()
        return try deliver(response)
    }

    /// A parsed fetch response whose frame lives in `buffer` until it is delivered.
    /// Handed between the receive thread and the caller, one owner at a time.
    final class Response: @unchecked Sendable {
        var buffer: FrameReader
        var parts: [PartData] = []
        var received: UInt64 = 0
        var fetchedFrom: [Int64] = []
        /// The positions and watermarks once this response is delivered.
        var positions: [Int64] = []
        var highWatermarks: [Int64] = []
        init(buffer: consuming FrameReader) { self.buffer = buffer }
    }

    /// Receives and parses one response, advances the positions from its batch headers and
    /// sends the next fetch. The frame stays in the connection's reader (single-threaded) or
    /// in a spare reader swapped in for it (`receive.thread`).
    func receive(into spare: Response? = nil) throws(ClientError) -> Response {
        if inFlight.isEmpty { try sendFetch(0) }
        let frame = try readFrame()
        let received = Sys.monotonicNs()
        let answered = inFlight.removeFirst()
        try parse(frame, expectedCorrelationId: answered.correlationId, requested: answered.requested)
        // Pass 1: the next position of every partition (headers only), then the next fetch.
        var partitionsWithData = 0
        for part in parts {
            let p = Int(part.partition)
            if part.highWatermark >= 0 { fetchWatermarks[p] = part.highWatermark }
            var batches = RecordBatchSequence(part.records, validate: false)
            var next = fetchPositions[p]
            var whole = 0
            do {
                while let batch = try batches.next() {
                    whole += 1
                    if batch.lastOffset + 1 > next { next = batch.lastOffset + 1 }
                }
            } catch {
                throw ClientError("fetch \(topic)-\(p): corrupt batch: \(error)")
            }
            if whole == 0 && batches.trailingBytes >= RecordBatchLayout.logOverhead && part.records.count >= Int(config.maxPartitionFetchBytes) {
                let declared = Int(Int32(bigEndian: part.records.loadUnaligned(fromByteOffset: RecordBatchLayout.batchLength, as: Int32.self)))
                throw ClientError("\(topic)-\(p) at \(next): a batch of \(declared + RecordBatchLayout.logOverhead) bytes exceeds max.partition.fetch.bytes=\(config.maxPartitionFetchBytes)")
            }
            fetchPositions[p] = next
            if whole > 0 { partitionsWithData += 1 }
        }
        let response = spare ?? current
        if let spare {
            // The frame's bytes leave with the spare; the connection reads on into the spare's
            // (empty) buffer, starting with what was read past the frame (another share's response).
            swap(&connection.reader, &spare.buffer)
            connection.reader.takeUnread(from: &spare.buffer)
        }
        response.parts = parts
        response.received = received
        response.fetchedFrom = answered.requested
        response.positions = fetchPositions
        response.highWatermarks = fetchWatermarks
        try sendNext(after: answered.request, backlog: partitionsWithData == requestPartitions[answered.request].count)
        return response
    }

    /// The next fetch after a response to `requests[answered]`: with shares, one per share
    /// while every partition answered had data (`backlog`), else one for every partition once
    /// the shares' fetches still in flight are answered.
    func sendNext(after answered: Int, backlog: Bool) throws(ClientError) {
        guard requests.count > 1 else { return try sendFetch(0) }
        if answered == 0 {
            if backlog {
                for share in 1..<requests.count { try sendFetch(share) }
            } else {
                try sendFetch(0)
            }
            return
        }
        if !backlog { joining = true }
        if !joining { return try sendFetch(answered) }
        if inFlight.isEmpty {
            joining = false
            try sendFetch(0)
        }
    }

    /// Pass 2: validate, decompress and deliver the batches of a received response.
    func deliver(_ response: Response) throws(ClientError) -> Int {
        positions = response.positions
        highWatermarks = response.highWatermarks
        var delivered = 0
        for part in response.parts where !part.records.isEmpty {
            delivered += try deliver(part, from: response.fetchedFrom[Int(part.partition)], received: response.received)
        }
        return delivered
    }

    // MARK: receive.thread

    /// Responses the receive thread has ready, and spare buffers it may receive into.
    final class Handoff: @unchecked Sendable {
        let lock = Mutex<State>(State())
        let ready = DispatchSemaphore(value: 0)
        let spare = DispatchSemaphore(value: 0)
        let stopped = DispatchSemaphore(value: 0)
        struct State {
            var responses: [Result<Response, ClientError>] = []
            var spares: [Response] = []
            var stop = false
        }
    }

    var handoff: Handoff?
    /// Single-threaded: the response whose parts point into the connection's own reader.
    lazy var current = Response(buffer: FrameReader(capacity: 16))
    /// The response the caller is delivering (its buffer goes back to the spares afterwards).
    var delivering: Response?

    func pollReceived() throws(ClientError) -> Int {
        let h = startReceiveThread()
        if let done = delivering {
            delivering = nil
            h.lock.withLock { $0.spares.append(done) }
            h.spare.signal()
        }
        h.ready.wait()
        let next = h.lock.withLock { $0.responses.removeFirst() }
        switch next {
        case .failure(let error):
            h.ready.signal()  // a failed receiver stays failed
            h.lock.withLock { $0.responses.insert(.failure(error), at: 0) }
            throw error
        case .success(let response):
            delivering = response
            return try deliver(response)
        }
    }

    func startReceiveThread() -> Handoff {
        if let handoff { return handoff }
        let h = Handoff()
        // Two spare buffers: one being received into while the caller delivers the other.
        for _ in 0..<2 {
            h.lock.withLock { $0.spares.append(Response(buffer: FrameReader())) }
            h.spare.signal()
        }
        handoff = h
        // The receive thread touches only the receiving half (connection, fetch positions,
        // request); the caller's thread only the delivering half (positions, scratch, callbacks).
        struct Receiver: @unchecked Sendable { let consumer: Consumer }
        let receiver = Receiver(consumer: self)
        DispatchQueue(label: "apus.consumer.receive").async {
            while true {
                h.spare.wait()
                guard let spare = h.lock.withLock({ $0.stop ? nil : $0.spares.popLast() }) else { break }
                let result: Result<Response, ClientError>
                do throws(ClientError) { result = .success(try receiver.consumer.receive(into: spare)) } catch { result = .failure(error) }
                h.lock.withLock { $0.responses.append(result) }
                h.ready.signal()
                if case .failure = result { break }
            }
            h.stopped.signal()
        }
        return h
    }

    /// Stops the receive thread (after its current fetch, at most `fetch.max.wait.ms`).
    /// Responses it received that `poll` has not delivered are dropped: the next fetch starts at
    /// `positions`, after the last record delivered.
    public func close() {
        guard let h = handoff else { return }
        h.lock.withLock { $0.stop = true }
        h.spare.signal()
        h.stopped.wait()
        handoff = nil
        delivering = nil
        fetchPositions = positions  // what was received and not delivered is fetched again
    }

    func deliver(_ part: PartData, from start: Int64, received: UInt64) throws(ClientError) -> Int {
        var batches = RecordBatchSequence(part.records, validate: config.checkCRCs)
        var delivered = 0
        while true {
            let batch: RecordBatchView
            do {
                guard let b = try batches.next() else { break }
                batch = b
            } catch {
                throw ClientError("fetch \(topic)-\(part.partition): corrupt batch: \(error)")
            }
            if batch.lastOffset < start || batch.isControl { continue }
            let codec: CompressionCodec
            do { codec = try batch.compression } catch { throw ClientError("\(topic)-\(part.partition) batch \(batch.baseOffset): \(error)") }
            if codec == .none {
                delivered += try walk(batch, records: batch.recordsSection, partition: part.partition, from: start, received: received)
            } else {
                var buffer: [UInt8] = []
                swap(&buffer, &scratch)
                defer { swap(&buffer, &scratch) }
                buffer.removeAll(keepingCapacity: true)
                do {
                    try codec.decompress(batch.recordsSection, appendingTo: &buffer, limit: config.decompressionLimit)
                } catch {
                    throw ClientError("\(topic)-\(part.partition) batch \(batch.baseOffset): \(error)")
                }
                delivered += try buffer.withRawBytes { (raw) throws(ClientError) -> Int in
                    try walk(batch, records: raw, partition: part.partition, from: start, received: received)
                }
            }
        }
        return delivered
    }

    /// Iterates a batch's (uncompressed) records in place and reports the batch.
    @inline(__always)
    func walk(_ batch: RecordBatchView, records: UnsafeRawBufferPointer, partition: Int32, from start: Int64, received: UInt64) throws(ClientError) -> Int {
        let base = batch.baseOffset
        let expected = Int(batch.recordCount)
        var it = RecordIterator(records: records, count: expected)
        var seen = 0
        var count = 0
        var payload = 0
        var first: UnsafeRawBufferPointer?
        let perRecord = onRecord
        do {
            while let record = try it.next() {
                seen += 1
                let offset = base + Int64(record.offsetDelta)
                if offset < start { continue }
                if count == 0 { first = record.value }
                count += 1
                payload += (record.key?.count ?? 0) + (record.value?.count ?? 0)
                if let perRecord { perRecord(partition, offset, record) }
            }
        } catch {
            throw ClientError("\(topic)-\(partition) batch \(base): \(error)")
        }
        guard seen == expected else {
            throw ClientError("\(topic)-\(partition) batch \(base): \(seen) records, header says \(expected)")
        }
        if count > 0 {
            onBatch(ConsumedBatch(partition: partition, baseOffset: base, lastOffset: batch.lastOffset, recordCount: count,
                                  bytes: batch.bytes.count, payloadBytes: payload, firstValue: first, receivedNanos: received))
        }
        return count
    }

    /// Writes `requests[index]` with each of its partitions at its position (starting the
    /// partition list one further each time, for fairness under `fetch.max.bytes`).
    func sendFetch(_ index: Int) throws(ClientError) {
        let partitions = requestPartitions[index]
        let n = partitions.count
        for i in 0..<n {
            let p = partitions[(rotations[index] + i) % n]
            requests[index].topics[0].partitions[i].partition = Int32(p)
            requests[index].topics[0].partitions[i].fetchOffset = fetchPositions[p]
        }
        rotations[index] = (rotations[index] + 1) % n
        writer.bytes.removeAll(keepingCapacity: true)
        writer.writeInt32(0)
        let correlationId = connection.writeHeader(FetchRequest.self, version: fetchVersion, into: &writer)
        requests[index].encode(into: &writer, version: fetchVersion)
        let size = Int32(writer.count - 4).bigEndian
        withUnsafeBytes(of: size) { s in for i in 0..<4 { writer.bytes[i] = s[i] } }
        let transport = connection.transport
        let iov = self.iov
        let result: Result<Void, ClientError> = writer.bytes.withUnsafeMutableBytes { raw in
            iov.pointee = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            do throws(SystemError) { try transport.writeAll(iov, count: 1) } catch { return .failure(ClientError(error)) }
            return .success(())
        }
        try result.get()
        inFlight.append(SentFetch(correlationId: correlationId, request: index, requested: fetchPositions))
        if index > 0 { shareFetches += 1 }
    }

    /// The next response frame, valid until the next read on the connection.
    func readFrame() throws(ClientError) -> UnsafeRawBufferPointer {
        while true {
            if let frame = try connection.reader.nextFrame() { return frame }
            // A reader handed to the caller with its frame (receive.thread) should not take
            // much of the next response along: it would be copied back.
            if try connection.reader.fill(from: connection.transport, wait: true, frameEnd: config.receiveThread) == 0 {
                throw ClientError("connection closed by the broker")
            }
        }
    }

    /// Parses a Fetch response (v4–11, classic encoding) into `parts`, pointing into `frame`.
    func parse(_ frame: UnsafeRawBufferPointer, expectedCorrelationId: Int32, requested: [Int64]) throws(ClientError) {
        parts.removeAll(keepingCapacity: true)
        var c = Cursor(frame)
        let correlationId = try c.int32()
        guard correlationId == expectedCorrelationId else {
            throw ClientError("Fetch: correlation id \(correlationId), expected \(expectedCorrelationId)")
        }
        _ = try c.int32()  // throttle_time_ms
        if fetchVersion >= 7 {
            let error = try c.int16()
            _ = try c.int32()  // session_id
            if error != 0 { throw ClientError("Fetch failed with error \(error)", kafkaErrorCode: error) }
        }
        let topics = try c.int32()
        for _ in 0..<max(topics, 0) {
            let nameLength = try c.int16()
            try c.skip(Int(max(nameLength, 0)))
            let partitions = try c.int32()
            for _ in 0..<max(partitions, 0) {
                let partition = try c.int32()
                let error = try c.int16()
                let highWatermark = try c.int64()
                _ = try c.int64()  // last_stable_offset
                if fetchVersion >= 5 { _ = try c.int64() }  // log_start_offset
                let aborted = try c.int32()
                if aborted > 0 { try c.skip(Int(aborted) * 16) }
                if fetchVersion >= 11 { _ = try c.int32() }  // preferred_read_replica
                let length = try c.int32()
                let records = length > 0 ? try c.bytes(Int(length)) : UnsafeRawBufferPointer(start: nil, count: 0)
                guard partition >= 0 && Int(partition) < partitionCount else {
                    throw ClientError("Fetch: unexpected partition \(partition)")
                }
                if error != 0 {
                    throw ClientError("fetch \(topic)-\(partition) at \(requested[Int(partition)]): error \(error)", kafkaErrorCode: error)
                }
                parts.append(PartData(partition: partition, errorCode: error, highWatermark: highWatermark, records: records))
            }
        }
    }

    /// Big-endian reads over a response frame, every one bounds-checked.
    struct Cursor {
        let base: UnsafeRawBufferPointer
        var i = 0
        init(_ base: UnsafeRawBufferPointer) { self.base = base }

        mutating func need(_ n: Int) throws(ClientError) {
            guard n >= 0, base.count - i >= n else { throw ClientError("Fetch response truncated at byte \(i) (needed \(n))") }
        }
        mutating func int16() throws(ClientError) -> Int16 {
            try need(2)
            defer { i += 2 }
            return Int16(bigEndian: base.loadUnaligned(fromByteOffset: i, as: Int16.self))
        }
        mutating func int32() throws(ClientError) -> Int32 {
            try need(4)
            defer { i += 4 }
            return Int32(bigEndian: base.loadUnaligned(fromByteOffset: i, as: Int32.self))
        }
        mutating func int64() throws(ClientError) -> Int64 {
            try need(8)
            defer { i += 8 }
            return Int64(bigEndian: base.loadUnaligned(fromByteOffset: i, as: Int64.self))
        }
        mutating func skip(_ n: Int) throws(ClientError) {
            try need(n)
            i += n
        }
        mutating func bytes(_ n: Int) throws(ClientError) -> UnsafeRawBufferPointer {
            try need(n)
            defer { i += n }
            return UnsafeRawBufferPointer(rebasing: base[i..<i + n])
        }
    }
}
