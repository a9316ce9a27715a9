import ApusIO
import KafkaWire
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The data directory: finds, opens (recovering when needed), creates and deletes partition
/// logs, and keeps the clean-shutdown marker.
///
/// Cold path, safe from any thread (start-up, topic admin on the coordinator shard, each
/// shard's checkpoints, shutdown). A log it opens is then owned by one shard. Opening removes
/// the marker; ``close()`` checkpoints every log and writes it back, so a later open can skip
/// the recovery scan.
public final class LogManager: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    public let dataDirectory: String
    public let defaultConfig: LogConfig
    /// Whether the previous run shut down cleanly (the marker was present).
    public let wasCleanShutdown: Bool
    let logger: Logger
    private var logs: [TopicPartition: PartitionLog] = [:]
    private var checkpointed: [TopicPartition: Int64] = [:]
    /// Replicated partitions' high watermarks as last checkpointed.
    private var checkpointedMarks: [TopicPartition: Int64] = [:]
    private var checkpointedEpochs: [TopicPartition: [EpochStart]] = [:]
    /// A background checkpoint is being written (at most one at a time).
    private let checkpointsUnderway = Atomic<Bool>(false)
    /// The data directory's `.lock`, held for the manager's life.
    private var lockFd: Int32

    static let cleanShutdownMarker = ".apus-clean-shutdown"
    static let lockFile = ".lock"
    static let recoveryCheckpoint = "recovery-point"

    public init(dataDirectory: String, defaultConfig: LogConfig = LogConfig(), logger: Logger) throws(StorageError) {
        self.dataDirectory = dataDirectory
        self.defaultConfig = defaultConfig
        self.logger = logger
        do {
            try Sys.makeDirectories(dataDirectory)
        } catch {
            throw .io(error)
        }
        lockFd = try Self.lockDataDirectory(dataDirectory)
        do {
            let marker = dataDirectory + "/" + Self.cleanShutdownMarker
            wasCleanShutdown = Sys.exists(marker)
            if wasCleanShutdown {
                try Sys.unlink(marker)
                try Sys.syncDirectory(dataDirectory)
            }
        } catch {
            Sys.close(lockFd)
            throw .io(error)
        }
    }

    deinit { if lockFd >= 0 { Sys.close(lockFd) } }

    /// Takes the data directory's lock file (`.lock`, holding the owner's pid), so that two
    /// live brokers never open one data directory.
    private static func lockDataDirectory(_ directory: String) throws(StorageError) -> Int32 {
        let path = directory + "/" + lockFile
        let fd: Int32
        do {
            fd = try Sys.open(path, O_RDWR | O_CREAT)
        } catch {
            throw .io(error)
        }
        do {
            guard try Sys.tryLockExclusive(fd) else {
                let holder = String(decoding: ((try? Sys.readFile(path)) ?? []).filter { $0 != 0x0A }, as: UTF8.self)
                Sys.close(fd)
                throw StorageError.dataDirectoryInUse(path: directory, holder: holder.isEmpty ? "unknown" : holder)
            }
            let owner = Array("pid \(getpid())\n".utf8)
            try Sys.ftruncate(fd, 0)
            try owner.withUnsafeBytes { raw in Result { () throws(SystemError) in try Sys.pwriteAll(fd, raw, at: 0) } }.get()
        } catch let error as StorageError {
            throw error
        } catch {
            Sys.close(fd)
            throw .io(error as! SystemError)
        }
        return fd
    }

    /// The partitions that have a directory in the data directory.
    public func existingPartitions() throws(StorageError) -> [TopicPartition] {
        do {
            return try Sys.listDirectory(dataDirectory).compactMap(TopicPartition.init(directoryName:)).sorted()
        } catch {
            throw .io(error)
        }
    }

    public func log(_ tp: TopicPartition) -> PartitionLog? { lock.withLock { _ in logs[tp] } }

    /// Opens the log of `tp`, creating it if needed; recovers it first after an unclean shutdown.
    public func openLog(_ tp: TopicPartition, config: LogConfig? = nil, nowMs: Int64 = Sys.wallClockMs()) throws(StorageError) -> PartitionLog {
        if let log = self.log(tp) { return log }
        let directory = dataDirectory + "/" + tp.description
        let log: PartitionLog
        do {
            try Sys.makeDirectories(directory)
            log = try LogRecovery(directory: directory, topicPartition: tp, config: config ?? defaultConfig,
                                  clean: wasCleanShutdown, logger: logger, nowMs: nowMs).open()
        } catch let error as StorageError {
            throw error
        } catch let error as SystemError {
            throw .io(error)
        } catch {
            throw .invalidBatch("\(error)")
        }
        lock.withLock { _ in logs[tp] = log }
        return log
    }

    /// Removes a partition's log and its files (DeleteTopics; the disk worker calls it). Each
    /// file is cut to nothing before it is unlinked: freeing its blocks and dropping its cached
    /// pages takes seconds for gigabytes, and without the cut it would happen wherever the last
    /// descriptor is closed — on a shard, which drops the log's segments after this returns.
    public func deleteLog(_ tp: TopicPartition) throws(StorageError) {
        let directory = dataDirectory + "/" + tp.description
        lock.withLock { _ in logs[tp] = nil }
        DiskWorker.spares.waitUntilIdle()  // no spare of it is made or renamed after this
        do {
            let deleted = directory + ".deleted"
            try Sys.rename(directory, deleted)
            let names = try Sys.listDirectory(deleted)
            for name in names {
                try? Sys.truncate(deleted + "/" + name, 0)
                try Sys.unlink(deleted + "/" + name)
            }
            try Sys.unlink(deleted)  // fails for a directory; fall back below
        } catch {
            if error.errno != 21 /* EISDIR */ { logger.debug("delete log", metadata: ["error": "\(error)"]) }
        }
        _ = rmdirIgnoringErrors(directory + ".deleted")
    }

    private func rmdirIgnoringErrors(_ path: String) -> Bool {
        Sys.removeDirectory(path)
    }

    /// Writes each log's durable offset as its recovery point (crash recovery scans from there),
    /// here and now. Only logs whose durable offset moved since their last checkpoint are
    /// written. Shutdown and tools; shards use ``checkpointInBackground(_:)``.
    public func checkpoint(_ logs: [PartitionLog]? = nil) {
        writeCheckpoints(due(logs ?? lock.withLock({ _ in Array(self.logs.values) })))
    }

    /// Writes the recovery points of `logs` on the disk worker: each is a file write, an
    /// fdatasync, a rename and a directory fsync, which wait for the journal (and so for every
    /// dirty page ahead of it). Skipped while the previous background checkpoint is unfinished.
    /// Called by the shard owning `logs`.
    public func checkpointInBackground(_ logs: [PartitionLog]) {
        let points = due(logs)
        guard !points.isEmpty, checkpointsUnderway.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        DiskWorker.shared.run { [self] in
            writeCheckpoints(points)
            checkpointsUnderway.store(false, ordering: .releasing)
        }
    }

    /// The partitions whose durable offset (or, replicated, high watermark or leader epochs)
    /// moved since their last checkpoint, with the values to write (nil: unchanged).
    private func due(_ logs: [PartitionLog]) -> [Checkpoint] {
        lock.withLock { _ in
            logs.compactMap { log in
                let tp = log.topicPartition
                let durable = checkpointed[tp] == log.durableOffset ? nil : log.durableOffset
                let mark = log.replicatedHighWatermark.flatMap { checkpointedMarks[tp] == $0 ? nil : $0 }
                let epochs = log.epochStarts == (checkpointedEpochs[tp] ?? []) ? nil : log.epochStarts
                return durable == nil && mark == nil && epochs == nil ? nil : Checkpoint(tp: tp, durable: durable, mark: mark, epochs: epochs)
            }
        }
    }

    private struct Checkpoint {
        var tp: TopicPartition
        var durable: Int64?
        var mark: Int64?
        var epochs: [EpochStart]?
    }

    private func writeCheckpoints(_ points: [Checkpoint]) {
        for point in points {
            let tp = point.tp
            let directory = dataDirectory + "/" + tp.description + "/"
            // The epochs first: recovery trusts them up to the recovery point and scans after it.
            if let epochs = point.epochs {
                guard (try? Sys.writeFileAtomically(directory + PartitionLog.epochCheckpointFile, PartitionLog.encodeEpochs(epochs))) != nil else { continue }
                lock.withLock { _ in checkpointedEpochs[tp] = epochs }
            }
            if let durable = point.durable, (try? Sys.writeFileAtomically(directory + Self.recoveryCheckpoint, Array(String(durable).utf8))) != nil {
                lock.withLock { _ in checkpointed[tp] = durable }
            }
            if let mark = point.mark, (try? Sys.writeFileAtomically(directory + PartitionLog.highWatermarkFile, Array(String(mark).utf8))) != nil {
                lock.withLock { _ in checkpointedMarks[tp] = mark }
            }
        }
    }

    /// Checkpoints every log and writes the clean-shutdown marker. The logs must already be
    /// synced (``LogShard/syncAll(nowMs:)``) and no shard may touch them afterwards: the data
    /// directory and segment locks are released, so another instance may open them.
    public func close() throws(StorageError) {
        let open = Array(logs.values)
        logs.removeAll()
        defer { releaseLocks(open) }
        DiskWorker.spares.waitUntilIdle()  // adopted spares renamed, spares being made ready
        DiskWorker.shared.waitUntilIdle()  // background checkpoints and deletions first
        checkpoint(open)
        for log in open where log.durableOffset < log.logEndOffset {
            logger.warning("closing with unsynced data; not marking a clean shutdown", metadata: ["partition": "\(log.topicPartition)"])
            return
        }
        do {
            for log in open {
                for segment in log.segments { try segment.finishIndexesForShutdown() }
            }
            try Sys.writeFileAtomically(dataDirectory + "/" + Self.cleanShutdownMarker, Array("clean\n".utf8))
        } catch {
            throw .io(error)
        }
    }

    private func releaseLocks(_ open: [PartitionLog]) {
        for log in open {
            for segment in log.segments { segment.unlock() }
            if let spare = log.spare.discard() {
                for ext in [".index", ".timeindex", ".log"] { try? Sys.unlink(spare.path + ext) }
            }
        }
        if lockFd >= 0 {
            Sys.close(lockFd)
            lockFd = -1
        }
    }
}
