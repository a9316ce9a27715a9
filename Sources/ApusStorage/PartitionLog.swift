import ApusIO
#if canImport(Glibc)
import Glibc  // EIO
#endif
import KafkaWire
import Logging
import Synchronization

/// A topic partition's name; its directory is `<topic>-<partition>`.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// Parses a directory name `<topic>-<partition>` (topics may contain '-').
    public init?(directoryName: String) {
        guard let dash = directoryName.lastIndex(of: "-"),
              let p = Int32(directoryName[directoryName.index(after: dash)...]), p >= 0,
              dash > directoryName.startIndex else { return nil }
        self.init(String(directoryName[..<dash]), p)
    }

    public var description: String { "\(topic)-\(partition)" }

    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
}

/// What an append assigned.
public struct AppendInfo: Equatable, Sendable {
    public var baseOffset: Int64
    public var lastOffset: Int64
    public var logStartOffset: Int64
}

/// A byte range of a segment file holding whole batches: what a zero-copy fetch sends.
/// The descriptor stays open as long as the range exists.
public struct FileRange: Equatable {
    public var fd: Int32
    public var position: Int64
    public var length: Int
    /// The segment the descriptor belongs to: holding it keeps the descriptor open even if
    /// retention or a topic deletion drops the segment before the range is sent.
    public let owner: AnyObject?

    public init(fd: Int32, position: Int64, length: Int, owner: AnyObject? = nil) {
        self.fd = fd
        self.position = position
        self.length = length
        self.owner = owner
    }

    public static func == (a: FileRange, b: FileRange) -> Bool {
        a.fd == b.fd && a.position == b.position && a.length == b.length
    }
}

/// One partition's log: segments on disk in Kafka's layout, offsets, indexes, retention.
///
/// Owned by exactly one shard thread; not thread-safe. `append` only stages a batch: it is
/// written by the owning ``LogShard``'s `commit` (group commit) and becomes readable then
/// (`logEndOffset` advances). It is durable once `durableOffset` passes it, which happens
/// when a sync covering it completes (per the durability mode and flush policy).
public final class PartitionLog {
    public let topicPartition: TopicPartition
    public let directory: String
    public var config: LogConfig
    let logger: Logger

    var segments: [Segment]
    public private(set) var logStartOffset: Int64
    /// The next offset to assign (staged batches included).
    public private(set) var nextOffset: Int64
    /// Offsets below this are written and readable by followers; also the high watermark when
    /// this log is the partition's only replica.
    public private(set) var logEndOffset: Int64
    /// Offsets below this are on disk (fdatasync'ed).
    public internal(set) var durableOffset: Int64
    /// A replicated partition's high watermark as its leader computes it from the in-sync
    /// replicas (or a follower learns it from the leader); nil when this log is the only replica.
    public var replicatedHighWatermark: Int64?
    /// The replicated high watermark read from the partition's checkpoint when the log opened.
    public internal(set) var checkpointedHighWatermark: Int64?
    /// Offsets below this are what consumers may read: every in-sync replica has them.
    public var highWatermark: Int64 { min(replicatedHighWatermark ?? logEndOffset, logEndOffset) }
    /// The leader epoch cache (KIP-101): each leader epoch this log holds batches of, with the
    /// offset where it starts, in order — from the batches' `partitionLeaderEpoch` as they are
    /// appended, cut with the log, checkpointed in `leader-epoch-checkpoint` (``LogManager``) and
    /// completed at recovery from the batches scanned.
    public internal(set) var epochStarts: [EpochStart] = [] { didSet { epochsVersion &+= 1 } }
    /// Moves whenever `epochStarts` changes (for publishing it to other threads).
    public private(set) var epochsVersion: UInt64 = 0
    /// The epoch this broker leads the partition at (cluster mode, replicated): appends that take
    /// offsets here are stamped with it, as Kafka's leader does.
    public var leaderEpoch: Int32?

    // Group-commit bookkeeping for the current turn.
    var dirtySegments: [(segment: Segment, nextAtTurnStart: Int64)] = []
    var stagedRecords: Int64 = 0
    var durableRequested = false
    var unsyncedRecords: Int64 = 0
    var lastSyncMs: Int64
    /// The next segment's files, made ahead by the disk worker once the active segment is half
    /// full, so that rolling does not create files on the shard.
    let spare = SpareSegment()
    /// The active segment has asked for a spare.
    var spareAsked = false
    /// The active segment rolls where its reservation ends (at once if it has none), onto a
    /// spare reserved in full.
    var rollsAtReservation = false
    /// Where the active segment's rate is judged from: its size and the time at the last
    /// judgement (``judgeRate(_:nowMs:)``); `ms` 0 until its first append.
    private var rateMark: (ms: Int64, bytes: Int64) = (0, 0)
    /// Counts `bytes` of this log sent to a consumer (the Fetch handler, once per range it sends;
    /// other reads, such as rebuilding producer state, are not traffic).
    public func countFetched(_ bytes: Int) {
        traffic.bytesOut &+= UInt64(bytes)
    }

