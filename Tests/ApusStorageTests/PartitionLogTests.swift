import ApusIO
@testable import ApusStorage
import Foundation
import KafkaWire
import Testing

/// The storage engine with real files, through both I/O backends.
@Suite struct PartitionLogTests {
    static let backends: [IOBackendKind] = [.posix, .uring]
    let now: Int64 = 1_700_000_000_000

    func open(_ dir: TemporaryDirectory, _ config: LogConfig = LogConfig(), tp: TopicPartition = TopicPartition("orders", 0)) throws -> (LogManager, PartitionLog) {
        let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config, logger: testLogger())
        return (manager, try manager.openLog(tp, nowMs: now))
    }

    @Test(arguments: backends)
    func appendAssignsContiguousOffsetsAndReadsBackBitExact(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        let (_, log) = try open(dir)
        let shard = LogShard(backend: backend(kind))
        shard.adopt(log)
        let arena = BatchArena()
        var expected: [[UInt8]] = []
        var assigned: Int64 = 0
        for turn in 0..<5 {
            for b in 0..<3 {
                let batch = arena.batch(records: 4 + b, first: turn * 100 + b * 10)
                let info = try shard.append(batch, to: log, requireDurable: false, nowMs: now)
                #expect(info.baseOffset == assigned)
                #expect(info.lastOffset == assigned + Int64(4 + b) - 1)
                assigned += Int64(4 + b)
                expected.append(Array(batch))
            }
            #expect(log.logEndOffset < log.nextOffset, "staged appends are not readable before the commit")
            #expect(shard.commit(nowMs: now).isEmpty)
            #expect(log.logEndOffset == log.nextOffset)
        }
        let total = expected.reduce(0) { $0 + $1.count }
        let bytes = try log.readCopy(from: 0, maxBytes: total)
        #expect(bytes == expected.flatMap { $0 }, "the segment holds the batches exactly as produced, offsets assigned")
        let all = try records(in: bytes)
        #expect(all.map(\.offset) == Array(0..<Int64(all.count)))
        #expect(log.logEndOffset == Int64(all.count))
        #expect(log.highWatermark == log.logEndOffset)
        #expect(log.logStartOffset == 0)
    }

    @Test func readsStartAtTheBatchHoldingTheOffsetAndHonourMaxBytes() throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.indexIntervalBytes = 256
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        var sizes: [Int] = []
        for i in 0..<40 {
            let batch = arena.batch(records: 5, first: i * 5)
            sizes.append(batch.count)
            _ = try shard.append(batch, to: log, requireDurable: false, nowMs: now)
        }
        shard.commit(nowMs: now)
        // Every offset, from any position: the first record returned is its batch's.
        for offset in stride(from: Int64(0), to: 200, by: 7) {
            let got = try records(in: log.readCopy(from: offset, maxBytes: 1))
            #expect(got.count == 5, "one whole batch even when maxBytes is smaller")
            #expect(got.first!.offset == offset / 5 * 5)
        }
        // maxBytes covering exactly three batches returns three; one byte short returns two.
        let three = sizes[2] + sizes[3] + sizes[4]
        #expect(try records(in: log.readCopy(from: 10, maxBytes: three)).count == 15)
        #expect(try records(in: log.readCopy(from: 10, maxBytes: three - 1)).count == 10)
        #expect(try log.read(from: 200, maxBytes: 100) == nil)
        #expect(throws: StorageError.offsetOutOfRange(requested: 201, logStart: 0, logEnd: 200)) {
            try log.read(from: 201, maxBytes: 100)
        }
        #expect(throws: StorageError.offsetOutOfRange(requested: -1, logStart: 0, logEnd: 200)) {
            try log.read(from: -1, maxBytes: 100)
        }
        let range = try #require(try log.read(from: 0, maxBytes: 1 << 20))
        #expect(range.position == 0 && range.length == sizes.reduce(0, +))
    }

    @Test(arguments: backends)
    func segmentsRollBySizeWithKafkasLayout(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 4096
        config.indexIntervalBytes = 512
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(kind))
        let arena = BatchArena()
        for i in 0..<60 {
            _ = try shard.append(arena.batch(records: 10, first: i * 10, valueSize: 40), to: log, requireDurable: false, nowMs: now)
            if i % 7 == 0 { shard.commit(nowMs: now) }
        }
        shard.commit(nowMs: now)
        #expect(log.segmentCount > 5)
        DiskWorker.spares.waitUntilIdle()  // a segment rolled onto a spare gets its name there
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/orders-0")
        for base in log.segmentBaseOffsets {
            let stem = String(format: "%020lld", base)
            #expect(files.contains(stem + ".log") && files.contains(stem + ".index") && files.contains(stem + ".timeindex"))
            let size = try FileManager.default.attributesOfItem(atPath: dir.path + "/orders-0/\(stem).log")[.size] as! Int
            #expect(size <= 4096 || base == log.segmentBaseOffsets.last!)
            let index = try FileManager.default.attributesOfItem(atPath: dir.path + "/orders-0/\(stem).index")[.size] as! Int
            #expect(index % 8 == 0)
        }
        #expect(files.contains("00000000000000000000.log"))
        // Reading across every segment boundary, offset by offset.
        var offset: Int64 = 0
        var seen = 0
        while let range = try log.read(from: offset, maxBytes: 1000) {
            _ = range
            let got = try records(in: log.readCopy(from: offset, maxBytes: 1000))
            #expect(got.first!.offset == offset)
            offset = got.last!.offset + 1
            seen += got.count
        }
        #expect(seen == 600)
    }

    @Test func recordAtOrAfterATimestampIsTheExactRecord() throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.indexIntervalBytes = 100
        config.segmentBytes = 2000
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<30 {
            _ = try shard.append(arena.batch(records: 3, first: i * 3, timestamp: 1000 + Int64(i) * 10), to: log, requireDurable: false, nowMs: now)
        }
        shard.commit(nowMs: now)
        // Batch i holds timestamps 1000+10i ... 1000+10i+2.
        #expect(try log.record(atOrAfter: 0)?.offset == 0)
        #expect(try log.record(atOrAfter: 1000)?.offset == 0)
        // Inside a batch: the record itself, not its batch (librdkafka's 0054_offset_time).
        #expect(try log.record(atOrAfter: 1001)?.offset == 1)
        #expect(try log.record(atOrAfter: 1001)?.timestamp == 1001)
        #expect(try log.record(atOrAfter: 1003)?.offset == 3)
        #expect(try log.record(atOrAfter: 1003)?.timestamp == 1010)
        #expect(try log.record(atOrAfter: 1150)?.offset == 45)
        #expect(try log.record(atOrAfter: 1292)?.offset == 89)
        #expect(try log.record(atOrAfter: 1293)?.offset == nil)
        #expect(try log.recordWithMaxTimestamp()?.offset == 89)
    }

    @Test func retentionDeletesWholeSegmentsFromTheStart() throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 3000
        config.retentionBytes = 7000
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<40 {
            _ = try shard.append(arena.batch(records: 10, first: i * 10, valueSize: 30, timestamp: now - 1000), to: log, requireDurable: false, nowMs: now)
            shard.commit(nowMs: now)
        }
        let before = log.segmentBaseOffsets
        let deleted = log.enforceRetention(nowMs: now)
        #expect(deleted > 0)
        #expect(log.sizeInBytes - Int64(3000) < 7000, "what is left is within retention.bytes but for one segment")
        #expect(log.logStartOffset == before[deleted])
        #expect(log.segmentBaseOffsets == Array(before[deleted...]))
        #expect(throws: StorageError.self) { try log.read(from: 0, maxBytes: 100) }
        #expect(try records(in: log.readCopy(from: log.logStartOffset, maxBytes: 100)).first!.offset == log.logStartOffset)
        DiskWorker.shared.waitUntilIdle()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/orders-0")
        #expect(!files.contains { $0.hasPrefix("00000000000000000000") }, "deleted segment files are gone")

        // Time retention: everything but the active segment is older than retention.ms.
        log.config.retentionBytes = -1
        log.config.retentionMs = 500
        #expect(log.enforceRetention(nowMs: now) == log.segmentCount - 1 + 0 || log.segmentCount == 1)
        #expect(log.segmentCount == 1)
        #expect(log.logEndOffset == 400, "retention never touches the end of the log")
    }

    /// A segment retention drops is unlinked and, once nothing refers to it, closed by the disk
    /// worker: its last close frees the file's blocks (with the `discard` mount option it waits
    /// for the device), which must not happen on a shard. Holding the worker shows the order.
    @Test func retentionLeavesTheLastCloseOfADeletedSegmentToTheDiskWorker() throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 3000
        config.retentionBytes = 3000
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<20 {
            _ = try shard.append(arena.batch(records: 10, first: i * 10, valueSize: 30, timestamp: now), to: log, requireDurable: false, nowMs: now)
            shard.commit(nowMs: now)
        }
        func openSegmentFiles() -> Int {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0))?.contains(dir.path + "/orders-0/") == true }.count
        }
        // Spares and given-back reservations hold descriptors of their own while they run.
        DiskWorker.spares.waitUntilIdle()
        let before = openSegmentFiles()
        let bases = log.segmentBaseOffsets
        let held = DispatchSemaphore(value: 0)
        DiskWorker.shared.run { held.wait() }
        let deleted = log.enforceRetention(nowMs: now)
        #expect(deleted > 0)
        // The dropped segments are gone from the log; their descriptors wait for the worker.
        #expect(openSegmentFiles() == before, "closed on the calling thread")
        held.signal()
        DiskWorker.shared.waitUntilIdle()
        #expect(openSegmentFiles() == before - 3 * deleted)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/orders-0")
        for base in bases.prefix(deleted) {
            #expect(!files.contains { $0.hasPrefix(String(format: "%020lld", base)) }, "segment \(base)'s files are gone")
        }
    }

    @Test(arguments: backends)
    func durabilityModesDecideWhenAppendsBecomeDurable(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        let manager = try LogManager(dataDirectory: dir.path, logger: testLogger())
        var pageCache = LogConfig()
        pageCache.durability = .pageCache
        var onAckAll = LogConfig()
        onAckAll.durability = .fsyncOnAckAll
        var always = LogConfig()
        always.durability = .fsyncAlways
        var flushEvery = LogConfig()
        flushEvery.flushMessages = 20
        let logs = try [pageCache, onAckAll, always, flushEvery].enumerated().map { i, c in
            try manager.openLog(TopicPartition("t", Int32(i)), config: c, nowMs: now)
        }
        let shard = LogShard(backend: backend(kind))
        logs.forEach(shard.adopt)
        let arena = BatchArena()
        // acks=1 appends: only fsync-always syncs.
        for log in logs { _ = try shard.append(arena.batch(records: 10), to: log, requireDurable: false, nowMs: now) }
        shard.commit(nowMs: now)
        shard.poll(wait: true)
        #expect(logs.map(\.durableOffset) == [0, 0, 10, 0])
        // acks=all appends: fsync-on-ack-all syncs too; the flush policy fires at 20 records.
        for log in logs { _ = try shard.append(arena.batch(records: 10, first: 10), to: log, requireDurable: true, nowMs: now) }
        shard.commit(nowMs: now)
        #expect(logs[2].durableOffset == 20, "fsync-always: durable when commit returns")
        let advanced = shard.poll(wait: true)
        #expect(Set(advanced.map(\.topicPartition.partition)).isSuperset(of: [1, 3]))
        #expect(logs.map(\.durableOffset) == [0, 20, 20, 20])
        #expect(logs.allSatisfy { $0.logEndOffset == 20 })
    }

    @Test(arguments: backends)
    func cleanRestartKeepsTheLogAndUncleanRestartRecoversIt(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 5000
        config.indexIntervalBytes = 300
        var written: [UInt8] = []
        do {
            let (manager, log) = try open(dir, config)
            #expect(!manager.wasCleanShutdown)
            let shard = LogShard(backend: backend(kind))
            shard.adopt(log)
            let arena = BatchArena()
            for i in 0..<50 { _ = try shard.append(arena.batch(records: 6, first: i * 6), to: log, requireDurable: false, nowMs: now) }
            shard.syncAll(nowMs: now)
            written = try readAll(log)
            #expect(try records(in: written).count == 300)
            try manager.close()
        }
        do {
            let (manager, log) = try open(dir, config)
            #expect(manager.wasCleanShutdown)
            #expect(log.logEndOffset == 300 && log.segmentCount > 1)
            #expect(try readAll(log) == written)
            // Appends continue after a clean restart; then stop without close (a crash).
            let shard = LogShard(backend: backend(kind))
            let arena = BatchArena()
            _ = try shard.append(arena.batch(records: 6, first: 300), to: log, requireDurable: false, nowMs: now)
            shard.commit(nowMs: now)
            _ = manager
        }
        let (manager, log) = try open(dir, config)
        #expect(!manager.wasCleanShutdown)
        #expect(log.logEndOffset == 306)
        let all = try records(in: readAll(log))
        #expect(all.map(\.offset) == Array(0..<306))
        #expect(all.last!.key == "key-305")
    }

    /// Fails writes to one descriptor after writing part of them, like a disk filling up.
    final class FullDiskBackend: AppendBackend {
        let inner = PosixAppendBackend()
        var fullFd: Int32 = -1
        var name: String { "full-disk" }
        var kind: IOBackendKind { .posix }
        var syncsInFlight: Int { inner.syncsInFlight }

        func write(_ writes: [FileWrite]) -> [SystemError?] {
            writes.map { w in
                guard w.fd == fullFd else { return inner.write([w])[0] }
                var partial = w
                partial.buffers = [UnsafeRawBufferPointer(rebasing: w.buffers[0].prefix(w.buffers[0].count / 2))]
                _ = inner.write([partial])
                return SystemError("pwritev", errno: ENOSPC)
            }
        }

        func beginSync(fd: Int32, token: UInt64) { inner.beginSync(fd: fd, token: token) }
        func reapSyncs(wait: Bool) -> [SyncCompletion] { inner.reapSyncs(wait: wait) }
    }

    @Test func aFailedWriteLeavesTheLogConsistentAndAppendsResume() throws {
        let dir = TemporaryDirectory()
        let manager = try LogManager(dataDirectory: dir.path, logger: testLogger())
        let full = try manager.openLog(TopicPartition("full", 0), nowMs: now)
        let fine = try manager.openLog(TopicPartition("fine", 0), nowMs: now)
        let faulty = FullDiskBackend()
        let shard = LogShard(backend: faulty)
        let arena = BatchArena()
        _ = try shard.append(arena.batch(records: 5), to: full, requireDurable: false, nowMs: now)
        shard.commit(nowMs: now)
        let sizeBefore = full.sizeInBytes
        faulty.fullFd = full.segments[0].logFd
        _ = try shard.append(arena.batch(records: 5, first: 5), to: full, requireDurable: false, nowMs: now)
        _ = try shard.append(arena.batch(records: 5), to: fine, requireDurable: false, nowMs: now)
        let failures = shard.commit(nowMs: now)
        #expect(failures.count == 1 && failures[0].log === full)
        if case .io(let e) = failures.first?.error { #expect(e.isNoSpace) } else { Issue.record("expected an I/O error") }
        #expect(full.logEndOffset == 5 && full.nextOffset == 5, "the failed append's offsets are handed out again")
        #expect(full.sizeInBytes == sizeBefore)
        #expect(try Sys.fileSize(full.segments[0].logFd) == sizeBefore, "the partial write was cut off")
        #expect(fine.logEndOffset == 5, "other partitions in the same commit are unaffected")
        // Space returns: the next append gets the same offsets and the log reads cleanly.
        faulty.fullFd = -1
        let info = try shard.append(arena.batch(records: 5, first: 5), to: full, requireDurable: false, nowMs: now)
        #expect(info.baseOffset == 5)
        #expect(shard.commit(nowMs: now).isEmpty)
        #expect(try records(in: full.readCopy(from: 0, maxBytes: 1 << 20)).map(\.offset) == Array(0..<10))
    }

    @Test func autoBackendProbesIoUring() throws {
        let (chosen, reason) = try makeAppendBackend(.auto, syncsOnAppendPath: true)
        // io_uring is enabled on this machine kind; where it is not, auto must say why it fell back.
        #expect(chosen.name == "uring" || reason != nil)
        // Without syncs on the append path POSIX is the faster backend (measured), so auto takes it.
        let (pageCache, why) = try makeAppendBackend(.auto, syncsOnAppendPath: false)
        #expect(pageCache.name == "posix" && why != nil)
        #expect(try makeAppendBackend(.posix).0.name == "posix")
    }

    /// A follower's tail past its high watermark goes when its leader changes: later segments
    /// are deleted, the one holding the offset is cut at the batch, the high watermark follows,
    /// appends continue from there (a replicated batch keeps its offsets, one that does not start
    /// at the log end is refused), and the log reopens as it was left.
    @Test(arguments: backends)
    func truncationCutsAtABatchAcrossSegmentsAndTheLogReopensCut(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 4096
        config.indexIntervalBytes = 256
        var (manager, log) = try open(dir, config)
        let shard = LogShard(backend: backend(kind))
        shard.adopt(log)
        let arena = BatchArena()
        var ends: [Int64] = []
        for i in 0..<60 {
            _ = try shard.append(arena.batch(records: 4, first: i * 4, valueSize: 60), to: log, requireDurable: false, nowMs: now)
            #expect(shard.commit(nowMs: now).isEmpty)
            ends.append(log.logEndOffset)
        }
        #expect(log.segmentCount > 3)
        log.replicatedHighWatermark = log.logEndOffset
        let cut = ends[20]  // a batch boundary inside an early segment
        let before = try readAll(log)
        #expect(try log.truncate(to: cut))
        #expect(log.logEndOffset == cut && log.nextOffset == cut && log.highWatermark == cut)
        #expect(log.segmentBaseOffsets.allSatisfy { $0 <= cut })
        var kept = try readAll(log)
        #expect(try records(in: kept).map(\.offset) == Array(0..<cut))
        let prefixKept = Array(before.prefix(kept.count)) == kept
        #expect(prefixKept, "what is kept is the log's beginning, unchanged")
        #expect(try !log.truncate(to: cut + 4), "nothing past the log end")
        #expect(try log.read(from: cut, maxBytes: 1 << 20) == nil)

        // A replicated batch must start at the log end and keeps its offsets.
        let replicated = arena.batch(records: 3, first: 900, valueSize: 60)
        RecordBatchView.setBaseOffset(cut + 1, inBatchAt: replicated.baseAddress!)
        #expect(throws: StorageError.self) { try shard.append(replicated, to: log, requireDurable: false, nowMs: now, keepOffsets: true) }
        RecordBatchView.setBaseOffset(cut, inBatchAt: replicated.baseAddress!)
        #expect(try shard.append(replicated, to: log, requireDurable: false, nowMs: now, keepOffsets: true).baseOffset == cut)
        #expect(shard.commit(nowMs: now).isEmpty)
        #expect(log.logEndOffset == cut + 3)
        // A consumer's read stops at the high watermark; a follower's does not.
        #expect(try log.read(from: cut, maxBytes: 1 << 20, upTo: log.highWatermark) == nil)
        #expect(try log.read(from: cut, maxBytes: 1 << 20) != nil)
        kept = try readAll(log)

        shard.syncAll(nowMs: now)
        try manager.close()
        (manager, log) = try open(dir, config)
        #expect(log.logEndOffset == cut + 3)
        let reopened = try readAll(log) == kept
        #expect(reopened, "the log reopens as it was left")
        try manager.close()
    }
}

