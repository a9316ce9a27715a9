import ApusIO
import KafkaWire
#if canImport(Glibc)
import Glibc
#endif

/// One entry of a segment's sparse offset index (`.index`: 8 bytes, both big-endian int32).
struct OffsetIndexEntry: Equatable {
    var relativeOffset: UInt32
    var position: UInt32
}

/// One entry of a segment's time index (`.timeindex`: int64 timestamp, int32 relative offset).
struct TimeIndexEntry: Equatable {
    var timestamp: Int64
    var relativeOffset: UInt32
}

/// Bytes staged for one group commit in memory the segment owns (index entries).
final class ByteStage {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 256) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    func append<T: FixedWidthInteger>(bigEndian value: T) {
        let size = MemoryLayout<T>.size
        if count + size > capacity {
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 8)
            bigger.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).storeBytes(of: value.bigEndian, as: T.self)
        count += size
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    func removeAll() { count = 0 }
}

/// The 20-digit file name stem Kafka gives a segment with this base offset.
func segmentStem(_ baseOffset: Int64) -> String {
    let digits = String(baseOffset)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
}

/// A log segment: `<base>.log` with the batches as produced (offsets assigned), and its sparse
/// `.index` and `.timeindex`.
///
/// Owned by one partition log on one shard thread; not thread-safe. `size` counts the bytes
/// written (readable); `stagedSize` also counts batches staged for the next group commit.
/// Nothing here is durable until the owning shard syncs the log file.
final class Segment {
    private(set) var baseOffset: Int64
    private(set) var path: String  // without extension
    let logFd: Int32
    let indexFd: Int32
    let timeIndexFd: Int32
    private(set) var createdMs: Int64
    /// How long opening waited for the files' locks (a killed process's writes in flight).
    let lockWaitNs: UInt64

    /// Bytes written and readable.
    var size: Int64
    /// Bytes from the start already counted against the shard's page-cache budget.
    var cacheCounted: Int64 = 0
    /// Bytes written plus bytes staged for the next commit.
    var stagedSize: Int64
    /// The offset after this segment's last batch (staged included).
    var nextOffset: Int64
    var maxTimestamp: Int64 = -1

    var offsetIndex: [OffsetIndexEntry] = []
    var timeIndex: [TimeIndexEntry] = []
    /// Index entries already in the index files.
    var offsetIndexWritten = 0
    var timeIndexWritten = 0
    var bytesSinceIndexEntry = 0

    /// Batches staged for the next commit.
    var pending: [UnsafeRawBufferPointer] = []
    let stagedOffsetIndex = ByteStage()
    let stagedTimeIndex = ByteStage()

    /// Bytes from the start known to hold valid batches (CRC checked or written by us).
    var verifiedSize: Int64
    /// The position of a batch found corrupt when read, if any.
    var corruptAt: (position: Int64, reason: String)?

    convenience init(directory: String, baseOffset: Int64, create: Bool, nowMs: Int64) throws(SystemError) {
        try self.init(stem: directory + "/" + segmentStem(baseOffset), baseOffset: baseOffset, create: create, nowMs: nowMs)
    }

    /// A spare segment: empty files under the temporary stem `spare`, made off the shard by the
    /// disk worker so that a roll need not create files (see ``PartitionLog``).
    static func spare(directory: String, nowMs: Int64) throws(SystemError) -> Segment {
        try Segment(stem: directory + "/" + spareStem, baseOffset: -1, create: true, nowMs: nowMs)
    }

    static let spareStem = "spare"

    /// A spare becomes the segment starting at `base`. Its files keep their names until
    /// `renameFiles` (on the disk worker) gives them the segment's; recovery adopts a spare
    /// that holds batches by its first batch's offset.
    func adopt(baseOffset base: Int64, nowMs: Int64) -> (from: String, to: String) {
        let from = path
        baseOffset = base
        nextOffset = base
        createdMs = nowMs
        path = String(path.dropLast(Self.spareStem.count)) + segmentStem(base)
        return (from, path)
    }