    /// Traffic since the log was opened, for the metrics endpoint (owner shard only).
    public private(set) var traffic = LogTraffic()
    /// Set when a sync failed (or the log was deleted): the partition takes no more writes.
    public internal(set) var failure: String?

    /// The topic was deleted: its files are being cut and removed by the disk worker, so
    /// nothing reads them any more (a request still holding the log finds no partition).
    public private(set) var isDeleted = false

    /// Refuses further appends and reads and drops what is staged (the topic is being deleted).
    public func markDeleted() {
        isDeleted = true
        failure = "topic deleted"
        _ = spare.discard()  // its files go with the partition's directory
        for (segment, next) in dirtySegments { segment.rollbackStaged(nextOffset: next) }
        dirtySegments.removeAll()
        nextOffset = logEndOffset
        epochStarts.removeAll { $0.startOffset >= logEndOffset }
    }

    init(topicPartition: TopicPartition, directory: String, config: LogConfig, segments: [Segment], logger: Logger, nowMs: Int64) {
        self.topicPartition = topicPartition
        self.directory = directory
        self.config = config
        self.segments = segments
        self.logger = logger
        logStartOffset = segments.first!.baseOffset
        nextOffset = segments.last!.nextOffset
        logEndOffset = nextOffset
        durableOffset = nextOffset
        lastSyncMs = nowMs
    }

    var activeSegment: Segment { segments[segments.count - 1] }

    /// Total bytes in the log's segments.
    public var sizeInBytes: Int64 { segments.reduce(0) { $0 + $1.size } }
    public var segmentCount: Int { segments.count }
    /// How long opening the segments waited for their file locks: a previous process killed
    /// with writes in flight holds them until those writes finish.
    public var lockWaitNs: UInt64 { segments.reduce(0) { $0 + $1.lockWaitNs } }
    public var segmentBaseOffsets: [Int64] { segments.map(\.baseOffset) }
    var hasStagedData: Bool { !dirtySegments.isEmpty }

    // MARK: Appending

    /// Assigns offsets to a validated RecordBatch v2 (rewriting its base offset in place) and
    /// stages it for the shard's next commit. The batch memory must stay valid until then.
    /// - Parameter requireDurable: an acks=all append (synced before acknowledgement under
    ///   `fsync-on-ack-all`).
    /// - Parameter keepOffsets: a follower's append of a batch its leader gave offsets to: the
    ///   batch must start at ``nextOffset`` and keeps its offsets.
    public func append(_ batch: UnsafeMutableRawBufferPointer, requireDurable: Bool, nowMs: Int64, keepOffsets: Bool = false) throws(StorageError) -> AppendInfo {
        if let failure { throw .offline(failure) }
        guard batch.count >= RecordBatchLayout.headerSize, let base = batch.baseAddress else {
            throw .invalidBatch("shorter than a batch header")
        }
        let view = RecordBatchView(unchecked: UnsafeRawBufferPointer(batch))
        guard view.magic == 2, Int(view.batchLength) + RecordBatchLayout.logOverhead == batch.count else {
            throw .invalidBatch("not a single RecordBatch v2")
        }
        guard batch.count <= Int(UInt32.max) / 2 else { throw .invalidBatch("batch too large") }
        guard keepOffsets || view.lastOffsetDelta == max(view.recordCount - 1, 0) else {
            throw .invalidBatch("lastOffsetDelta \(view.lastOffsetDelta) does not match \(view.recordCount) records")
        }
        if keepOffsets && view.baseOffset != nextOffset {
            throw .invalidBatch("a replicated batch at offset \(view.baseOffset), the log ends at \(nextOffset)")
        }
        var segment = activeSegment
        let relativeEnd = nextOffset + Int64(view.lastOffsetDelta) - segment.baseOffset
        if !segment.isEmpty && (segment.stagedSize + Int64(batch.count) > config.segmentBytes || nowMs - segment.createdMs >= config.segmentMs
                                || relativeEnd > Int64(Int32.max)) {
            segment = try roll(nowMs: nowMs, spare: spare.take())
        } else if rollsAtReservation && segment.stagedSize + Int64(batch.count) > segment.reservedTo, let ready = spare.take() {
            segment = try roll(nowMs: nowMs, spare: ready)  // early: the spare is reserved in full
        }
        if !spareAsked && (segment.stagedSize >= config.segmentBytes / 2 || nowMs - segment.createdMs >= config.segmentMs / 2) {
            spareAsked = true  // once per segment: no lock on the append path after that
            spare.prepare(directory, nowMs: nowMs, reserve: spareReservation(segment, nowMs: nowMs), intervalBytes: config.indexIntervalBytes)
        }
        let baseOffset = nextOffset
        if !keepOffsets {
            RecordBatchView.setBaseOffset(baseOffset, inBatchAt: base)
            if let leaderEpoch { RecordBatchView.setPartitionLeaderEpoch(leaderEpoch, inBatchAt: base) }
        }
        let epoch = view.partitionLeaderEpoch
        if epoch >= 0 && epoch > (epochStarts.last?.epoch ?? -1) { epochStarts.append(EpochStart(epoch: epoch, startOffset: baseOffset)) }
        if !dirtySegments.contains(where: { $0.segment === segment }) {
            dirtySegments.append((segment, segment.nextOffset))
        }
        segment.stage(UnsafeRawBufferPointer(batch), view: view, intervalBytes: config.indexIntervalBytes)
        if config.preallocateBytes > 0 && !rollsAtReservation && segment.stagedSize + config.preallocateBytes / 2 > segment.reservedTo
            && segment.stagedSize >= rateMark.bytes + config.preallocateBytes / 2 {
            judgeRate(segment, nowMs: nowMs)
        }
        nextOffset = view.lastOffset + 1
        stagedRecords += Int64(view.recordCount)
        if requireDurable { durableRequested = true }
        return AppendInfo(baseOffset: baseOffset, lastOffset: view.lastOffset, logStartOffset: logStartOffset)
    }