extension PartitionLogTests {
    /// The leader epoch cache (KIP-101): a leader stamps its epoch on the batches it appends, the
    /// cache records where each epoch starts (replicated batches keep theirs), answers where an
    /// epoch ends, is cut with the log, and survives a clean reopen (its checkpoint) and an unclean
    /// one (the epochs of the batches scanned after an older checkpoint).
    @Test(arguments: backends)
    func theLeaderEpochCacheFollowsTheLogThroughCutsAndRecovery(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory()
        var (manager, log) = try open(dir)
        var shard = LogShard(backend: backend(kind))
        shard.adopt(log)
        let arena = BatchArena()
        func append(_ epoch: Int32?, keepOffsets: Int32? = nil) throws {
            let batch = arena.batch(records: 4, first: Int(log.nextOffset), valueSize: 20)
            if let keepOffsets {
                RecordBatchView.setBaseOffset(log.nextOffset, inBatchAt: batch.baseAddress!)
                RecordBatchView.setPartitionLeaderEpoch(keepOffsets, inBatchAt: batch.baseAddress!)
            }
            log.leaderEpoch = epoch
            _ = try shard.append(batch, to: log, requireDurable: false, nowMs: now, keepOffsets: keepOffsets != nil)
            #expect(shard.commit(nowMs: now).isEmpty)
        }
        try append(nil)  // not a leader: the producer's -1 stays, no epoch
        #expect(log.epochStarts.isEmpty)
        for _ in 0..<3 { try append(0) }
        for _ in 0..<2 { try append(2) }
        #expect(log.epochStarts == [EpochStart(epoch: 0, startOffset: 4), EpochStart(epoch: 2, startOffset: 16)])
        let stamped = try log.readCopy(from: 16, maxBytes: 1 << 20)
        #expect(stamped.withUnsafeBytes { RecordBatchView(unchecked: $0).partitionLeaderEpoch } == 2)
        #expect(log.epochStarts.endOffset(forEpoch: 1, logEnd: log.logEndOffset)! == (0, 16))
        #expect(log.epochStarts.endOffset(forEpoch: 2, logEnd: log.logEndOffset)! == (2, 24))
        #expect(log.epochStarts.endOffset(forEpoch: 9, logEnd: log.logEndOffset)! == (2, 24))
        #expect([EpochStart]().endOffset(forEpoch: 0, logEnd: 5) == nil)
        try append(nil, keepOffsets: 3)  // a follower's append keeps the leader's epoch
        #expect(log.epochStarts.last == EpochStart(epoch: 3, startOffset: 24))
        #expect(try log.truncate(to: 24))
        #expect(log.epochStarts.count == 2)

        shard.syncAll(nowMs: now)
        try manager.close()
        (manager, log) = try open(dir)
        #expect(log.epochStarts == [EpochStart(epoch: 0, startOffset: 4), EpochStart(epoch: 2, startOffset: 16)])
        shard = LogShard(backend: backend(kind))
        shard.adopt(log)
        try append(5)
        shard.syncAll(nowMs: now)
        try manager.close()
        // An unclean stop whose last epoch checkpoint is older: the scan finds epoch 5.
        try Data("0 4\n".utf8).write(to: URL(fileURLWithPath: dir.path + "/orders-0/leader-epoch-checkpoint"))
        try? FileManager.default.removeItem(atPath: dir.path + "/.apus-clean-shutdown")
        try? FileManager.default.removeItem(atPath: dir.path + "/orders-0/recovery-point")
        (manager, log) = try open(dir)
        #expect(!manager.wasCleanShutdown)
        #expect(log.epochStarts == [EpochStart(epoch: 0, startOffset: 4), EpochStart(epoch: 2, startOffset: 16), EpochStart(epoch: 5, startOffset: 24)])
        try manager.close()
    }

