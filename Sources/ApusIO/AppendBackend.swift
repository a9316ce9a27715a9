#if canImport(Glibc)
import Glibc
#endif

/// One write of a group commit: `buffers` gathered to `fd` at `offset`.
/// The buffers must stay valid until ``AppendBackend/write(_:)`` returns.
public struct FileWrite {
    public var fd: Int32
    public var offset: Int64
    public var buffers: [UnsafeRawBufferPointer]

    public init(fd: Int32, offset: Int64, buffers: [UnsafeRawBufferPointer]) {
        self.fd = fd
        self.offset = offset
        self.buffers = buffers
    }

    public var byteCount: Int { buffers.reduce(0) { $0 + $1.count } }
}

/// A finished sync: its token and the errno it failed with (0 on success).
public struct SyncCompletion: Equatable, Sendable {
    public var token: UInt64
    public var errno: Int32
}

/// Which append path to use: chosen at start-up (`io.backend`).
public enum IOBackendKind: String, Sendable, CaseIterable {
    case auto, uring, posix
}

/// Writes a shard's group commit and makes files durable. One instance per shard thread;
/// not thread-safe.
///
/// `write` returns once every byte is in the page cache (or the first error). `beginSync`
/// starts an fdatasync whose completion is observed later through `reapSyncs`, so that with
/// io_uring the sync overlaps with the next turn's writes; the POSIX backend syncs at once.
public protocol AppendBackend: AnyObject {
    var name: String { get }
    /// Which backend this is (never `auto`).
    var kind: IOBackendKind { get }
    /// Performs all writes (one submission, or one `pwritev` per write); per write, nil on
    /// success or the error that stopped it (bytes before it may have been written).
    func write(_ writes: [FileWrite]) -> [SystemError?]
    /// Starts an fdatasync of `fd`; `token` comes back in a ``SyncCompletion``.
    func beginSync(fd: Int32, token: UInt64)
    /// Finished syncs; with `wait`, blocks until every sync begun has finished.
    func reapSyncs(wait: Bool) -> [SyncCompletion]
    /// Syncs begun and not yet reaped.
    var syncsInFlight: Int { get }
}

/// An fdatasync on the calling (shard) thread: a backend's declared exception when it has
/// nowhere else to send the sync. Returns 0 or the errno.
func syncHere(_ fd: Int32, _ why: StaticString) -> Int32 {
    do {
        try ShardThreadContract.allowingDiskWait(why) { () throws(SystemError) in try Sys.fdatasync(fd) }
        return 0
    } catch {
        return error.errno
    }
}

/// Chooses the backend. `auto` takes the faster one for the workload as measured on this
/// machine kind (Results/2026-11-21-storage-benchmarks): POSIX when nothing is synced on the
/// append path (buffered io_uring writes go through io-wq and cost more), io_uring when syncs
/// overlap with writes; it probes io_uring with a NOP round trip and falls back to POSIX.
/// - Parameter syncsOnAppendPath: whether acknowledgements wait for fdatasync.
/// - Returns: the backend and a reason to log when `auto` did not pick io_uring.
public func makeAppendBackend(_ kind: IOBackendKind, syncsOnAppendPath: Bool = true, queueDepth: UInt32 = 64) throws(SystemError) -> (AppendBackend, fallbackReason: String?) {
    switch kind {
    case .posix:
        return (PosixAppendBackend(), nil)
    case .uring:
        return (try UringAppendBackend(entries: queueDepth), nil)
    case .auto:
        guard syncsOnAppendPath else {
            return (PosixAppendBackend(), "io.backend auto: posix, the faster path when appends are not synced")
        }
        do {
            return (try UringAppendBackend(entries: queueDepth), nil)
        } catch {
            return (PosixAppendBackend(), "io_uring unavailable (\(error)); using the POSIX backend")
        }
    }
}