    /// The active segment's reservation is running out (or it has none) and half a window was
    /// written since the last judgement. Blocks are never reserved in a file a shard is
    /// writing: ext4's `fallocate` holds the file's inode lock, which every buffered write takes
    /// too, for as long as it waits on the journal (measured after a maximum-rate run:
    /// reservations of 43–156 ms on the worker and the shard's `pwritev` waiting up to 123 ms
    /// behind them). So a partition filling at a rate that would fill `segment.bytes` within a
    /// minute, over the bytes since the last judgement, asks for a spare reserved in full and
    /// rolls onto it where its reservation ends — at once, for a segment without one, such as
    /// a new partition's first. Until then, and in a slower partition's segments beyond the
    /// window their spare had reserved, writes take the file system's delayed allocation.
    private func judgeRate(_ segment: Segment, nowMs: Int64) {
        if rateMark.ms == 0 { rateMark.ms = segment.createdMs }
        let fast = (segment.stagedSize - rateMark.bytes) * 60_000 >= config.segmentBytes * max(nowMs - rateMark.ms, 1)
        rateMark = (nowMs, segment.stagedSize)
        guard fast else { return }
        rollsAtReservation = true
        if !spareAsked {
            spareAsked = true
            spare.prepare(directory, nowMs: nowMs, reserve: config.segmentBytes, intervalBytes: config.indexIntervalBytes)
        }
    }

    /// Whether the segment is filling at a rate that would fill `segment.bytes` within a minute.
    private func fillsFast(_ segment: Segment, nowMs: Int64) -> Bool {
        segment.stagedSize * 60_000 >= config.segmentBytes * max(nowMs - segment.createdMs, 1)
    }

    /// What a spare asked for now reserves before it is handed over: the whole segment for a
    /// partition filling fast, else the first window.
    private func spareReservation(_ segment: Segment, nowMs: Int64) -> Int64 {
        guard config.preallocateBytes > 0 else { return 0 }
        return fillsFast(segment, nowMs: nowMs) ? config.segmentBytes : min(config.preallocateBytes, config.segmentBytes)
    }

    /// Starts a new segment at the next offset, on `spare` if one is ready.
    private func roll(nowMs: Int64, spare: Segment?) throws(StorageError) -> Segment {
        // The old segment's max timestamp goes into its time index with this turn's writes.
        let old = activeSegment
        if old.stageFinalTimeIndexEntry() && !dirtySegments.contains(where: { $0.segment === old }) {
            dirtySegments.append((old, old.nextOffset))
        }
        let segment: Segment
        if let spare {
            // The files exist already (made by the spares worker); they get their name there
            // too, before it makes the next spare. Until then they are `spare.*`, which
            // recovery adopts by their first batch.
            segment = spare
            let (from, to) = segment.adopt(baseOffset: nextOffset, nowMs: nowMs)
            DiskWorker.spares.run {
                for ext in [".index", ".timeindex", ".log"] { try? Sys.rename(from + ext, to + ext) }
            }
        } else {
            do {
                let base = nextOffset
                segment = try ShardThreadContract.allowingDiskWait("segment roll without a spare: creating the new segment's files") { () throws(SystemError) in
                    try Segment(directory: directory, baseOffset: base, create: true, nowMs: nowMs)
                }
            } catch {
                throw .io(error)
            }
        }
        segment.nextOffset = nextOffset
        segments.append(segment)
        spareAsked = false
        rollsAtReservation = false
        rateMark = (nowMs, 0)
        logger.debug("rolled segment", metadata: ["partition": "\(topicPartition)", "base": "\(nextOffset)"])
        return segment
    }