    /// Deleting a log frees its blocks where `deleteLog` runs (the disk worker), even while
    /// the log's descriptors are still open: the shard closing them last must not be the one
    /// that frees gigabytes (3.4–4.5 s turns measured before).
    @Test func deletingALogFreesItsBlocksWhileItsFilesAreStillOpen() throws {
        let dir = TemporaryDirectory()
        let (manager, log) = try open(dir)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<64 { _ = try shard.append(arena.batch(records: 64, first: i * 64, valueSize: 1000), to: log, requireDurable: false, nowMs: now) }
        shard.commit(nowMs: now)
        shard.syncAll(nowMs: now)  // blocks allocated on every file system, delayed allocation or not
        let range = try #require(try log.read(from: 0, maxBytes: 1 << 20))
        // 4.1 MB written: how many blocks that holds depends on the file system (a reservation
        // ahead that has or has not landed yet, compression), only that it holds some does not.
        #expect(try Sys.allocatedBytes(range.fd) > 0)
        try manager.deleteLog(log.topicPartition)
        #expect(!Sys.exists(dir.path + "/" + log.topicPartition.description))
        #expect(try Sys.allocatedBytes(range.fd) == 0)  // the log (and this descriptor) still open
        // A read of the cut files (a request that still holds the log) is an error, not a trap.
        #expect(throws: StorageError.self) { try log.read(from: 64 * 32, maxBytes: 1 << 20) }
        do {
            _ = try log.read(from: 64 * 32, maxBytes: 1 << 20)
        } catch {
            guard case .io = error else { Issue.record("a cut file should be an I/O error, got \(error)"); return }
        }
    }

