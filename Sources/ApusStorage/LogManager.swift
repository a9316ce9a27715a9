import ApusIO
import KafkaWire
import Logging
import Synchronization

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

    static let cleanShutdownMarker = ".apus-clean-shutdown"
    static let recoveryCheckpoint = "recovery-point"

    public init(dataDirectory: String, defaultConfig: LogConfig = LogConfig(), logger: Logger) throws(StorageError) {
        self.dataDirectory = dataDirectory
        self.defaultConfig = defaultConfig
        self.logger = logger
        do {
            try Sys.makeDirectories(dataDirectory)
            let marker = dataDirectory + "/" + Self.cleanShutdownMarker
            wasCleanShutdown = Sys.exists(marker)
            if wasCleanShutdown {
                try Sys.unlink(marker)
                try Sys.syncDirectory(dataDirectory)
            }
        } catch {
            throw .io(error)
        }
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

    /// Removes a partition's log and its files (DeleteTopics).
    public func deleteLog(_ tp: TopicPartition) throws(StorageError) {
        let directory = dataDirectory + "/" + tp.description
        lock.withLock { _ in logs[tp] = nil }
        do {
            let deleted = directory + ".deleted"
            try Sys.rename(directory, deleted)
            let names = try Sys.listDirectory(deleted)
            for name in names { try Sys.unlink(deleted + "/" + name) }
            try Sys.unlink(deleted)  // fails for a directory; fall back below
        } catch {
            if error.errno != 21 /* EISDIR */ { logger.debug("delete log", metadata: ["error": "\(error)"]) }
        }
        _ = rmdirIgnoringErrors(directory + ".deleted")
    }

    private func rmdirIgnoringErrors(_ path: String) -> Bool {
        Sys.removeDirectory(path)
    }

    /// Writes each log's durable offset as its recovery point (crash recovery scans from there).
    /// Only logs whose durable offset moved since their last checkpoint are written. Called by
    /// the shard owning `logs` (every log: at shutdown, once no shard runs).
    public func checkpoint(_ logs: [PartitionLog]? = nil) {
        for log in logs ?? lock.withLock({ _ in Array(self.logs.values) }) {
            let tp = log.topicPartition
            let durable = log.durableOffset
            guard lock.withLock({ _ in checkpointed[tp] != durable }) else { continue }
            let path = dataDirectory + "/" + tp.description + "/" + Self.recoveryCheckpoint
            if (try? Sys.writeFileAtomically(path, Array(String(durable).utf8))) != nil {
                lock.withLock { _ in checkpointed[tp] = durable }
            }
        }
    }

    /// Checkpoints every log and writes the clean-shutdown marker. The logs must already be
    /// synced (``LogShard/syncAll(nowMs:)``) and no shard may touch them afterwards.
    public func close() throws(StorageError) {
        checkpoint()
        for log in logs.values where log.durableOffset < log.logEndOffset {
            logger.warning("closing with unsynced data; not marking a clean shutdown", metadata: ["partition": "\(log.topicPartition)"])
            logs.removeAll()
            return
        }
        do {
            for log in logs.values {
                for segment in log.segments { try segment.finishIndexesForShutdown() }
            }
            logs.removeAll()
            try Sys.writeFileAtomically(dataDirectory + "/" + Self.cleanShutdownMarker, Array("clean\n".utf8))
        } catch {
            logs.removeAll()
            throw .io(error)
        }
    }
}