    /// This turn's writes (log data and index entries of every dirty segment).
    func stagedWrites() -> [FileWrite] {
        dirtySegments.flatMap { $0.segment.stagedWrites() }
    }

    /// Called by the shard once this turn's writes finished. On failure everything staged in
    /// the turn is dropped and the files are cut back, so the log stays as it was.
    /// - Returns: the descriptors to sync under the durability mode and flush policy.
    func finishTurn(error: SystemError?, nowMs: Int64) -> [Int32] {
        defer {
            dirtySegments.removeAll(keepingCapacity: true)
            stagedRecords = 0
            durableRequested = false
        }
        if let error {
            for (segment, next) in dirtySegments { segment.rollbackStaged(nextOffset: next) }
            nextOffset = logEndOffset
            epochStarts.removeAll { $0.startOffset >= logEndOffset }
            logger.warning("append failed; log left at its last committed state", metadata: [
                "partition": "\(topicPartition)", "error": "\(error)", "logEndOffset": "\(logEndOffset)",
            ])
            return []
        }
        traffic.bytesIn &+= UInt64(dirtySegments.reduce(0) { $0 + $1.segment.stagedSize - $1.segment.size })
        for (segment, _) in dirtySegments {
            segment.commitStaged()
            if segment !== activeSegment { segment.releaseReservation() }  // rolled: its last writes landed
        }
        logEndOffset = nextOffset
        unsyncedRecords += stagedRecords
        traffic.recordsIn &+= UInt64(stagedRecords)
        let sync: Bool
        switch config.durability {
        case .fsyncAlways: sync = true
        case .fsyncOnAckAll: sync = durableRequested
        case .pageCache: sync = false
        }
        guard sync || unsyncedRecords >= config.flushMessages
            || (config.flushMs != .max && nowMs - lastSyncMs >= config.flushMs) else { return [] }
        unsyncedRecords = 0
        lastSyncMs = nowMs
        // Every segment still holding data not yet durable, not only this turn's: a sync group
        // moves durableOffset to logEndOffset, so it must cover everything below it.
        return segments.filter { $0.nextOffset > durableOffset }.map(\.logFd)
    }

    /// A background flush (flush.ms) for data written in earlier turns; nil if nothing is due.
    func dueFlush(nowMs: Int64) -> [Int32]? {
        guard durableOffset < logEndOffset, config.flushMs != .max, nowMs - lastSyncMs >= config.flushMs else { return nil }
        unsyncedRecords = 0
        lastSyncMs = nowMs
        return segments.filter { $0.nextOffset > durableOffset }.map(\.logFd)
    }

    // MARK: Reading