    @Test func aFileRangeStaysReadableAfterRetentionDeletesItsSegment() throws {
        let dir = TemporaryDirectory()
        var config = LogConfig()
        config.segmentBytes = 2000
        config.retentionBytes = 0
        let (_, log) = try open(dir, config)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<20 { _ = try shard.append(arena.batch(records: 5, first: i * 5, valueSize: 40), to: log, requireDurable: false, nowMs: now) }
        shard.commit(nowMs: now)
        let range = try #require(try log.read(from: 0, maxBytes: 1 << 20))
        let expected = try log.readCopy(from: 0, maxBytes: 1 << 20)
        #expect(log.enforceRetention(nowMs: now) > 0)
        #expect(log.logStartOffset > 0)
        DiskWorker.shared.waitUntilIdle()
        // The queued response still sends the right bytes: the range keeps its segment open.
        var bytes = [UInt8](repeating: 0, count: range.length)
        let n = try bytes.withUnsafeMutableBytes { try Sys.preadFully(range.fd, $0, at: range.position) }
        #expect(n == range.length && bytes == expected)
    }
}

/// Rolling onto a spare segment made ahead by the disk worker, and recovering spares left by a crash.
@Suite struct SpareSegmentTests {
    let now: Int64 = 1_700_000_000_000

    func config() -> LogConfig {
        var config = LogConfig()
        config.segmentBytes = 8192
        config.durability = .fsyncOnAckAll
        return config
    }

