import ApusIO
@testable import ApusStorage
import Foundation
import KafkaWire
import Testing
@testable import apus_storage_crashtest

/// Damaged files: torn tails, flipped bytes, lost or corrupt indexes. After any of them the
/// log must open valid (every batch readable from start to end, CRC-valid, offsets
/// contiguous), keep every batch before the damage, and keep everything when only an index
/// was damaged. Random positions come from a seeded generator; the seed is in every message.
@Suite struct TornWriteTests {
    static let tp = TopicPartition("torn", 0)

    /// A batch written to the template log, with where it landed.
    struct Written {
        var sequence: Int
        var smallOnly: Bool
        var baseOffset: Int64
        var lastOffset: Int64
        var segment: Int64
        var position: Int64
        var size: Int
        var maxTimestamp: Int64
        var end: Int64 { position + Int64(size) }
    }

    static func config() -> LogConfig {
        var config = LogConfig()
        config.segmentBytes = 128 << 10
        config.indexIntervalBytes = 4096
        config.durability = .fsyncOnAckAll
        config.retentionMs = -1
        config.retentionBytes = -1
        return config
    }

    static let round = 77_000

    /// Writes a log of `count` batches (mostly small, every 8th up to ~1 MiB) into `dataDir`;
    /// closes it cleanly or just drops it after syncing (no checkpoint: a full scan on open).
    static func writeLog(_ dataDir: String, count: Int = 300, clean: Bool, checkpoint: Bool = false) throws -> [Written] {
        let manager = try LogManager(dataDirectory: dataDir, logger: testLogger())
        let log = try manager.openLog(tp, config: config())
        let shard = LogShard(backend: try makeAppendBackend(.posix).0)
        shard.adopt(log)
        var written: [Written] = []
        for sequence in 0..<count {
            let smallOnly = sequence % 8 != 0
            var batch = CrashTestBatch.make(round: round, sequence: sequence, smallOnly: smallOnly)
            let info = try batch.withUnsafeMutableBytes { raw in
                let info = try shard.append(raw, to: log, requireDurable: true, nowMs: 1_700_000_000_000)
                #expect(shard.commit(nowMs: 1_700_000_000_000).isEmpty)
                return info
            }
            let maxTimestamp = batch.withUnsafeBytes { RecordBatchView(unchecked: $0).maxTimestamp }
            written.append(Written(sequence: sequence, smallOnly: smallOnly, baseOffset: info.baseOffset, lastOffset: info.lastOffset,
                                   segment: 0, position: 0, size: batch.count, maxTimestamp: maxTimestamp))
        }
        shard.syncAll(nowMs: 1_700_000_000_000)
        #expect(log.durableOffset == log.logEndOffset)
        // Where each batch landed: segments hold consecutive batches from their base offset.
        let bases = log.segmentBaseOffsets
        var position: Int64 = 0
        var current: Int64 = -1
        for i in written.indices {
            let segment = bases.last { $0 <= written[i].baseOffset }!
            if segment != current { position = 0; current = segment }
            written[i].segment = segment
            written[i].position = position
            position += Int64(written[i].size)
        }
        #expect(bases.count >= 4, "the template log should span several segments")
        if clean { try manager.close() } else if checkpoint { manager.checkpoint() }
        return written
    }

    static func segmentPath(_ dataDir: String, _ base: Int64, _ ext: String) -> String {
        dataDir + "/" + tp.description + "/" + String(repeating: "0", count: 20 - String(base).count) + String(base) + ext
    }

