import ApusIO
import KafkaWire

/// The storage side of one shard: group commit for every partition log the shard owns.
///
/// Owned by one shard thread; not thread-safe. Appends staged through ``append(_:to:requireDurable:nowMs:)``
/// during a loop turn go to disk in one ``commit(nowMs:)``: one io_uring submission (or one
/// `pwritev` per file with the POSIX backend). When `commit` returns, successful appends are
/// readable (in the page cache). Syncs required by the durability mode start in `commit`;
/// under `fsync-always` `commit` waits for them, otherwise ``poll(wait:)`` reports the logs
/// whose `durableOffset` advanced.
public final class LogShard {
    public let backend: AppendBackend
    private var dirty: [PartitionLog] = []
    private var syncGroups: [UInt64: SyncGroup] = [:]
    private var tokenToGroup: [UInt64: UInt64] = [:]
    private var nextToken: UInt64 = 1
    private var logs: [PartitionLog] = []
    /// Logs advanced by a poll inside `commit` (fsync-always), reported by the next `poll`.
    private var advancedInCommit: [PartitionLog] = []
    /// How long each commit's writes took (one observation per commit that wrote).
    public private(set) var writeLatency = LatencyBuckets()
    /// How long each sync group took, from its start to its last fdatasync's completion.
    public private(set) var syncLatency = LatencyBuckets()
    /// `page.cache.max.bytes` for this shard (0: no limit): how much of what its appends wrote
    /// may stay in the page cache. Beyond it, the oldest written ranges are written back and
    /// dropped from the cache on ``DiskWorker/dropBehind``, so that the memory is free before
    /// the next writes need it (with the cache full, a write reclaims pages itself, in the
    /// shard's thread). Consumers reading far behind then read from the disk.
    public var pageCacheBudget: Int64 = 0
    /// What the shard wrote and has not dropped, oldest first (from `cachedHead`).
    private var cached: [CachedRange] = []
    private var cachedHead = 0
    private var cachedBytes: Int64 = 0
    /// Written data is counted in ranges of about this size.
    static let cacheChunk: Int64 = 8 << 20

    private struct CachedRange {
        weak var segment: Segment?
        var from: Int64
        var to: Int64
    }

    private struct SyncGroup {
        var log: PartitionLog
        var target: Int64
        var remaining: Int
        var failed: Int32 = 0
        var startNs: UInt64
    }

    public init(backend: AppendBackend) {
        self.backend = backend
    }

    /// Makes this shard the owner of `log` (for background flushes).
    public func adopt(_ log: PartitionLog) {
        if !logs.contains(where: { $0 === log }) { logs.append(log) }
    }

    public func release(_ log: PartitionLog) {
        logs.removeAll { $0 === log }
        dirty.removeAll { $0 === log }
    }

    /// Stages `batch` on `log` (see ``PartitionLog/append(_:requireDurable:nowMs:)``).
    public func append(_ batch: UnsafeMutableRawBufferPointer, to log: PartitionLog, requireDurable: Bool, nowMs: Int64, keepOffsets: Bool = false) throws(StorageError) -> AppendInfo {
        let info = try log.append(batch, requireDurable: requireDurable, nowMs: nowMs, keepOffsets: keepOffsets)
        if !dirty.contains(where: { $0 === log }) { dirty.append(log) }
        return info
    }

    /// Writes everything staged since the last commit and starts the syncs that are due.
    /// - Returns: the logs whose writes failed (their staged appends were dropped) and why.
    @discardableResult
    public func commit(nowMs: Int64) -> [(log: PartitionLog, error: StorageError)] {
        var failures: [(PartitionLog, StorageError)] = []
        var syncs: [(PartitionLog, [Int32])] = []
        if !dirty.isEmpty {
            var writes: [FileWrite] = []
            var ranges: [Range<Int>] = []
            for log in dirty {
                let w = log.stagedWrites()
                ranges.append(writes.count..<(writes.count + w.count))
                writes += w
            }
            let started = Sys.monotonicNs()
            let results = backend.write(writes)
            writeLatency.record(ns: Sys.monotonicNs() &- started)
            for (log, range) in zip(dirty, ranges) {
                let error = results[range].compactMap { $0 }.first
                let fds = log.finishTurn(error: error, nowMs: nowMs)
                if let error { failures.append((log, .io(error))) }
                if !fds.isEmpty { syncs.append((log, fds)) }
                if pageCacheBudget > 0 { countCached(log) }
            }
            dirty.removeAll(keepingCapacity: true)
            if pageCacheBudget > 0 { dropBehind() }
        }
        for log in logs where !syncs.contains(where: { $0.0 === log }) {
            if let fds = log.dueFlush(nowMs: nowMs) { syncs.append((log, fds)) }
        }
        var mustWait = false
        for (log, fds) in syncs {
            beginSyncGroup(log, fds: fds)
            if log.config.durability == .fsyncAlways { mustWait = true }
        }
        if mustWait { advancedInCommit += poll(wait: true) }
        return failures
    }