    /// The segment holding `offset` (the last one whose base offset is at or below it).
    func segmentIndex(for offset: Int64) -> Int {
        var lo = 0, hi = segments.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if segments[mid].baseOffset <= offset { lo = mid + 1 } else { hi = mid }
        }
        return max(lo - 1, 0)
    }

    /// The file range of whole batches starting with the one that holds `offset`, at most
    /// `maxBytes` long unless the first batch alone is longer (it is then returned whole, as
    /// Kafka does). Nil when `offset` is the log end, or `bound`. Never includes unwritten
    /// bytes, nor batches at or past `bound` (a batch boundary: a replicated partition's high
    /// watermark, for consumers).
    public func read(from offset: Int64, maxBytes: Int, upTo bound: Int64 = .max) throws(StorageError) -> FileRange? {
        guard offset >= logStartOffset && offset <= logEndOffset else {
            throw .offsetOutOfRange(requested: offset, logStart: logStartOffset, logEnd: logEndOffset)
        }
        if offset >= bound { return nil }
        var index = segmentIndex(for: offset)
        while index < segments.count {
            let segment = segments[index]
            if let start = try findBatch(containing: offset, in: segment) {
                var end = try rangeEnd(segment, from: start, maxBytes: maxBytes)
                if bound < segment.nextOffset, let stop = try findBatch(containing: bound, in: segment) {
                    end = min(end, stop)
                    if end <= start { return nil }
                }
                try verify(segment, upTo: end, from: start)
                return FileRange(fd: segment.logFd, position: start, length: Int(end - start), owner: segment)
            }
            index += 1  // the offset lies past this segment's batches: a gap or the next segment
        }
        return nil
    }

    /// A copy of what ``read(from:maxBytes:)`` would send, CRC-checked batch by batch.
    public func readCopy(from offset: Int64, maxBytes: Int) throws(StorageError) -> [UInt8] {
        guard let range = try read(from: offset, maxBytes: maxBytes) else { return [] }
        var out = [UInt8](repeating: 0, count: range.length)
        let n = try out.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try Sys.preadFully(range.fd, raw, at: range.position) }
        }.mapError(StorageError.io).get()
        out.removeLast(range.length - n)
        return out
    }

    /// Reads the header fields of the batch at `position` of `segment`.
    struct BatchHeader {
        var baseOffset: Int64
        var size: Int
        var lastOffset: Int64
        var maxTimestamp: Int64
    }

    private func header(_ segment: Segment, at position: Int64, _ buffer: HeaderBuffer) throws(StorageError) -> BatchHeader {
        let raw = try buffer.bytes(segment, at: position)
        // A file shorter than the size this log recorded (cut by someone else) is a storage
        // error for this read (KAFKA_STORAGE_ERROR), not a load past the bytes read.
        guard raw.count >= RecordBatchLayout.headerSize else {
            throw .io(SystemError("pread", errno: EIO, "\(segment.path).log is shorter than its recorded \(segment.size) bytes"))
        }
        let view = RecordBatchView(unchecked: raw)
        let size = Int(view.batchLength) + RecordBatchLayout.logOverhead
        guard view.magic == 2, size >= RecordBatchLayout.headerSize, position + Int64(size) <= segment.size else {
            segment.corruptAt = segment.corruptAt ?? (position, "bad batch header")
            throw .corruptBatch(segment: segment.baseOffset, position: position, reason: "bad batch header")
        }
        return BatchHeader(baseOffset: view.baseOffset, size: size, lastOffset: view.lastOffset, maxTimestamp: view.maxTimestamp)
    }

    /// The position of the batch containing `offset` (or the first one after it), nil if none.
    private func findBatch(containing offset: Int64, in segment: Segment) throws(StorageError) -> Int64? {
        var position = segment.indexedPosition(for: offset)
        let buffer = HeaderBuffer()
        while position < segment.size {
            let h = try header(segment, at: position, buffer)
            if h.lastOffset >= offset { return position }
            position += Int64(h.size)
        }
        return nil
    }

    /// The end of the whole batches from `start` that fit in `maxBytes` (at least one batch).
    private func rangeEnd(_ segment: Segment, from start: Int64, maxBytes: Int) throws(StorageError) -> Int64 {
        let limit = start + Int64(max(maxBytes, 0))
        if limit >= segment.size { return segment.size }
        let buffer = HeaderBuffer()
        let first = try header(segment, at: start, buffer)
        var position = max(start + Int64(first.size), segment.indexedPosition(atOrBelow: limit))
        if position >= limit { return start + Int64(first.size) }
        while position < segment.size {
            let h = try header(segment, at: position, buffer)
            if position + Int64(h.size) > limit { break }
            position += Int64(h.size)
        }
        return position
    }

    /// Checks the CRC of batches loaded from disk the first time a read reaches them; a corrupt
    /// batch is reported, and never served.
    private func verify(_ segment: Segment, upTo end: Int64, from start: Int64) throws(StorageError) {
        if let bad = segment.corruptAt, bad.position < end {
            throw .corruptBatch(segment: segment.baseOffset, position: bad.position, reason: bad.reason)
        }
        guard segment.verifiedSize < end else { return }
        let scan = try SegmentScanner.scan(segment, from: segment.verifiedSize, until: end, rebuildIndex: false, intervalBytes: config.indexIntervalBytes)
        segment.verifiedSize = max(segment.verifiedSize, scan.validEnd)
        if let problem = scan.problem, scan.validEnd < end {
            segment.corruptAt = (scan.validEnd, problem)
            logger.error("corrupt batch found on read; not served", metadata: [
                "partition": "\(topicPartition)", "segment": "\(segment.baseOffset)",
                "position": "\(scan.validEnd)", "reason": "\(problem)",
            ])
            throw .corruptBatch(segment: segment.baseOffset, position: scan.validEnd, reason: problem)
        }
    }

    /// The first record (in offset order) whose timestamp is at or after `timestamp`, with that
    /// timestamp (ListOffsets by time), nil if none. The time index and batch headers find the
    /// batch; its records are read to find the record.
    public func record(atOrAfter timestamp: Int64) throws(StorageError) -> (offset: Int64, timestamp: Int64)? {
        for segment in segments where segment.size > 0 && segment.maxTimestamp >= timestamp {
            var position: Int64 = 0
            if let entry = segment.timeIndex.last(where: { $0.timestamp < timestamp }) {
                position = segment.indexedPosition(for: segment.baseOffset + Int64(entry.relativeOffset))
            }
            let buffer = HeaderBuffer()
            while position < segment.size {
                let h = try header(segment, at: position, buffer)
                if h.maxTimestamp >= timestamp, h.lastOffset >= logStartOffset,
                   let found = try firstRecord(in: segment, at: position, size: h.size, where: { $0 >= timestamp }) {
                    return found
                }
                position += Int64(h.size)
            }
        }
        return nil
    }

    /// The first record with the log's largest timestamp, with that timestamp (ListOffsets
    /// -3, KIP-734), nil for an empty log.
    public func recordWithMaxTimestamp() throws(StorageError) -> (offset: Int64, timestamp: Int64)? {
        guard let newest = segments.filter({ $0.size > 0 }).map(\.maxTimestamp).max(), newest >= 0 else { return nil }
        return try record(atOrAfter: newest)
    }

    /// Reads the batch at `position` of `segment` and returns its first record at or after the
    /// log start whose timestamp satisfies `matches` (a LogAppendTime batch's records all carry
    /// its max timestamp).
    private func firstRecord(in segment: Segment, at position: Int64, size: Int, where matches: (Int64) -> Bool) throws(StorageError) -> (offset: Int64, timestamp: Int64)? {
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try Sys.preadFully(segment.logFd, raw, at: position) }
        }.mapError(StorageError.io).get()
        guard n == size else { throw .corruptBatch(segment: segment.baseOffset, position: position, reason: "short batch") }
        return try bytes.withUnsafeBytes { raw -> Result<(offset: Int64, timestamp: Int64)?, StorageError> in
            let view = RecordBatchView(unchecked: raw)
            if view.attributes.contains(.logAppendTime) {
                return .success(matches(view.maxTimestamp) ? (max(view.baseOffset, logStartOffset), view.maxTimestamp) : nil)
            }
            guard let batch = try? RecordBatch(view) else {
                return .failure(.corruptBatch(segment: segment.baseOffset, position: position, reason: "records do not decode"))
            }
            for record in batch.records {
                let offset = view.baseOffset + Int64(record.offsetDelta)
                let time = view.baseTimestamp + record.timestampDelta
                if offset >= logStartOffset && matches(time) { return .success((offset, time)) }
            }
            return .success(nil)
        }.get()
    }

    // MARK: Retention

    /// Unlinks a segment dropped from the log, off the shard: the log file last, so that a
    /// crash in between leaves no orphaned index (a segment that comes back is deleted again by
    /// the next pass); its descriptors are closed there too, after the unlink (``Segment/unlinked``).
    func unlinkLater(_ segment: Segment) {
        segment.unlinked = true
        DiskWorker.shared.unlink([".index", ".timeindex", ".log"].map { segment.path + $0 }, after: .spares)
    }

    /// Deletes whole segments from the start that are past `retention.ms` or beyond
    /// `retention.bytes`, advancing the log start offset. The files are unlinked by the
    /// disk worker, so the shard never waits for it.
    /// - Returns: the number of segments deleted.
    @discardableResult
    public func enforceRetention(nowMs: Int64) -> Int {
        var deleted = 0
        var total = sizeInBytes
        while segments.count > 1, !dirtySegments.contains(where: { $0.segment === segments[0] }) {
            let first = segments[0]
            let newest = first.maxTimestamp >= 0 ? first.maxTimestamp : first.createdMs
            let expired = config.retentionMs >= 0 && nowMs - newest > config.retentionMs
            let oversized = config.retentionBytes >= 0 && total - first.size >= config.retentionBytes
            guard expired || oversized else { break }
            segments.removeFirst()
            total -= first.size
            logStartOffset = max(logStartOffset, segments[0].baseOffset)
            durableOffset = max(durableOffset, logStartOffset)
            unlinkLater(first)
            deleted += 1
            traffic.segmentsDeleted &+= 1
            logger.info("deleted segment by retention", metadata: [
                "partition": "\(topicPartition)", "segment": "\(first.baseOffset)",
                "reason": "\(expired ? "retention.ms" : "retention.bytes")", "logStartOffset": "\(logStartOffset)",
            ])
        }
        return deleted
    }
}

