import ApusIO

/// Why a storage operation failed. The broker maps these to Kafka error codes
/// (KAFKA_STORAGE_ERROR, OFFSET_OUT_OF_RANGE, CORRUPT_MESSAGE).
public enum StorageError: Error, Equatable, CustomStringConvertible {
    /// A write, sync or file operation failed (ENOSPC included); the log stayed consistent.
    case io(SystemError)
    /// The offset is below the log start or above the log end.
    case offsetOutOfRange(requested: Int64, logStart: Int64, logEnd: Int64)
    /// A stored batch failed validation when read; nothing at or after it is served.
    case corruptBatch(segment: Int64, position: Int64, reason: String)
    /// The batch handed to append is not a RecordBatch v2 the storage can take.
    case invalidBatch(String)
    /// A previous sync failed: the partition takes no more writes until restarted.
    case offline(String)
    /// Another live process holds the data directory.
    case dataDirectoryInUse(path: String, holder: String)

    public var description: String {
        switch self {
        case .io(let e): "I/O error: \(e)"
        case .offsetOutOfRange(let o, let s, let e): "offset \(o) out of range [\(s), \(e)]"
        case .corruptBatch(let seg, let pos, let r): "corrupt batch in segment \(seg) at byte \(pos): \(r)"
        case .invalidBatch(let r): "invalid batch: \(r)"
        case .offline(let r): "partition offline: \(r)"
        case .dataDirectoryInUse(let path, let holder):
            "data directory \(path) is in use by another process (\(holder)); two brokers cannot share one data directory"
        }
    }
}
