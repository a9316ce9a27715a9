internal import CURing

/// Group commit through io_uring: every write of a turn goes out in one submission; syncs are
/// queued (IORING_FSYNC_DATASYNC) and reaped later, overlapping with the next writes.
///
/// Buffered writes on ext4 are handed to io-wq workers, so without syncs this costs more CPU
/// than `pwritev` (see SYSTEMS-NOTES.md); its gain is the overlapped fsync.
public final class UringAppendBackend: AppendBackend {
    public let name = "uring"
    private let ring: UnsafeMutablePointer<io_uring>
    private var iovecs: UnsafeMutablePointer<iovec>
    private var iovecCapacity = 256
    private var completed: [SyncCompletion] = []
    public private(set) var syncsInFlight = 0

    private static let syncBit: UInt64 = 1 << 63
    private static let probeTag: UInt64 = (1 << 62)

    public init(entries: UInt32 = 64) throws(SystemError) {
        ring = .allocate(capacity: 1)
        iovecs = .allocate(capacity: iovecCapacity)
        let r = io_uring_queue_init(entries, ring, 0)
        if r < 0 {
            ring.deallocate()
            iovecs.deallocate()
            throw SystemError("io_uring_queue_init", errno: -r)
        }
        // Probe with a NOP round trip: seccomp filters can allow setup and still fail here.
        do throws(SystemError) {
            guard let sqe = io_uring_get_sqe(ring) else { throw SystemError("io_uring_get_sqe", errno: EBUSY) }
            io_uring_prep_nop(sqe)
            io_uring_sqe_set_data64(sqe, Self.probeTag)
            let submitted = io_uring_submit_and_wait(ring, 1)
            if submitted < 0 { throw SystemError("io_uring_submit_and_wait", errno: -submitted, "NOP probe") }
            var cqe: UnsafeMutablePointer<io_uring_cqe>?
            let w = io_uring_wait_cqe(ring, &cqe)
            if w < 0 { throw SystemError("io_uring_wait_cqe", errno: -w, "NOP probe") }
            let res = cqe!.pointee.res
            io_uring_cqe_seen(ring, cqe)
            if res < 0 { throw SystemError("io_uring NOP", errno: -res) }
        } catch {
            io_uring_queue_exit(ring)
            ring.deallocate()
            iovecs.deallocate()
            throw error
        }
    }

    deinit {
        _ = reapSyncs(wait: true)
        io_uring_queue_exit(ring)
        ring.deallocate()
        iovecs.deallocate()
    }

    private func nextSQE() -> UnsafeMutablePointer<io_uring_sqe> {
        while true {
            if let sqe = io_uring_get_sqe(ring) { return sqe }
            _ = io_uring_submit(ring)  // the submission queue is full: hand it over and retry
        }
    }

    public func write(_ writes: [FileWrite]) -> [SystemError?] {
        var results = [SystemError?](repeating: nil, count: writes.count)
        // Lay out every iovec first: they must not move while the kernel holds them.
        let needed = writes.reduce(0) { $0 + $1.buffers.count }
        if needed > iovecCapacity {
            iovecs.deallocate()
            iovecCapacity = max(needed, iovecCapacity * 2)
            iovecs = .allocate(capacity: iovecCapacity)
        }
        var expected = [Int](repeating: 0, count: writes.count)
        var next = 0
        var pending = 0
        for (i, w) in writes.enumerated() {
            var start = next
            var offset = w.offset
            var chunkBytes = 0
            func flushChunk() {
                guard next > start else { return }
                let sqe = nextSQE()
                io_uring_prep_writev(sqe, w.fd, iovecs + start, UInt32(next - start), UInt64(offset))
                io_uring_sqe_set_data64(sqe, UInt64(i))
                pending += 1
                offset += Int64(chunkBytes)
                start = next
                chunkBytes = 0
            }
            for b in w.buffers where b.count > 0 {
                iovecs[next] = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
                next += 1
                chunkBytes += b.count
                expected[i] += b.count
                if next - start == 1024 { flushChunk() }  // UIO_MAXIOV
            }
            flushChunk()
        }
        var written = [Int](repeating: 0, count: writes.count)
        while pending > 0 {
            let r = io_uring_submit_and_wait(ring, 1)
            if r < 0 && r != -EINTR {
                // The ring itself failed: report every unfinished write.
                for i in writes.indices where results[i] == nil && written[i] < expected[i] {
                    results[i] = SystemError("io_uring_submit_and_wait", errno: -r)
                }
                return results
            }
            drain { tag, res in
                let i = Int(tag)
                pending -= 1
                if res < 0 {
                    if results[i] == nil { results[i] = SystemError("io_uring writev", errno: -res, "fd \(writes[i].fd)") }
                } else {
                    written[i] += Int(res)
                }
            }
        }
        // A short write (rare: signals, quotas) is finished synchronously.
        for (i, w) in writes.enumerated() where results[i] == nil && written[i] < expected[i] {
            do {
                try finishShortWrite(w, skipping: written[i])
            } catch {
                results[i] = error
            }
        }
        return results
    }

    private func finishShortWrite(_ w: FileWrite, skipping done: Int) throws(SystemError) {
        // Chunked submissions complete independently, so only a trailing gap can be missing
        // when every chunk reported success; rewrite the whole range to be safe.
        _ = done
        var offset = w.offset
        for b in w.buffers where b.count > 0 {
            try Sys.pwriteAll(w.fd, b, at: offset)
            offset += Int64(b.count)
        }
    }

    /// Consumes every available completion; writes go to `onWrite`, syncs to `completed`.
    private func drain(_ onWrite: (UInt64, Int32) -> Void) {
        var cqe: UnsafeMutablePointer<io_uring_cqe>?
        while io_uring_peek_cqe(ring, &cqe) == 0, let c = cqe {
            let tag = io_uring_cqe_get_data64(c)
            let res = c.pointee.res
            io_uring_cqe_seen(ring, c)
            if tag & Self.syncBit != 0 {
                syncsInFlight -= 1
                completed.append(SyncCompletion(token: tag & ~Self.syncBit, errno: res < 0 ? -res : 0))
            } else {
                onWrite(tag, res)
            }
        }
    }

    public func beginSync(fd: Int32, token: UInt64) {
        precondition(token & Self.syncBit == 0, "sync tokens use 63 bits")
        let sqe = nextSQE()
        io_uring_prep_fsync(sqe, fd, UInt32(IORING_FSYNC_DATASYNC))
        io_uring_sqe_set_data64(sqe, token | Self.syncBit)
        syncsInFlight += 1
        _ = io_uring_submit(ring)
    }

    public func reapSyncs(wait: Bool) -> [SyncCompletion] {
        drain { _, _ in }
        while wait && syncsInFlight > 0 {
            var cqe: UnsafeMutablePointer<io_uring_cqe>?
            let r = io_uring_wait_cqe(ring, &cqe)
            if r < 0 && r != -EINTR { break }
            drain { _, _ in }
        }
        defer { completed.removeAll(keepingCapacity: true) }
        return completed
    }
}