extension PartitionLog {
    /// Where a log start offset moved by ``deleteRecords(before:)`` is kept (the segments
    /// alone say only where the first one starts).
    static let logStartOffsetFile = "log-start-offset"

    /// DeleteRecords: makes `offset` (-1: the high watermark) the log start offset. Reads below
    /// it get OFFSET_OUT_OF_RANGE at once; segments wholly below it are deleted (the active one
    /// stays), and the new start is stored by the disk worker. An offset past the high
    /// watermark is refused; one at or below the current start changes nothing.
    /// - Returns: the log start offset after the call (Kafka's low watermark).
    public func deleteRecords(before offset: Int64) throws(StorageError) -> Int64 {
        let target = offset == -1 ? highWatermark : offset
        guard target >= 0, target <= highWatermark else {
            throw .offsetOutOfRange(requested: offset, logStart: logStartOffset, logEnd: highWatermark)
        }
        guard target > logStartOffset else { return logStartOffset }
        logStartOffset = target
        while segments.count > 1, segments[1].baseOffset <= target, !dirtySegments.contains(where: { $0.segment === segments[0] }) {
            unlinkLater(segments.removeFirst())
            traffic.segmentsDeleted &+= 1
        }
        let path = directory + "/" + Self.logStartOffsetFile
        let text = Array(String(target).utf8)
        DiskWorker.shared.run { try? Sys.writeFileAtomically(path, text) }
        logger.info("deleted records", metadata: ["partition": "\(topicPartition)", "logStartOffset": "\(target)"])
        return target
    }