    @Test(arguments: [IOBackendKind.posix, .uring])
    func rollsTakeTheSpareAndNameItsFiles(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory("apus-spare")
        let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config(), logger: testLogger())
        let log = try manager.openLog(TopicPartition("s", 0), nowMs: now)
        let shard = LogShard(backend: backend(kind))
        shard.adopt(log)
        let arena = BatchArena()
        let before = ShardThreadContract.violations.count
        ShardThreadContract.markCurrentThread(true)
        let exceptions = ShardThreadContract.exceptionsOnThisThread
        var appended = 0
        for i in 0..<60 {
            _ = try shard.append(arena.batch(records: 4, first: i * 4, valueSize: 200), to: log, requireDurable: true, nowMs: now)
            shard.commit(nowMs: now)
            appended += 4
            DiskWorker.spares.waitUntilIdle()  // the spare is ready before the roll that needs it
        }
        #expect(ShardThreadContract.exceptionsOnThisThread == exceptions, "no roll created files on the shard")
        ShardThreadContract.markCurrentThread(false)
        shard.syncAll(nowMs: now)
        DiskWorker.spares.waitUntilIdle()
        #expect(log.segmentCount > 5)
        #expect(ShardThreadContract.violations.count == before, "every roll took a spare: \(ShardThreadContract.violations.examples)")
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/s-0"))
        for base in log.segmentBaseOffsets {
            #expect(names.contains(segmentStem(base) + ".log") && names.contains(segmentStem(base) + ".index"), "segment \(base) named")
        }
        #expect(try records(in: readAll(log)).map(\.offset) == Array(0..<Int64(appended)))
        try manager.close()
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/s-0/spare.log"), "a clean shutdown leaves no spare")
        // Reopened cleanly: the same log.
        let again = try LogManager(dataDirectory: dir.path, defaultConfig: config(), logger: testLogger())
        let reopened = try again.openLog(TopicPartition("s", 0), nowMs: now)
        #expect(reopened.logEndOffset == Int64(appended) && reopened.segmentBaseOffsets == log.segmentBaseOffsets)
    }

    /// Spares are made on a worker of their own: with `DiskWorker.shared` held (as a checkpoint
    /// waiting for the journal holds it), a partition still gets its spares, rolls onto them
    /// without creating files on the shard, and they are named.
    @Test func sparesAreMadeWhileTheSharedWorkerIsHeld() throws {
        let dir = TemporaryDirectory("apus-spare-held")
        let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config(), logger: testLogger())
        let log = try manager.openLog(TopicPartition("s", 0), nowMs: now)
        let shard = LogShard(backend: backend(.posix))
        shard.adopt(log)
        let arena = BatchArena()
        let held = DispatchSemaphore(value: 0)
        DiskWorker.shared.run { held.wait() }
        ShardThreadContract.markCurrentThread(true)
        let exceptions = ShardThreadContract.exceptionsOnThisThread
        for i in 0..<40 {
            _ = try shard.append(arena.batch(records: 4, first: i * 4, valueSize: 200), to: log, requireDurable: false, nowMs: now)
            shard.commit(nowMs: now)
            DiskWorker.spares.waitUntilIdle()
        }
        let rolledWithoutSpare = ShardThreadContract.exceptionsOnThisThread - exceptions
        ShardThreadContract.markCurrentThread(false)
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/s-0"))
        held.signal()
        #expect(log.segmentCount > 3)
        #expect(rolledWithoutSpare == 0, "every roll took a spare while the shared worker was held")
        for base in log.segmentBaseOffsets {
            #expect(names.contains(segmentStem(base) + ".log"), "segment \(base) named while the shared worker was held")
        }
        try manager.close()
    }

    /// A crash after a roll took the spare and before its files were renamed: the spare holds
    /// the newest batches and recovery adopts it by its first batch; an empty spare goes.
    @Test func recoveryAdoptsAWrittenSpareAndDropsAnEmptyOne() throws {
        let dir = TemporaryDirectory("apus-spare-crash")
        let partition = dir.path + "/s-0/"
        // The run that crashes: everything it opened is released when this function returns.
        func crashedRun() throws -> (end: Int64, bases: [Int64]) {
            let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config(), logger: testLogger())
            let log = try manager.openLog(TopicPartition("s", 0), nowMs: now)
            _ = try manager.openLog(TopicPartition("s", 1), nowMs: now)
            let shard = LogShard(backend: backend(.posix))
            shard.adopt(log)
            let arena = BatchArena()
            for i in 0..<40 {
                _ = try shard.append(arena.batch(records: 4, first: i * 4, valueSize: 200), to: log, requireDurable: true, nowMs: now)
                shard.commit(nowMs: now)
                DiskWorker.spares.waitUntilIdle()
            }
            shard.syncAll(nowMs: now)
            DiskWorker.spares.waitUntilIdle()
            return (log.logEndOffset, log.segmentBaseOffsets)
        }
        let (end, bases) = try crashedRun()
        // Undo the last roll's renames (its files are the spare's again), and leave an empty
        // spare in the other partition.
        let last = segmentStem(bases.last!)
        for ext in [".log", ".index", ".timeindex"] {
            try? FileManager.default.removeItem(atPath: partition + "spare" + ext)
            try FileManager.default.moveItem(atPath: partition + last + ext, toPath: partition + "spare" + ext)
            FileManager.default.createFile(atPath: dir.path + "/s-1/spare" + ext, contents: nil)
        }
        let recovered = try LogManager(dataDirectory: dir.path, defaultConfig: config(), logger: testLogger())
        #expect(!recovered.wasCleanShutdown)
        let s0 = try recovered.openLog(TopicPartition("s", 0), nowMs: now)
        let s1 = try recovered.openLog(TopicPartition("s", 1), nowMs: now)
        #expect(s0.logEndOffset == end, "the spare's batches were adopted")
        #expect(s0.segmentBaseOffsets == bases)
        #expect(try records(in: readAll(s0)).map(\.offset) == Array(0..<end))
        #expect(s1.logEndOffset == 0)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/s-1").filter { $0.hasPrefix("spare") }
        #expect(left.isEmpty, "an empty spare is removed: \(left)")
    }
}