    /// Reaps finished syncs and advances durable offsets.
    /// - Parameter wait: block until every sync begun has finished.
    /// - Returns: the logs whose `durableOffset` advanced.
    @discardableResult
    public func poll(wait: Bool = false) -> [PartitionLog] {
        var advanced = advancedInCommit
        advancedInCommit.removeAll()
        guard backend.syncsInFlight > 0 || !syncGroups.isEmpty else { return advanced }
        for completion in backend.reapSyncs(wait: wait) {
            guard let groupID = tokenToGroup.removeValue(forKey: completion.token), var group = syncGroups[groupID] else { continue }
            group.remaining -= 1
            if completion.errno != 0 { group.failed = completion.errno }
            if group.remaining > 0 {
                syncGroups[groupID] = group
                continue
            }
            syncGroups[groupID] = nil
            syncLatency.record(ns: Sys.monotonicNs() &- group.startNs)
            if group.failed != 0 {
                // Like Kafka, a failed fsync is not retried: the page cache state is unknown.
                let error = SystemError("fdatasync", errno: group.failed)
                group.log.failure = "\(error)"
                group.log.logger.critical("sync failed; partition taken offline", metadata: [
                    "partition": "\(group.log.topicPartition)", "error": "\(error)",
                ])
            } else if group.target > group.log.durableOffset {
                group.log.durableOffset = group.target
                if !advanced.contains(where: { $0 === group.log }) { advanced.append(group.log) }
            }
        }
        return advanced
    }

    /// Counts what `log`'s last segments hold beyond what was counted, in chunks (a segment
    /// rolled since: all of its rest).
    private func countCached(_ log: PartitionLog) {
        let active = log.activeSegment
        for segment in log.segments.suffix(2) {
            if segment.cacheCounted > segment.size { segment.cacheCounted = segment.size }  // truncated
            let fresh = segment.size - segment.cacheCounted
            guard fresh >= Self.cacheChunk || (segment !== active && fresh > 0) else { continue }
            cached.append(CachedRange(segment: segment, from: segment.cacheCounted, to: segment.size))
            cachedBytes += fresh
            segment.cacheCounted = segment.size
        }
    }

    /// Over the budget: the oldest ranges go to the drop-behind worker (on a duplicate of the
    /// segment's descriptor, which the worker closes: the segment may be deleted meanwhile).
    private func dropBehind() {
        while cachedBytes > pageCacheBudget && cachedHead < cached.count {
            let range = cached[cachedHead]
            cachedHead += 1
            cachedBytes -= range.to - range.from
            guard let segment = range.segment, let fd = try? Sys.duplicate(segment.logFd) else { continue }
            let from = range.from, length = range.to - range.from
            DiskWorker.dropBehind.run {
                try? Sys.dropFromPageCache(fd, offset: from, length: length)
                Sys.close(fd)
            }
        }
        if cachedHead > 1024 && cachedHead * 2 > cached.count {
            cached.removeFirst(cachedHead)
            cachedHead = 0
        }
    }

    /// Syncs every owned log and waits (clean shutdown, tests).
    public func syncAll(nowMs: Int64) {
        commit(nowMs: nowMs)
        for log in logs where log.durableOffset < log.logEndOffset {
            let fds = log.segments.filter { $0.nextOffset > log.durableOffset }.map(\.logFd)
            if !fds.isEmpty { beginSyncGroup(log, fds: fds) }
        }
        poll(wait: true)
    }

    /// Starts syncing `fds`; `log`'s durable offset moves to its current end once all finish.
    private func beginSyncGroup(_ log: PartitionLog, fds: [Int32]) {
        let group = nextToken
        nextToken += 1
        syncGroups[group] = SyncGroup(log: log, target: log.logEndOffset, remaining: fds.count, startNs: Sys.monotonicNs())
        for fd in fds {
            let token = nextToken
            nextToken += 1
            tokenToGroup[token] = group
            backend.beginSync(fd: fd, token: token)
        }
    }
}