    private init(stem: String, baseOffset: Int64, create: Bool, nowMs: Int64) throws(SystemError) {
        self.baseOffset = baseOffset
        self.path = stem
        var fds: [Int32] = []
        var waited: UInt64 = 0
        do {
            fds.append(try Sys.open(path + ".log", O_RDWR | (create ? O_CREAT : 0)))
            fds.append(try Sys.open(path + ".index", O_RDWR | O_CREAT))
            fds.append(try Sys.open(path + ".timeindex", O_RDWR | O_CREAT))
            // The files the append ring writes are locked through the descriptors it writes
            // with: a process killed with writes in flight keeps its open file descriptions
            // (and so its locks) until those writes have finished, so this waits for them
            // instead of recovering a file that can still change. See ARCHITECTURE.md.
            for fd in fds { waited += try Sys.lockExclusive(fd, timeoutMs: Self.lockTimeoutMs, path) }
        } catch {
            fds.forEach(Sys.close)
            throw error
        }
        logFd = fds[0]
        indexFd = fds[1]
        timeIndexFd = fds[2]
        lockWaitNs = waited
        size = create ? 0 : ((try? Sys.fileSize(logFd)) ?? 0)
        stagedSize = size
        cacheCounted = size  // what recovery found is not this run's writing
        nextOffset = baseOffset
        verifiedSize = 0
        createdMs = create ? nowMs : (Sys.modificationTimeMs(path + ".log") ?? nowMs)
    }

    /// How long a previous process's in-flight writes may keep a segment locked. Exceeded
    /// only if something other than a dying broker holds the file.
    static let lockTimeoutMs = 30_000

    /// Releases the files' locks (clean shutdown: this instance writes no more).
    func unlock() {
        for fd in [logFd, indexFd, timeIndexFd] { Sys.unlock(fd) }
    }

    /// Set once the segment's files are being unlinked (retention, DeleteRecords, a follower's
    /// truncation). Its descriptors may then be the files' last: closing one frees the file's
    /// blocks — with ext4's `discard` mount option waiting for the device to trim them (17 ms
    /// measured on a shard) — so the disk worker closes them, after its queued unlink.
    var unlinked = false

    deinit {
        let fds = [logFd, indexFd, timeIndexFd]
        if unlinked { DiskWorker.shared.close(fds) } else { fds.forEach(Sys.close) }
    }

    // MARK: Reserving blocks in spares

    /// Log bytes from the file's start whose blocks were reserved before a shard wrote the file
    /// (``reserveUnshared(_:intervalBytes:)``); past them, writes take delayed allocation.
    private(set) var reservedTo: Int64 = 0

    /// Reserves the first `bytes` of a spare segment's files (fallocate, sizes unchanged), on the
    /// thread that made it and before any shard sees it: no write contends for its inode lock,
    /// and writes into reserved blocks need no allocation, so they never wait for writeback
    /// holding the file's block map (measured: 15–27 ms waits in `ext4_da_get_block_prep` on a
    /// dirty page cache, Results/2026-12-05-tail-prealloc).
    func reserveUnshared(_ bytes: Int64, intervalBytes: Int) {
        guard bytes > reservedTo else { return }
        Self.reserve([logFd, indexFd, timeIndexFd], from: reservedTo, to: bytes, intervalBytes: intervalBytes)
        reservedTo = bytes
    }

    private static func reserve(_ fds: [Int32], from: Int64, to: Int64, intervalBytes: Int) {
        let interval = Int64(max(intervalBytes, 4096))
        let indexEntries = (from / interval, to / interval + 2)
        _ = try? Sys.preallocate(fds[0], from: from, length: to - from)
        _ = try? Sys.preallocate(fds[1], from: indexEntries.0 * 8, length: (indexEntries.1 - indexEntries.0) * 8)
        _ = try? Sys.preallocate(fds[2], from: indexEntries.0 * 12, length: (indexEntries.1 - indexEntries.0) * 12)
    }

    /// Gives back what was reserved beyond the written data, once the segment takes no more
    /// writes (it rolled and its last writes landed): truncating a file to its own size frees
    /// the blocks past its end.
    func releaseReservation() {
        guard reservedTo > size, let fds = duplicateFds() else { return }
        reservedTo = size
        let sizes = [size, Int64(offsetIndexWritten * 8), Int64(timeIndexWritten * 12)]
        DiskWorker.spares.run {
            for (fd, length) in zip(fds, sizes) { try? Sys.ftruncate(fd, length) }
            fds.forEach(Sys.close)
        }
    }

    /// Copies of the three descriptors, for work on another thread that must not race with
    /// this segment closing them; nil if the process is out of descriptors.
    private func duplicateFds() -> [Int32]? {
        var copies: [Int32] = []
        for fd in [logFd, indexFd, timeIndexFd] {
            guard let copy = try? Sys.duplicate(fd) else {
                copies.forEach(Sys.close)
                return nil
            }
            copies.append(copy)
        }
        return copies
    }

    var isEmpty: Bool { stagedSize == 0 }