    /// Checks the reopened log: readable from start to end, every batch CRC-valid (the
    /// sequence validates), offsets contiguous from 0, the first `keep` batches bit-exact.
    /// Returns the number of batches in the log.
    @discardableResult
    static func verify(_ log: PartitionLog, _ written: [Written], keep: Int, _ context: String) throws -> Int {
        #expect(log.logStartOffset == 0, "\(context)")
        var index = 0
        try walkLog(log, context) { view in
            let next = view.baseOffset
            if index < written.count && written[index].baseOffset == next {
                let w = written[index]
                let expected = CrashTestBatch.expected(round: round, sequence: w.sequence, smallOnly: w.smallOnly, baseOffset: w.baseOffset)
                if index < keep {
                    #expect(expected.elementsEqual(view.bytes), "\(context): batch \(index) at \(next) is not bit-exact")
                }
            }
            index += 1
        }
        #expect(index >= keep, "\(context): \(index) batches left, expected at least \(keep)")
        return index
    }

    /// Appends one more batch and reads it back: the repaired log is writable.
    static func appendWorks(_ log: PartitionLog, _ context: String) throws {
        let shard = LogShard(backend: try makeAppendBackend(.posix).0)
        shard.adopt(log)
        var batch = CrashTestBatch.make(round: 99, sequence: 1, smallOnly: true)
        let end = log.logEndOffset
        let info = try batch.withUnsafeMutableBytes { raw in
            let info = try shard.append(raw, to: log, requireDurable: true, nowMs: 1_700_000_000_000)
            #expect(shard.commit(nowMs: 1_700_000_000_000).isEmpty)
            return info
        }
        shard.syncAll(nowMs: 1_700_000_000_000)
        #expect(info.baseOffset == end, "\(context)")
        #expect(try log.readCopy(from: info.baseOffset, maxBytes: 1) == batch, "\(context): appended batch does not read back")
    }