/// Blocks reserved in spare segments before a shard writes them (`segment.preallocate.bytes`,
/// whole segments for a fast partition), given back when the segment rolls.
@Suite struct ReservationTests {
    let now: Int64 = 1_700_000_000_000

    /// Bytes the file system has allocated to a segment's log file, and its size.
    func allocation(_ dir: TemporaryDirectory, _ base: Int64) throws -> (allocated: Int64, size: Int64) {
        let fd = try Sys.open(dir.path + "/r-0/" + segmentStem(base) + ".log", O_RDONLY)
        defer { Sys.close(fd) }
        return (try Sys.allocatedBytes(fd), try Sys.fileSize(fd))
    }

    /// A log of 1 MiB segments reserved in 256 KiB windows, appended to ~8 KiB at a time with a
    /// commit each, its clock moving `msPerBatch` per batch.
    final class Appender {
        let manager: LogManager
        let log: PartitionLog
        let shard: LogShard
        let arena = BatchArena()
        var appended = 0
        var clock: Int64
        let msPerBatch: Int64

        init(_ dir: TemporaryDirectory, _ kind: IOBackendKind, now: Int64, msPerBatch: Int64) throws {
            var config = LogConfig()
            config.segmentBytes = 1 << 20
            config.preallocateBytes = 256 << 10
            manager = try LogManager(dataDirectory: dir.path, defaultConfig: config, logger: testLogger())
            log = try manager.openLog(TopicPartition("r", 0), nowMs: now)
            shard = LogShard(backend: backend(kind))
            shard.adopt(log)
            clock = now
            self.msPerBatch = msPerBatch
        }