    /// Where a replicated partition's high watermark is checkpointed (``LogManager``).
    static let highWatermarkFile = "high-watermark"
    /// Where the leader epoch cache is checkpointed: a line per epoch, "epoch startOffset".
    static let epochCheckpointFile = "leader-epoch-checkpoint"

    /// The cache as a checkpoint file's text.
    static func encodeEpochs(_ entries: [EpochStart]) -> [UInt8] {
        Array(entries.map { "\($0.epoch) \($0.startOffset)\n" }.joined().utf8)
    }

    /// A checkpoint file's entries (malformed lines, and entries out of order, end it).
    static func decodeEpochs(_ bytes: [UInt8]) -> [EpochStart] {
        var entries: [EpochStart] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let epoch = Int32(fields[0]), let start = Int64(fields[1]), epoch >= 0,
                  epoch > (entries.last?.epoch ?? -1), start >= (entries.last?.startOffset ?? 0) else { break }
            entries.append(EpochStart(epoch: epoch, startOffset: start))
        }
        return entries
    }

    /// A follower's divergent tail goes (its leader changed): every batch at or after `offset`
    /// (a batch boundary; clamped to the log start) is removed — later segments deleted (their
    /// files unlinked by the disk worker), the segment holding `offset` cut there. Nothing may be
    /// staged. Returns whether the log was cut (false: nothing past `offset`).
    public func truncate(to offset: Int64) throws(StorageError) -> Bool {
        if let failure { throw .offline(failure) }
        guard dirtySegments.isEmpty else { throw .invalidBatch("truncation with appends staged") }
        let target = max(offset, logStartOffset)
        guard target < logEndOffset else { return false }
        while segments.count > 1, segments[segments.count - 1].baseOffset >= target {
            unlinkLater(segments.removeLast())
        }
        let segment = activeSegment
        let cut = try findBatch(containing: target, in: segment) ?? segment.size
        do {
            try ShardThreadContract.allowingDiskWait("truncating a follower's divergent tail") { () throws(SystemError) in
                try segment.truncate(toSize: cut, nextOffset: target)
            }
        } catch {
            throw .io(error)
        }
        nextOffset = target
        logEndOffset = target
        durableOffset = min(durableOffset, target)
        epochStarts.removeAll { $0.startOffset >= target }
        if let mark = replicatedHighWatermark { replicatedHighWatermark = min(mark, target) }
        logger.warning("truncated the log to follow a new leader", metadata: ["partition": "\(topicPartition)", "logEndOffset": "\(target)"])
        return true
    }

    /// Sets the log start offset stored by ``deleteRecords(before:)`` when the log opens (an
    /// offset outside the log's segments is ignored).
    func restoreLogStartOffset(_ offset: Int64) {
        guard offset > logStartOffset, offset <= logEndOffset else { return }
        logStartOffset = offset
    }
}

/// A log's traffic since it was opened: plain counters its owning shard adds to.
public struct LogTraffic: Sendable, Equatable {
    /// Records and bytes appended (written, not merely staged).
    public var recordsIn: UInt64 = 0
    public var bytesIn: UInt64 = 0
    /// Bytes sent to consumers (the ranges Fetch responses carried).
    public var bytesOut: UInt64 = 0
    /// Segments deleted by retention.
    public var segmentsDeleted: UInt64 = 0

    public init() {}

    /// Adds another log's traffic (a topic's partitions, summed when scraped).
    public mutating func add(_ other: LogTraffic) {
        recordsIn &+= other.recordsIn
        bytesIn &+= other.bytesIn
        bytesOut &+= other.bytesOut
        segmentsDeleted &+= other.segmentsDeleted
    }
}

/// A small read-ahead buffer for walking batch headers with few `pread`s.
final class HeaderBuffer {
    private let capacity = 64 << 10
    private let storage: UnsafeMutableRawPointer
    private var start: Int64 = -1
    private var count = 0
    private var fd: Int32 = -1

