import ApusIO
import KafkaWire
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Opens a partition directory into a ``PartitionLog``.
///
/// After a clean shutdown the segment files and indexes are trusted (indexes are only
/// rebuilt if missing or inconsistent) and the last segment's end is found from its index.
/// After an unclean one every segment from the recovery point on is scanned batch by batch
/// (lengths, magic, CRC, increasing offsets); a torn or corrupt tail is truncated, later
/// segments are deleted, and the indexes of scanned segments are rebuilt.
struct LogRecovery {
    let directory: String
    let topicPartition: TopicPartition
    let config: LogConfig
    let clean: Bool
    let logger: Logger
    let nowMs: Int64
    /// Leader epochs found by the segment scans of this open.
    private let scannedEpochs = ScannedEpochs()

    func open() throws -> PartitionLog {
        var names = try Sys.listDirectory(directory)
        for name in names where name.hasSuffix(".deleted") || name.hasSuffix(".tmp") {
            try? Sys.unlink(directory + "/" + name)
        }
        names = names.filter { !$0.hasSuffix(".deleted") && !$0.hasSuffix(".tmp") }
        if names.contains(where: { $0.hasPrefix(Segment.spareStem + ".") }) {
            try adoptSpare()
            names = try Sys.listDirectory(directory)
        }
        let bases = names.compactMap { name -> Int64? in
            guard name.hasSuffix(".log") else { return nil }
            return Int64(name.dropLast(4))
        }.sorted()
        if bases.isEmpty {
            let segment = try Segment(directory: directory, baseOffset: 0, create: true, nowMs: nowMs)
            return PartitionLog(topicPartition: topicPartition, directory: directory, config: config,
                                segments: [segment], logger: logger, nowMs: nowMs)
        }
        var segments: [Segment] = []
        var indexed: [Bool] = []
        for base in bases {
            indexed.append(names.contains(segmentStem(base) + ".index") && names.contains(segmentStem(base) + ".timeindex"))
            segments.append(try Segment(directory: directory, baseOffset: base, create: false, nowMs: nowMs))
        }
        let recoveryPoint = offsetFile(LogManager.recoveryCheckpoint)
        var firstToScan = segments.count
        if !clean {
            firstToScan = 0
            if let point = recoveryPoint, let i = segments.lastIndex(where: { $0.baseOffset <= point }) { firstToScan = i }
        }
        var rebuilt = 0
        for i in 0..<firstToScan where !(indexed[i] && segments[i].loadIndexFiles()) {
            // A missing or torn index after a clean shutdown: rebuild it from the log.
            try recover(segments[i], truncate: false)
            rebuilt += 1
        }
        var scannedBytes: Int64 = 0
        var i = firstToScan
        while i < segments.count {
            let segment = segments[i]
            // A scanned segment must start where the one before it ends. A turn that rolled
            // writes the old segment's last batches and the new segment's first ones; after a
            // crash the new file can exist (the roll created it) while the old one's writes
            // never landed, and io_uring completes a turn's writes to different files in any
            // order. What follows such a gap was never acknowledged: it goes, so that the log
            // ends where its contiguous data ends.
            if i > firstToScan, segment.baseOffset != segments[i - 1].nextOffset {
                dropSegments(from: i, of: &segments, reason: "does not start where the segment before it ends (\(segments[i - 1].nextOffset))")
                break
            }
            scannedBytes += segment.size
            if try !recover(segment, truncate: true) {
                // Everything after the damage goes: later segments cannot be trusted to follow on.
                dropSegments(from: i + 1, of: &segments, reason: "follows a damaged segment")
                break
            }
            i += 1
        }
        // Segment ends: each segment runs up to the next one's base; the last one's end is
        // found by walking its headers from the last index entry (already known if scanned).
        for j in 0..<(segments.count - 1) where segments[j].nextOffset == segments[j].baseOffset {
            segments[j].nextOffset = segments[j + 1].baseOffset
        }
        if firstToScan >= segments.count, let last = segments.last {
            try findEnd(of: last)
        }
        if !clean {
            logger.info("recovered log after unclean shutdown", metadata: [
                "partition": "\(topicPartition)", "scannedSegments": "\(segments.count - min(firstToScan, segments.count))",
                "scannedBytes": "\(scannedBytes)", "logEndOffset": "\(segments.last!.nextOffset)",
            ])
        } else if rebuilt > 0 {
            logger.info("rebuilt indexes", metadata: ["partition": "\(topicPartition)", "segments": "\(rebuilt)"])
        }
        let log = PartitionLog(topicPartition: topicPartition, directory: directory, config: config,
                               segments: segments, logger: logger, nowMs: nowMs)
        // Records deleted by DeleteRecords inside the first segment stay deleted.
        if let start = offsetFile(PartitionLog.logStartOffsetFile) { log.restoreLogStartOffset(start) }
        // The leader epoch cache as last checkpointed (written with, and so at least as new as, the
        // recovery point), then the epochs of the batches scanned since.
        var epochs = (try? Sys.readFile(directory + "/" + PartitionLog.epochCheckpointFile)).map(PartitionLog.decodeEpochs) ?? []
        for entry in scannedEpochs.value where entry.epoch > (epochs.last?.epoch ?? -1) { epochs.append(entry) }
        log.epochStarts = epochs.filter { $0.startOffset < log.logEndOffset }
        // A replicated partition's high watermark when last checkpointed (a follower truncates to it).
        if let mark = offsetFile(PartitionLog.highWatermarkFile) {
            log.checkpointedHighWatermark = min(max(mark, log.logStartOffset), log.logEndOffset)
        }
        if log.lockWaitNs >= 1_000_000 {
            logger.warning("waited for a previous process's writes to finish before opening the log", metadata: [
                "partition": "\(topicPartition)", "waitedMs": "\(log.lockWaitNs / 1_000_000)",
            ])
        }
        return log
    }