        func batches(_ n: Int) throws {
            for _ in 0..<n {
                clock += msPerBatch
                _ = try shard.append(arena.batch(records: 8, first: appended, valueSize: 1000), to: log, requireDurable: false, nowMs: clock)
                appended += 8
                shard.commit(nowMs: clock)
            }
        }
    }

    /// A slow partition (8 KiB a second here, where `segment.bytes` in a minute would be 17 KiB/s)
    /// never has blocks reserved in the file it writes: its next segment, a spare, starts with
    /// a window reserved before the shard sees it, and a rolled segment gives back the rest.
    @Test(arguments: [IOBackendKind.posix, .uring])
    func aSlowPartitionReservesOnlyItsSparesFirstWindow(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory("apus-reserve")
        let writer = try Appender(dir, kind, now: now, msPerBatch: 1000)
        let (manager, log) = (writer.manager, writer.log)
        let before = ShardThreadContract.violations.count
        ShardThreadContract.markCurrentThread(true)
        let appendBatches = writer.batches
        try appendBatches(40)  // ~320 KiB: past the first window's size
        DiskWorker.spares.waitUntilIdle()
        let first = try allocation(dir, 0)
        #expect(first.size > 256 << 10)
        #expect(first.allocated <= first.size + 64 << 10, "nothing reserved in the file the shard writes: \(first)")
        try appendBatches(40)  // past half of the segment: a spare is asked for
        #expect(log.spareAsked && !log.rollsAtReservation)
        DiskWorker.spares.waitUntilIdle()
        try appendBatches(70)  // ~1.2 MiB: the segment rolls onto its spare
        ShardThreadContract.markCurrentThread(false)
        #expect(ShardThreadContract.violations.count == before, "\(ShardThreadContract.violations.examples)")
        DiskWorker.shared.waitUntilIdle()
        DiskWorker.spares.waitUntilIdle()
        #expect(log.segmentCount == 2)
        let rolled = try allocation(dir, 0)
        #expect(rolled.allocated <= rolled.size + 64 << 10, "a rolled segment keeps only its data's blocks: \(rolled)")
        let second = try allocation(dir, log.segmentBaseOffsets[1])
        #expect(second.size < 256 << 10)
        #expect(second.allocated >= 256 << 10, "the spare's first window was reserved before it was written: \(second)")
        #expect(second.allocated <= (256 << 10) + (64 << 10), "and nothing more: \(second)")
        #expect(try records(in: readAll(log)).map(\.offset) == Array(0..<Int64(writer.appended)))
        try manager.close()
    }