    /// Stages a batch (already given its offsets) and its index entries for the next commit.
    func stage(_ batch: UnsafeRawBufferPointer, view: RecordBatchView, intervalBytes: Int) {
        let position = stagedSize
        let relative = UInt32(truncatingIfNeeded: view.baseOffset - baseOffset)
        if bytesSinceIndexEntry >= intervalBytes {
            offsetIndex.append(OffsetIndexEntry(relativeOffset: relative, position: UInt32(truncatingIfNeeded: position)))
            stagedOffsetIndex.append(bigEndian: relative)
            stagedOffsetIndex.append(bigEndian: UInt32(truncatingIfNeeded: position))
            bytesSinceIndexEntry = 0
        }
        let batchMax = view.maxTimestamp
        if batchMax > maxTimestamp {
            maxTimestamp = batchMax
            if timeIndex.isEmpty || bytesSinceIndexEntry == 0 {
                timeIndex.append(TimeIndexEntry(timestamp: batchMax, relativeOffset: relative))
                stagedTimeIndex.append(bigEndian: batchMax)
                stagedTimeIndex.append(bigEndian: relative)
            }
        }
        bytesSinceIndexEntry += batch.count
        pending.append(batch)
        stagedSize += Int64(batch.count)
        nextOffset = view.lastOffset + 1
    }

    /// The writes of this segment's staged data (log, then index files).
    func stagedWrites() -> [FileWrite] {
        var writes: [FileWrite] = []
        if !pending.isEmpty { writes.append(FileWrite(fd: logFd, offset: size, buffers: pending)) }
        if stagedOffsetIndex.count > 0 {
            writes.append(FileWrite(fd: indexFd, offset: Int64(offsetIndexWritten * 8), buffers: [stagedOffsetIndex.bytes]))
        }
        if stagedTimeIndex.count > 0 {
            writes.append(FileWrite(fd: timeIndexFd, offset: Int64(timeIndexWritten * 12), buffers: [stagedTimeIndex.bytes]))
        }
        return writes
    }

    /// The staged data is written: make it readable.
    func commitStaged() {
        if verifiedSize == size { verifiedSize = stagedSize }
        size = stagedSize
        offsetIndexWritten = offsetIndex.count
        timeIndexWritten = timeIndex.count
        clearStage()
    }

    /// The staged writes failed: forget them and cut the files back to what was committed.
    func rollbackStaged(nextOffset committedNext: Int64) {
        stagedSize = size
        nextOffset = committedNext
        offsetIndex.removeLast(offsetIndex.count - offsetIndexWritten)
        timeIndex.removeLast(timeIndex.count - timeIndexWritten)
        maxTimestamp = timeIndex.last?.timestamp ?? maxTimestamp
        clearStage()
        ShardThreadContract.allowingDiskWait("cutting files back after a failed write") {
            try? Sys.ftruncate(logFd, size)
            try? Sys.ftruncate(indexFd, Int64(offsetIndexWritten * 8))
            try? Sys.ftruncate(timeIndexFd, Int64(timeIndexWritten * 12))
        }
    }

    /// Cuts committed data at `size` (a batch boundary), whose first offset is `next`: the
    /// files and in-memory indexes lose every entry past it (a follower's divergent tail).
    func truncate(toSize cut: Int64, nextOffset next: Int64) throws(SystemError) {
        offsetIndex.removeAll { Int64($0.position) >= cut }
        timeIndex.removeAll { baseOffset + Int64($0.relativeOffset) >= next }
        offsetIndexWritten = min(offsetIndexWritten, offsetIndex.count)
        timeIndexWritten = min(timeIndexWritten, timeIndex.count)
        try Sys.ftruncate(logFd, cut)
        try Sys.ftruncate(indexFd, Int64(offsetIndexWritten * 8))
        try Sys.ftruncate(timeIndexFd, Int64(timeIndexWritten * 12))
        size = cut
        stagedSize = cut
        nextOffset = next
        verifiedSize = min(verifiedSize, cut)
        if let bad = corruptAt, bad.position >= cut { corruptAt = nil }
        maxTimestamp = timeIndex.last?.timestamp ?? -1
        bytesSinceIndexEntry = Int(cut - Int64(offsetIndex.last?.position ?? 0))
    }

    private func clearStage() {
        pending.removeAll(keepingCapacity: true)
        stagedOffsetIndex.removeAll()
        stagedTimeIndex.removeAll()
    }

    /// Stages a time index entry for the segment's max timestamp if the sparse entries (one
    /// per offset index entry at most) missed it. An open that trusts the index files (clean
    /// shutdown, or segments before the recovery point) takes the segment's max timestamp from
    /// the last entry, so without it lookups by time and retention.ms would see an older one.
    /// Called when the segment stops taking appends (roll, clean shutdown).
    @discardableResult
    func stageFinalTimeIndexEntry() -> Bool {
        guard maxTimestamp >= 0, nextOffset > baseOffset, maxTimestamp > (timeIndex.last?.timestamp ?? -1) else { return false }
        // Conservative position: every batch before the last offset has maxTimestamp ≤ the max.
        let relative = UInt32(truncatingIfNeeded: nextOffset - 1 - baseOffset)
        timeIndex.append(TimeIndexEntry(timestamp: maxTimestamp, relativeOffset: relative))
        stagedTimeIndex.append(bigEndian: maxTimestamp)
        stagedTimeIndex.append(bigEndian: relative)
        return true
    }

