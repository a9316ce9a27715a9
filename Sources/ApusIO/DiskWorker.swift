import CApusSys
import Dispatch
import Synchronization

/// Runs file-system work that may wait on the disk — recovery-point files, directory syncs,
/// renames and deletions, POSIX-backend syncs — on a background thread, so that no shard
/// thread ever waits for it. Work items run one at a time, in the order given. Thread-safe.
public final class DiskWorker: Sendable {
    /// Housekeeping shared by every shard (checkpoints, retention, topic files).
    public static let shared = DiskWorker(label: "apus.disk")
    /// Spare segments: their files made and reserved (up to `segment.bytes`, seconds under
    /// writeback), renamed once a roll adopts one, and what a rolled segment did not use given
    /// back. Apart from ``shared``, whose checkpoints wait for the journal (measured: a spare
    /// asked for half a segment ahead queued behind one and fast partitions rolled without it,
    /// creating their files on the shard). Work on ``shared`` that removes a partition's files
    /// waits for this worker first (``unlink(_:after:)``), so that a rename queued here never
    /// lands after it.
    public static let spares = DiskWorker(label: "apus.spares")
    /// Written data dropped from the page cache behind the appends (`page.cache.max.bytes`):
    /// each job waits for its writeback, so it has a thread of its own.
    public static let dropBehind = DiskWorker(label: "apus.drop-behind")
    /// CPU work too long for a shard's turn (a PLAIN password's PBKDF2): no disk at all, but the
    /// same rule — the shard carries on and takes the result back as a job.
    public static let compute = DiskWorker(label: "apus.compute")
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label, qos: .utility)
    }

    public func run(_ work: @escaping @Sendable () -> Void) {
        queue.async(execute: work)
    }

    /// Deletes files (retention, deleted topics), once the work queued on `other` so far ran.
    public func unlink(_ paths: [String], after other: DiskWorker? = nil) {
        guard !paths.isEmpty else { return }
        run {
            other?.waitUntilIdle()
            for path in paths { try? Sys.unlink(path) }
        }
    }

    /// Closes descriptors whose last close may free a deleted file's blocks.
    public func close(_ fds: [Int32]) {
        run { fds.forEach(Sys.close) }
    }

    /// Blocks until every item queued so far has run (tests, shutdown).
    public func waitUntilIdle() {
        queue.sync {}
    }
}

/// The shard-thread contract, checked at run time: a thread marked as a shard's calls no
/// `Sys` function that may wait on the disk (a sync, a directory change, a file creation or
/// deletion, a truncation) outside a declared exception. Each such call is counted and the
/// first few are remembered, so that tests and the shutdown report can show them.
public enum ShardThreadContract {
    private static let violationCount = Atomic<Int>(0)
    private static let examples = Mutex<[String]>([])
    private static let exceptionCounts = Mutex<[String: Int]>([:])

    /// Marks (or unmarks) the calling thread as a shard thread.
    public static func markCurrentThread(_ isShard: Bool) { apus_set_shard_thread(isShard ? 1 : 0) }

    /// Runs `body` with disk waits allowed on a shard thread: a documented exception, counted
    /// by `why` when the calling thread is a shard's (``exceptions``).
    public static func allowingDiskWait<T, E: Error>(_ why: StaticString, _ body: () throws(E) -> T) throws(E) -> T {
        if apus_is_shard_thread() != 0 { exceptionCounts.withLock { $0["\(why)", default: 0] += 1 } }
        apus_allow_disk_wait(1)
        defer { apus_allow_disk_wait(-1) }
        return try body()
    }

    /// Called by each `Sys` function that may wait on the disk.
    @inline(__always)
    static func note(_ call: StaticString, _ context: @autoclosure () -> String) {
        guard apus_disk_wait_forbidden() != 0 else { return }
        violationCount.add(1, ordering: .relaxed)
        let example = "\(call) \(context())"
        examples.withLock { if $0.count < 8 { $0.append(example) } }
    }

    /// The declared exceptions shard threads took so far (all threads), by reason: each is a
    /// turn that may have waited on the disk within the contract.
    public static var exceptions: [String: Int] { exceptionCounts.withLock { $0 } }

    /// Declared exceptions the calling thread took while marked as a shard's (tests).
    public static var exceptionsOnThisThread: Int { apus_disk_wait_exceptions_here() }

    /// Calls that broke the contract so far (all threads), and the first few of them.
    public static var violations: (count: Int, examples: [String]) {
        (violationCount.load(ordering: .relaxed), examples.withLock { $0 })
    }
}