    static func copyTemplate(_ template: String, to path: String) throws {
        DiskWorker.spares.waitUntilIdle()  // a spare segment the last trial asked for is made by now
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: template, toPath: path)
    }

    // MARK: Torn tails

    @Test(arguments: [true, false])
    func truncatedLastSegment(cleanShutdown: Bool) throws {
        let dir = TemporaryDirectory("apus-torn")
        let template = dir.path + "/template"
        let written = try Self.writeLog(template, clean: cleanShutdown)
        let lastSegment = written.last!.segment
        let inLast = written.filter { $0.segment == lastSegment }
        let segmentSize = inLast.last!.end
        var rng = CrashTestBatch.Generator(state: 0x70A2 + (cleanShutdown ? 1 : 0))
        // Random cuts, plus the edges: inside the first header, on a batch boundary, one byte short.
        var cuts = (0..<10).map { _ in Int64(rng.next(in: 0...Int(segmentSize - 1))) }
        cuts += [0, 30, inLast[inLast.count / 2].position, segmentSize - 1]
        for cut in cuts {
            let context = "clean=\(cleanShutdown) cut last segment at \(cut) of \(segmentSize)"
            let data = dir.path + "/data"
            try Self.copyTemplate(template, to: data)
            let fd = open(Self.segmentPath(data, lastSegment, ".log"), O_RDWR)
            #expect(ftruncate(fd, off_t(cut)) == 0)
            close(fd)
            let manager = try LogManager(dataDirectory: data, logger: testLogger())
            #expect(manager.wasCleanShutdown == cleanShutdown)
            let log = try manager.openLog(Self.tp, config: Self.config())
            // Every batch that ends at or before the cut survives; the torn one and later go.
            let keep = written.firstIndex { $0.segment == lastSegment && $0.end > cut }!
            let count = try Self.verify(log, written, keep: keep, context)
            #expect(count == keep, "\(context)")
            #expect(log.logEndOffset == (keep == 0 ? 0 : written[keep - 1].lastOffset + 1), "\(context)")
            try Self.appendWorks(log, context)
        }
    }

    // MARK: Writes of one turn landing out of order

    /// What the new segment's file holds when the crash came.
    enum NewSegment: String, CaseIterable, CustomTestStringConvertible {
        /// Created by the roll, its write not landed.
        case empty
        /// Its batches landed (io_uring completes a turn's writes to different files in any order).
        case written
        var testDescription: String { rawValue }
    }

    /// The turn that rolled a segment wrote the old segment's last batches and the new
    /// segment's first ones; the crash came after the roll created the new file and before
    /// the old segment's writes landed (whole batches missing at its end). The log must end
    /// where the old segment's data ends: a later segment that does not start there is dropped
    /// (without this, the log end pointed past a gap and reads below it found nothing).
    @Test(arguments: NewSegment.allCases, [0, 1, 3])
    func rollWhoseOldSegmentTailNeverLanded(newSegment: NewSegment, missingBatches: Int) throws {
        let dir = TemporaryDirectory("apus-roll-gap")
        let data = dir.path + "/data"
        let all = try Self.writeLog(data, clean: false)
        let segments = Array(Set(all.map(\.segment))).sorted()
        // The roll: a segment holding several batches and the one after it, made the newest.
        let counts = Dictionary(grouping: all, by: \.segment).mapValues(\.count)
        let p = try #require(segments.dropLast().lastIndex { (counts[$0] ?? 0) >= 4 })
        let previous = segments[p], last = segments[p + 1]
        for later in segments[(p + 2)...] {
            for ext in [".log", ".index", ".timeindex"] { unlink(Self.segmentPath(data, later, ext)) }
        }
        let written = all.filter { $0.segment <= last }
        let inPrevious = written.filter { $0.segment == previous }
        let kept = inPrevious.count - missingBatches
        try #require(kept > 0)
        let cut = inPrevious[kept - 1].end
        let oldLog = open(Self.segmentPath(data, previous, ".log"), O_RDWR)
        #expect(ftruncate(oldLog, off_t(cut)) == 0)
        close(oldLog)
        if newSegment == .empty {
            for ext in [".log", ".index", ".timeindex"] { truncate(Self.segmentPath(data, last, ext), 0) }
        }
        let context = "new segment \(newSegment), \(missingBatches) batches missing at the end of the old one"
        let manager = try LogManager(dataDirectory: data, logger: testLogger())
        let log = try manager.openLog(Self.tp, config: Self.config())
        let keep = written.firstIndex { $0.baseOffset == inPrevious[kept - 1].baseOffset }! + 1
        let expectedEnd = written[keep - 1].lastOffset + 1
        if missingBatches == 0 && newSegment == .written {
            // Nothing was lost: the whole log stays.
            #expect(log.logEndOffset == written.last!.lastOffset + 1, "\(context)")
            try Self.verify(log, written, keep: written.count, context)
        } else if missingBatches == 0 {
            // The new segment is empty but starts where the old one ends: a valid log.
            #expect(log.logEndOffset == expectedEnd, "\(context)")
            #expect(try Self.verify(log, written, keep: keep, context) == keep)
        } else {
            #expect(log.logEndOffset == expectedEnd, "\(context)")
            #expect(log.segmentBaseOffsets.last == previous, "\(context): the segment after the gap should be gone")
            #expect(!FileManager.default.fileExists(atPath: Self.segmentPath(data, last, ".log")), "\(context)")
            #expect(try Self.verify(log, written, keep: keep, context) == keep)
        }
        try Self.appendWorks(log, context)
    }

    // MARK: Flipped bytes

    /// Random bytes overwritten at random positions of random segments, then an unclean open
    /// (no recovery point: every segment is scanned).
    @Test func corruptedBytesAfterUncleanShutdown() throws {
        let dir = TemporaryDirectory("apus-corrupt")
        let template = dir.path + "/template"
        let written = try Self.writeLog(template, clean: false)
        let segments = Array(Set(written.map(\.segment))).sorted()
        var rng = CrashTestBatch.Generator(state: 0xC0AA)
        for trial in 0..<24 {
            let data = dir.path + "/data"
            try Self.copyTemplate(template, to: data)
            // 1–3 damaged bytes; the earliest one is the damage point.
            var damage: [(segment: Int64, position: Int64)] = []
            for _ in 0..<rng.next(in: 1...3) {
                let segment = segments[rng.next(in: 0...(segments.count - 1))]
                let size = written.filter { $0.segment == segment }.last!.end
                let position = Int64(rng.next(in: 0...Int(size - 1)))
                let fd = open(Self.segmentPath(data, segment, ".log"), O_RDWR)
                var byte: UInt8 = 0
                #expect(pread(fd, &byte, 1, off_t(position)) == 1)
                byte ^= UInt8(rng.next(in: 1...255))
                #expect(pwrite(fd, &byte, 1, off_t(position)) == 1)
                close(fd)
                damage.append((segment, position))
            }
            let first = damage.min { ($0.segment, $0.position) < ($1.segment, $1.position) }!
            let context = "trial \(trial): damaged \(damage)"
            let manager = try LogManager(dataDirectory: data, logger: testLogger())
            #expect(!manager.wasCleanShutdown)
            let log = try manager.openLog(Self.tp, config: Self.config())
            let keep = written.firstIndex { $0.segment > first.segment || ($0.segment == first.segment && $0.end > first.position) }!
            try Self.verify(log, written, keep: keep, context)
            try Self.appendWorks(log, context)
        }
    }

    /// After a clean shutdown old segments are trusted at open: a flipped byte in one is found
    /// by the read that reaches it, which fails with corruptBatch; earlier batches are served.
    @Test func corruptByteInOldSegmentAfterCleanShutdown() throws {
        let dir = TemporaryDirectory("apus-corrupt-old")
        let data = dir.path + "/data"
        let written = try Self.writeLog(data, clean: true)
        let segments = Array(Set(written.map(\.segment))).sorted()
        // The second segment, a batch in its middle, a byte inside its records (CRC-covered).
        let victimSegment = segments[1]
        let inSegment = written.filter { $0.segment == victimSegment }
        let victim = inSegment[inSegment.count / 2]
        let position = victim.position + Int64(victim.size) - 3
        let fd = open(Self.segmentPath(data, victimSegment, ".log"), O_RDWR)
        var byte: UInt8 = 0
        #expect(pread(fd, &byte, 1, off_t(position)) == 1)
        byte ^= 0x5A
        #expect(pwrite(fd, &byte, 1, off_t(position)) == 1)
        close(fd)

        let manager = try LogManager(dataDirectory: data, logger: testLogger())
        #expect(manager.wasCleanShutdown)
        let log = try manager.openLog(Self.tp, config: Self.config())
        #expect(log.logEndOffset == written.last!.lastOffset + 1, "a clean open does not scan old segments")
        // Every batch before the corrupt one is served, bit-exact, one at a time.
        let victimIndex = written.firstIndex { $0.baseOffset == victim.baseOffset }!
        for w in written[..<victimIndex] {
            let bytes = try log.readCopy(from: w.baseOffset, maxBytes: 1)
            #expect(bytes == CrashTestBatch.expected(round: Self.round, sequence: w.sequence, smallOnly: w.smallOnly, baseOffset: w.baseOffset))
        }
        // A read reaching the corrupt batch fails, from before it and at it.
        let before = inSegment[0].baseOffset
        for offset in [before, victim.baseOffset, victim.lastOffset] {
            #expect {
                _ = try log.readCopy(from: offset, maxBytes: 16 << 20)
            } throws: { error in
                guard case StorageError.corruptBatch(let segment, let at, _) = error else { return false }
                return segment == victimSegment && at == victim.position
            }
        }
        // Reads of later segments still work (the damage is confined to its batch's segment).
        let later = written.first { $0.segment == segments[2] }!
        #expect(try log.readCopy(from: later.baseOffset, maxBytes: 1)
                == CrashTestBatch.expected(round: Self.round, sequence: later.sequence, smallOnly: later.smallOnly, baseOffset: later.baseOffset))
    }

    // MARK: Index damage

    enum IndexDamage: String, CaseIterable, CustomTestStringConvertible {
        case none, deleteOffsetIndex, deleteTimeIndex, deleteBoth, truncateOddSize, emptyFiles, randomBytes, garbageAppended
        var testDescription: String { rawValue }
    }

    enum Shutdown: String, CaseIterable, CustomTestStringConvertible {
        /// Clean: every index file is trusted if it looks consistent.
        case clean
        /// Unclean with a recovery point at the log end: segments before the last are trusted.
        case uncleanCheckpointed
        /// Unclean without a recovery point: everything is scanned.
        case unclean
        var testDescription: String { rawValue }
    }

    /// Index damage never loses data: after a clean or unclean open every batch is there, a
    /// read at any batch's offsets starts at that batch, and lookups by time are right.
    @Test(arguments: IndexDamage.allCases, Shutdown.allCases)
    func indexDamageLosesNothing(damage: IndexDamage, shutdown: Shutdown) throws {
        let dir = TemporaryDirectory("apus-index")
        let data = dir.path + "/data"
        let cleanShutdown = shutdown == .clean
        let written = try Self.writeLog(data, count: 200, clean: cleanShutdown, checkpoint: shutdown == .uncleanCheckpointed)
        let segments = Array(Set(written.map(\.segment))).sorted()
        var rng = CrashTestBatch.Generator(state: 0x1D3 &+ UInt64(damage.hashValue & 0xFFFF))
        for (n, segment) in segments.enumerated() where n % 2 == 0 || segment == segments.last {
            for ext in [".index", ".timeindex"] {
                let path = Self.segmentPath(data, segment, ext)
                let fd = open(path, O_RDWR)
                defer { close(fd) }
                var st = stat()
                fstat(fd, &st)
                let size = Int(st.st_size)
                switch damage {
                case .deleteOffsetIndex where ext == ".index", .deleteTimeIndex where ext == ".timeindex", .deleteBoth:
                    unlink(path)
                case .truncateOddSize where size > 3:
                    ftruncate(fd, off_t(size - 3))
                case .emptyFiles:
                    ftruncate(fd, 0)
                case .randomBytes where size > 0:
                    for _ in 0..<4 {
                        var byte = UInt8(truncatingIfNeeded: rng.next())
                        pwrite(fd, &byte, 1, off_t(rng.next(in: 0...(size - 1))))
                    }
                case .garbageAppended:
                    var garbage = (0..<24).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    pwrite(fd, &garbage, garbage.count, off_t(size))
                default:
                    break
                }
            }
        }
        let context = "\(damage) \(shutdown)"
        let manager = try LogManager(dataDirectory: data, logger: testLogger())
        let log = try manager.openLog(Self.tp, config: Self.config())
        #expect(log.logEndOffset == written.last!.lastOffset + 1, "\(context)")
        #expect(log.segmentBaseOffsets == segments, "\(context)")
        #expect(try Self.verify(log, written, keep: written.count, context) == written.count)
        // Reads from any offset inside any batch start at that batch.
        for w in written {
            for offset in Set([w.baseOffset, (w.baseOffset + w.lastOffset) / 2, w.lastOffset]) {
                let bytes = try log.readCopy(from: offset, maxBytes: 1)
                #expect(bytes.count == w.size && bytes.withUnsafeBytes { RecordBatchView(unchecked: $0).baseOffset } == w.baseOffset,
                        "\(context): read from \(offset) does not start at batch \(w.baseOffset)")
            }
        }
        // ListOffsets by time: a record of the first batch whose max timestamp reaches it.
        for w in written {
            let batch = written.first { $0.maxTimestamp >= w.maxTimestamp }!
            let found = try log.record(atOrAfter: w.maxTimestamp)
            #expect(found.map { (batch.baseOffset...batch.lastOffset).contains($0.offset) && $0.timestamp >= w.maxTimestamp } == true,
                    "\(context): by time \(w.maxTimestamp)")
        }
        try Self.appendWorks(log, context)
    }
}