    /// Clean shutdown: writes the final time index entry and makes both index files durable
    /// (the clean-shutdown marker tells the next open to trust them). Nothing may be staged.
    func finishIndexesForShutdown() throws(SystemError) {
        if stageFinalTimeIndexEntry() {
            try Sys.pwriteAll(timeIndexFd, stagedTimeIndex.bytes, at: Int64(timeIndexWritten * 12))
            timeIndexWritten = timeIndex.count
            stagedTimeIndex.removeAll()
        }
        try Sys.fdatasync(indexFd)
        try Sys.fdatasync(timeIndexFd)
    }

    /// The file position to start scanning from for `offset`: the last index entry at or below it.
    func indexedPosition(for offset: Int64) -> Int64 {
        let relative = offset - baseOffset
        var lo = 0, hi = offsetIndex.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int64(offsetIndex[mid].relativeOffset) <= relative { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? 0 : Int64(offsetIndex[lo - 1].position)
    }

    /// The last indexed batch position at or below `position` (to scan towards a byte limit).
    func indexedPosition(atOrBelow position: Int64) -> Int64 {
        var lo = 0, hi = offsetIndex.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int64(offsetIndex[mid].position) <= position { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? 0 : Int64(offsetIndex[lo - 1].position)
    }

    /// Writes both index files whole from memory (after a rebuild) and truncates them to fit.
    func rewriteIndexFiles() throws(SystemError) {
        let offsets = ByteStage(capacity: max(8, offsetIndex.count * 8))
        for e in offsetIndex {
            offsets.append(bigEndian: e.relativeOffset)
            offsets.append(bigEndian: e.position)
        }
        let times = ByteStage(capacity: max(12, timeIndex.count * 12))
        for e in timeIndex {
            times.append(bigEndian: e.timestamp)
            times.append(bigEndian: e.relativeOffset)
        }
        try Sys.ftruncate(indexFd, 0)
        try Sys.pwriteAll(indexFd, offsets.bytes, at: 0)
        try Sys.ftruncate(timeIndexFd, 0)
        try Sys.pwriteAll(timeIndexFd, times.bytes, at: 0)
        offsetIndexWritten = offsetIndex.count
        timeIndexWritten = timeIndex.count
    }

    /// Loads the index files; false if they are missing, torn or inconsistent with the log.
    func loadIndexFiles() -> Bool {
        guard let raw = try? readWhole(indexFd), raw.count % 8 == 0,
              let rawTime = try? readWhole(timeIndexFd), rawTime.count % 12 == 0 else { return false }
        var entries: [OffsetIndexEntry] = []
        entries.reserveCapacity(raw.count / 8)
        var previous: OffsetIndexEntry?
        for i in stride(from: 0, to: raw.count, by: 8) {
            let e = OffsetIndexEntry(relativeOffset: load(raw, i), position: load(raw, i + 4))
            if let p = previous, e.relativeOffset <= p.relativeOffset || e.position <= p.position { return false }
            if Int64(e.position) >= size { return false }
            entries.append(e)
            previous = e
        }
        var times: [TimeIndexEntry] = []
        for i in stride(from: 0, to: rawTime.count, by: 12) {
            let ts: UInt64 = load(rawTime, i)
            let e = TimeIndexEntry(timestamp: Int64(bitPattern: ts), relativeOffset: load(rawTime, i + 8))
            // Entries are only added for a new maximum timestamp, at increasing offsets.
            if let p = times.last, e.timestamp <= p.timestamp || e.relativeOffset < p.relativeOffset { return false }
            times.append(e)
        }
        // A non-empty segment always has a time index entry (its first batch): an empty file
        // would lose the segment's max timestamp (lookups by time, retention.ms).
        if size > 0 && times.isEmpty { return false }
        offsetIndex = entries
        timeIndex = times
        offsetIndexWritten = entries.count
        timeIndexWritten = times.count
        maxTimestamp = times.map(\.timestamp).max() ?? -1
        return true
    }

    private func readWhole(_ fd: Int32) throws(SystemError) -> [UInt8] {
        let n = Int(try Sys.fileSize(fd))
        var out = [UInt8](repeating: 0, count: n)
        let got = try out.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try Sys.preadFully(fd, raw, at: 0) }
        }.get()
        out.removeLast(n - got)
        return out
    }

    private func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ at: Int) -> T {
        bytes.withUnsafeBytes { T(bigEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
    }
}
