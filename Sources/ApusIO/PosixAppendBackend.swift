#if canImport(Glibc)
import Glibc
#endif

/// Group commit with `pwritev` (one call per file write, looping over short writes) and
/// synchronous `fdatasync`.
public final class PosixAppendBackend: AppendBackend {
    public let name = "posix"
    private var completed: [SyncCompletion] = []
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
        do {
            try Sys.fdatasync(fd)
            completed.append(SyncCompletion(token: token, errno: 0))
        } catch {
            completed.append(SyncCompletion(token: token, errno: error.errno))
        }
    }

    public func reapSyncs(wait: Bool) -> [SyncCompletion] {
        defer { completed.removeAll(keepingCapacity: true) }
        return completed
    }

    public var syncsInFlight: Int { completed.count }
}