    init() { storage = .allocate(byteCount: capacity, alignment: 16) }
    deinit { storage.deallocate() }

    /// At least the 61 header bytes at `position` (fewer only at the end of the data); valid
    /// until the next call.
    func bytes(_ segment: Segment, at position: Int64) throws(StorageError) -> UnsafeRawBufferPointer {
        let need = RecordBatchLayout.headerSize
        if fd != segment.logFd || position < start || position + Int64(need) > start + Int64(count) {
            let want = Int(max(0, min(Int64(capacity), segment.size - position)))
            do {
                count = try Sys.preadFully(segment.logFd, UnsafeMutableRawBufferPointer(start: storage, count: want), at: position)
            } catch {
                throw .io(error)
            }
            fd = segment.logFd
            start = position
        }
        let offset = Int(position - start)
        return UnsafeRawBufferPointer(start: storage + offset, count: max(0, min(count - offset, need)))
    }
}

extension PartitionLog {
    /// Calls `body` with a header-only view (61 bytes) of each batch in `range`, in order.
    /// Cold path (start-up state rebuilds): one `pread` per batch header.
    public func forEachBatchHeader(in range: FileRange, _ body: (RecordBatchView) -> Void) {
        var header = [UInt8](repeating: 0, count: RecordBatchLayout.headerSize)
        var position = range.position
        let end = range.position + Int64(range.length)
        while position + Int64(RecordBatchLayout.headerSize) <= end {
            let n = header.withUnsafeMutableBytes { raw in (try? Sys.preadFully(range.fd, raw, at: position)) ?? 0 }
            guard n == header.count else { return }
            let size = header.withUnsafeBytes { raw -> Int64 in
                let view = RecordBatchView(unchecked: raw)
                body(view)
                return Int64(view.batchLength) + Int64(RecordBatchLayout.logOverhead)
            }
            guard size >= Int64(RecordBatchLayout.headerSize) else { return }
            position += size
        }
    }
}

/// A partition's spare segment: asked for by the owning shard, made by the disk worker, taken
/// by the shard at its next roll. Thread-safe.
final class SpareSegment: @unchecked Sendable {
    /// A segment handed from the disk worker to the shard: nothing else touches it meanwhile.
    private struct Handed: @unchecked Sendable { let segment: Segment }
    private enum State: Sendable { case none, making, ready(Handed) }
    private let state = Mutex<State>(.none)

    /// Has the disk worker make a spare unless one is ready or on its way, and
    /// reserve its first `reserve` bytes before it is ready, both on `DiskWorker.spares`.
    func prepare(_ directory: String, nowMs: Int64, reserve: Int64, intervalBytes: Int) {
        let start = state.withLock { s -> Bool in
            guard case .none = s else { return false }
            s = .making
            return true
        }
        guard start else { return }
        DiskWorker.spares.run { [self] in
            guard let made = (try? Segment.spare(directory: directory, nowMs: nowMs)).map(Handed.init) else {
                return finish(nil)
            }
            made.segment.reserveUnshared(reserve, intervalBytes: intervalBytes)
            finish(made)
        }
    }

    private func finish(_ made: Handed?) {
        state.withLock { s in
            guard case .making = s else { return }  // dropped meanwhile
            s = made.map(State.ready) ?? .none
        }
    }

    /// The spare, if one is ready.
    func take() -> Segment? {
        state.withLock { s -> Handed? in
            guard case .ready(let handed) = s else { return nil }
            s = .none
            return handed
        }?.segment
    }

    /// Takes the spare away (shutdown, a deleted log), if one is ready; a spare still being made
    /// is forgotten when it arrives. The caller owns its files.
    func discard() -> Segment? {
        state.withLock { s -> Handed? in
            defer { s = .none }
            if case .ready(let handed) = s { return handed }
            return nil
        }?.segment
    }
}

/// Where a leader epoch starts in a log (``PartitionLog/epochStarts``).
public struct EpochStart: Equatable, Sendable {
    public var epoch: Int32
    public var startOffset: Int64

    public init(epoch: Int32, startOffset: Int64) {
        self.epoch = epoch
        self.startOffset = startOffset
    }
}

extension Array where Element == EpochStart {
    /// The largest epoch at most `epoch` in this cache, and where it ends — the next epoch's
    /// start, or `logEnd` (Kafka's answer to OffsetForLeaderEpoch); nil when it has no epoch that old.
    public func endOffset(forEpoch epoch: Int32, logEnd: Int64) -> (epoch: Int32, endOffset: Int64)? {
        guard let i = lastIndex(where: { $0.epoch <= epoch }) else { return nil }
        return (self[i].epoch, i + 1 < count ? self[i + 1].startOffset : logEnd)
    }
}
