#if canImport(Glibc)
import Glibc
#endif

import Synchronization

/// Group commit with `pwritev` (one call per file write, looping over short writes); each
/// `fdatasync` runs on the backend's own disk worker thread, so that a sync that waits on a
/// busy disk (0.3–1.9 s when the page cache holds gigabytes of dirty data) never stops the
/// shard. Syncs of one backend run one at a time, in order.
public final class PosixAppendBackend: AppendBackend {
    public let name = "posix"
    public let kind = IOBackendKind.posix
    private let syncer = DiskWorker(label: "apus.posix-sync")
    /// Syncs finished on the worker, not yet reaped.
    private final class Finished: Sendable {
        let list = Mutex<[SyncCompletion]>([])
    }
    private let finished = Finished()
    public private(set) var syncsInFlight = 0
    private var iov: [iovec] = []

    public init() {}

    public func write(_ writes: [FileWrite]) -> [SystemError?] {
        writes.map { w -> SystemError? in
            do throws(SystemError) {
                try writeAll(w)
                return nil
            } catch {
                return error
            }
        }
    }

    private func writeAll(_ w: FileWrite) throws(SystemError) {
        var offset = w.offset
        var pending = w.buffers.filter { $0.count > 0 }
        while !pending.isEmpty {
            // IOV_MAX is 1024 on Linux.
            let chunk = pending.prefix(1024)
            iov.removeAll(keepingCapacity: true)
            for b in chunk { iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)) }
            let n = try iov.withUnsafeBufferPointer { p in
                Result { () throws(SystemError) in try Sys.pwritev(w.fd, p.baseAddress!, Int32(p.count), at: offset) }
            }.get()
            offset += Int64(n)
            // Drop what was written, keep the rest (short writes are rare but legal).
            var left = n
            while left > 0, let first = pending.first {
                if first.count <= left {
                    left -= first.count
                    pending.removeFirst()
                } else {
                    pending[0] = UnsafeRawBufferPointer(rebasing: first[left...])
                    left = 0
                }
            }
            if n == 0 { throw SystemError("pwritev", errno: EIO, "wrote 0 bytes") }
        }
    }

    public func beginSync(fd: Int32, token: UInt64) {
        syncsInFlight += 1
        // The worker syncs a duplicate: the segment may close its descriptor (retention, a
        // deleted topic) before the sync runs, and the number could then name another file.
        guard let copy = try? Sys.duplicate(fd) else {
            // Out of descriptors: sync here rather than fail the partition.
            let e = syncHere(fd, "no descriptor left for a background sync")
            finished.list.withLock { $0.append(SyncCompletion(token: token, errno: e)) }
            return
        }
        syncer.run { [finished] in
            var completion = SyncCompletion(token: token, errno: 0)
            do throws(SystemError) {
                try Sys.fdatasync(copy)
            } catch {
                completion.errno = error.errno
            }
            Sys.close(copy)
            finished.list.withLock { $0.append(completion) }
        }
    }

    public func reapSyncs(wait: Bool) -> [SyncCompletion] {
        if wait && syncsInFlight > 0 { syncer.waitUntilIdle() }
        let done = finished.list.withLock { list -> [SyncCompletion] in
            defer { list.removeAll(keepingCapacity: true) }
            return list
        }
        syncsInFlight -= done.count
        return done
    }
}