    /// The offset a checkpoint file of the partition holds (nil: no file, or not a number).
    private func offsetFile(_ name: String) -> Int64? {
        guard let bytes = try? Sys.readFile(directory + "/" + name) else { return nil }
        return Int64(String(decoding: bytes.filter { $0 != 0x0A && $0 != 0x20 }, as: UTF8.self))
    }

    /// A spare segment's files (`spare.*`) left by a crash: empty, they go; holding batches
    /// (a roll whose renames had not run yet), the log file takes its segment's name from its
    /// first batch and the indexes are rebuilt. Waits for the file's lock first, like any
    /// segment, so that a killed process's writes to it have finished.
    private func adoptSpare() throws {
        let stem = directory + "/" + Segment.spareStem
        var base: Int64?
        if let fd = try? Sys.open(stem + ".log", O_RDWR) {
            defer { Sys.close(fd) }
            _ = try Sys.lockExclusive(fd, timeoutMs: Segment.lockTimeoutMs, stem + ".log")
            var header = [UInt8](repeating: 0, count: RecordBatchLayout.headerSize)
            let n = try header.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Sys.preadFully(fd, raw, at: 0) }
            }.get()
            if n == header.count {
                let view = header.withUnsafeBytes { RecordBatchView(unchecked: $0) }
                if view.magic == 2 && view.baseOffset >= 0 && !Sys.exists(directory + "/" + segmentStem(view.baseOffset) + ".log") {
                    base = view.baseOffset
                }
            }
        }
        for ext in [".index", ".timeindex"] { try? Sys.unlink(stem + ext) }
        if let base {
            let target = directory + "/" + segmentStem(base)
            for ext in [".index", ".timeindex"] { try? Sys.unlink(target + ext) }
            try Sys.rename(stem + ".log", target + ".log")
            logger.warning("adopted a spare segment written before a crash", metadata: ["partition": "\(topicPartition)", "segment": "\(base)"])
        } else {
            try? Sys.unlink(stem + ".log")
        }
    }

    /// Deletes the files of `segments[from...]` and removes them from the list.
    private func dropSegments(from first: Int, of segments: inout [Segment], reason: String) {
        guard first < segments.count else { return }
        for later in segments[first...] {
            for ext in [".log", ".index", ".timeindex"] { try? Sys.unlink(later.path + ext) }
            logger.warning("deleted segment after damage", metadata: [
                "partition": "\(topicPartition)", "segment": "\(later.baseOffset)", "reason": "\(reason)",
            ])
        }
        segments.removeSubrange(first...)
    }

    /// Scans and validates a whole segment, rebuilding its indexes; with `truncate`, cuts a
    /// damaged tail. Returns false if the segment was damaged.
    @discardableResult
    private func recover(_ segment: Segment, truncate: Bool) throws -> Bool {
        let result = try SegmentScanner.scan(segment, from: 0, until: segment.size, rebuildIndex: true, intervalBytes: config.indexIntervalBytes)
        segment.offsetIndex = result.offsetIndex
        segment.timeIndex = result.timeIndex
        segment.bytesSinceIndexEntry = result.bytesSinceIndexEntry
        segment.maxTimestamp = result.maxTimestamp
        segment.nextOffset = result.validEnd > 0 ? result.nextOffset : segment.baseOffset
        let damaged = result.validEnd < segment.size
        if damaged {
            logger.warning("truncating damaged segment tail", metadata: [
                "partition": "\(topicPartition)", "segment": "\(segment.baseOffset)",
                "validBytes": "\(result.validEnd)", "droppedBytes": "\(segment.size - result.validEnd)",
                "reason": "\(result.problem ?? "?")",
            ])
            if truncate {
                try Sys.ftruncate(segment.logFd, result.validEnd)
                segment.size = result.validEnd
                segment.stagedSize = result.validEnd
                // The damage is gone; an earlier non-truncating pass (index rebuild) may have marked it.
                segment.corruptAt = nil
            } else {
                segment.corruptAt = (result.validEnd, result.problem ?? "corrupt")
            }
        }
        segment.verifiedSize = result.validEnd
        try segment.rewriteIndexFiles()
        scannedEpochs.value += result.epochStarts
        return !damaged
    }

    /// Sets the last segment's next offset by walking batch headers from its last index entry.
    private func findEnd(of segment: Segment) throws {
        var position = Int64(segment.offsetIndex.last?.position ?? 0)
        var next = segment.baseOffset
        var header = [UInt8](repeating: 0, count: RecordBatchLayout.headerSize)
        while position < segment.size {
            let n = try header.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Sys.preadFully(segment.logFd, raw, at: position) }
            }.get()
            let view = header.withUnsafeBytes { RecordBatchView(unchecked: $0) }
            let size = Int64(view.batchLength) + Int64(RecordBatchLayout.logOverhead)
            guard n == header.count, view.magic == 2, size >= Int64(RecordBatchLayout.headerSize), position + size <= segment.size else {
                // Not what a clean shutdown leaves: validate the segment properly.
                logger.warning("segment tail inconsistent after clean shutdown; scanning", metadata: ["partition": "\(topicPartition)"])
                try recover(segment, truncate: true)
                return
            }
            next = view.lastOffset + 1
            position += size
        }
        segment.nextOffset = next
        // Keep indexing where the last entry left off.
        segment.bytesSinceIndexEntry = Int(segment.size - Int64(segment.offsetIndex.last?.position ?? 0))
    }
}

/// The epochs a recovery's segment scans found (filled in by `recover`, a non-mutating method).
private final class ScannedEpochs {
    var value: [EpochStart] = []
}