    /// A partition filling fast never has blocks reserved in a file the shard writes: once half
    /// a window is written, its first segment asks for a spare reserved in full and rolls onto
    /// it as soon as it is ready.
    @Test(arguments: [IOBackendKind.posix, .uring])
    func aFastPartitionRollsOntoASpareReservedInFull(_ kind: IOBackendKind) throws {
        let dir = TemporaryDirectory("apus-reserve-fast")
        let writer = try Appender(dir, kind, now: now, msPerBatch: 0)
        let (manager, log) = (writer.manager, writer.log)
        let before = ShardThreadContract.violations.count
        ShardThreadContract.markCurrentThread(true)
        let appendBatches = writer.batches
        while !log.spareAsked { try appendBatches(1) }  // in no time: judged at half a window
        #expect(log.rollsAtReservation)
        DiskWorker.shared.waitUntilIdle()
        DiskWorker.spares.waitUntilIdle()
        #expect(log.segmentCount == 1)
        let written = try allocation(dir, 0)
        #expect(written.allocated <= written.size + 64 << 10, "nothing reserved in the file the shard writes: \(written)")
        try appendBatches(1)  // the spare is ready: the log rolls onto it
        #expect(log.segmentCount == 2)
        try appendBatches(19)
        DiskWorker.shared.waitUntilIdle()
        DiskWorker.spares.waitUntilIdle()
        let first = try allocation(dir, 0)
        #expect(first.size <= (128 << 10) + (17 << 10), "the first segment ended once its spare was ready: \(first)")
        #expect(first.allocated <= first.size + 64 << 10, "\(first)")
        let second = try allocation(dir, log.segmentBaseOffsets[1])
        #expect(second.allocated >= 1 << 20, "the spare was reserved up to segment.bytes before the shard wrote it: \(second)")
        #expect(second.allocated <= (1 << 20) + (64 << 10), "and nothing was reserved in it since: \(second)")
        try appendBatches(60)
        ShardThreadContract.markCurrentThread(false)
        #expect(ShardThreadContract.violations.count == before, "\(ShardThreadContract.violations.examples)")
        DiskWorker.spares.waitUntilIdle()
        #expect(try allocation(dir, log.segmentBaseOffsets[1]).allocated <= (1 << 20) + (64 << 10))
        #expect(try records(in: readAll(log)).map(\.offset) == Array(0..<Int64(writer.appended)))
        try manager.close()
    }

    @Test func zeroReservesNothing() throws {
        let dir = TemporaryDirectory("apus-reserve-off")
        var config = LogConfig()
        config.preallocateBytes = 0
        let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config, logger: testLogger())
        let log = try manager.openLog(TopicPartition("r", 0), nowMs: now)
        let shard = LogShard(backend: backend(.posix))
        let arena = BatchArena()
        for i in 0..<10 {
            _ = try shard.append(arena.batch(records: 8, first: i * 8, valueSize: 1000), to: log, requireDurable: false, nowMs: now)
            shard.commit(nowMs: now)
        }
        DiskWorker.spares.waitUntilIdle()
        let file = try allocation(dir, 0)
        #expect(file.allocated <= file.size + 64 << 10, "\(file)")
        try manager.close()
    }
}
