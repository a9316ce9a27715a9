import CApusUring
#if canImport(Glibc)
import Glibc
#endif

/// Group commit through io_uring: every write of a turn goes out in one submission; syncs are
/// queued (IORING_FSYNC_DATASYNC) and reaped later, overlapping with the next writes.
///
/// Buffered writes on ext4 are handed to io-wq workers, so without syncs this costs more CPU
/// than `pwritev` (see SYSTEMS-NOTES.md); its gain is the overlapped fsync.
public final class UringAppendBackend: AppendBackend {
    public let name = "uring"
    public let kind = IOBackendKind.uring
    private let ring: OpaquePointer
    private var iovecs: UnsafeMutablePointer<apus_iovec>
    private var iovecCapacity = 256
    private var completed: [SyncCompletion] = []
    public private(set) var syncsInFlight = 0

    private static let syncBit: UInt64 = 1 << 63
    private static let probeTag: UInt64 = 1 << 62
    /// Write tags are (generation << 32 | index): a completion left over from an earlier
    /// `write` call (after an error) is recognised and ignored.
    private var generation: UInt64 = 0

    public init(entries: UInt32 = 64) throws(SystemError) {
        var error: Int32 = 0
        guard let ring = apus_ring_create(entries, &error) else { throw SystemError("io_uring_queue_init", errno: error) }
        self.ring = ring
        iovecs = .allocate(capacity: iovecCapacity)
        // Probe with a NOP round trip: seccomp filters can allow setup and still fail here.
        var tag: UInt64 = 0
        var result: Int32 = 0
        let prepared = apus_ring_prep_nop(ring, Self.probeTag)
        let submitted = prepared < 0 ? prepared : apus_ring_submit_and_wait(ring, 1)
        let got = submitted < 0 ? submitted : apus_ring_next_completion(ring, 1, &tag, &result)
        if got <= 0 || result < 0 || tag != Self.probeTag {
            apus_ring_destroy(ring)
            iovecs.deallocate()
            let errno = got < 0 ? -got : (result < 0 ? -result : EIO)
            throw SystemError("io_uring NOP probe", errno: errno)
        }
    }

    deinit {
        _ = reapSyncs(wait: true)
        apus_ring_destroy(ring)
        iovecs.deallocate()
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
        generation = (generation + 1) & 0x3FFF_FFFF
        let tagBase = generation << 32
        var expected = [Int](repeating: 0, count: writes.count)
        var written = [Int](repeating: 0, count: writes.count)
        var next = 0
        var pending = 0
        for (i, w) in writes.enumerated() {
            var start = next
            var offset = w.offset
            var chunkBytes = 0
            func flushChunk() {
                guard next > start else { return }
                let rc = apus_ring_prep_writev(ring, w.fd, iovecs + start, UInt32(next - start), UInt64(offset), tagBase | UInt64(i))
                if rc < 0 {
                    results[i] = SystemError("io_uring writev", errno: -rc)
                } else {
                    pending += 1
                }
                offset += Int64(chunkBytes)
                start = next
                chunkBytes = 0
            }
            for b in w.buffers where b.count > 0 {
                iovecs[next] = apus_iovec(base: UnsafeMutableRawPointer(mutating: b.baseAddress), length: b.count)
                next += 1
                chunkBytes += b.count
                expected[i] += b.count
                if next - start == 1024 { flushChunk() }  // UIO_MAXIOV
            }
            flushChunk()
        }
        var submitted = true
        while pending > 0 {
            if submitted {
                let rc = apus_ring_submit_and_wait(ring, 1)
                // EBUSY/EAGAIN: the completion queue is full; reaping below makes room.
                if rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN {
                    for i in writes.indices where results[i] == nil { results[i] = SystemError("io_uring_submit_and_wait", errno: -rc) }
                    return results
                }
            }
            var tag: UInt64 = 0
            var result: Int32 = 0
            var progressed = false
            while apus_ring_next_completion(ring, 0, &tag, &result) == 1 {
                progressed = true
                if tag & Self.syncBit != 0 {
                    syncsInFlight -= 1
                    completed.append(SyncCompletion(token: tag & ~Self.syncBit, errno: result < 0 ? -result : 0))
                    continue
                }
                guard tag & ~0xFFFF_FFFF == tagBase else { continue }  // stale, from an earlier call
                let i = Int(tag & 0xFFFF_FFFF)
                pending -= 1
                if result < 0 {
                    if results[i] == nil { results[i] = SystemError("io_uring writev", errno: -result, "fd \(writes[i].fd)") }
                } else {
                    written[i] += Int(result)
                }
            }
            submitted = !progressed || pending > 0
        }
        // A short write (rare: signals, quotas) is redone synchronously; rewriting the same
        // bytes at the same offsets is harmless.
        for (i, w) in writes.enumerated() where results[i] == nil && written[i] < expected[i] {
            do throws(SystemError) {
                var offset = w.offset
                for b in w.buffers where b.count > 0 {
                    try Sys.pwriteAll(w.fd, b, at: offset)
                    offset += Int64(b.count)
                }
            } catch {
                results[i] = error
            }
        }
        return results
    }

    public func beginSync(fd: Int32, token: UInt64) {
        precondition(token & Self.syncBit == 0, "sync tokens use 63 bits")
        if apus_ring_prep_fdatasync(ring, fd, token | Self.syncBit) < 0 {
            // No submission slot even after submitting: sync now rather than lose it.
            completed.append(SyncCompletion(token: token, errno: syncHere(fd, "no submission slot for a sync")))
            return
        }
        syncsInFlight += 1
        _ = apus_ring_submit(ring)
    }

    public func reapSyncs(wait: Bool) -> [SyncCompletion] {
        var tag: UInt64 = 0
        var result: Int32 = 0
        while syncsInFlight > 0 {
            let got = apus_ring_next_completion(ring, wait ? 1 : 0, &tag, &result)
            if got == 0 { break }
            if got < 0 {
                if got == -EINTR { continue }
                break
            }
            if tag & Self.syncBit != 0 {
                syncsInFlight -= 1
                completed.append(SyncCompletion(token: tag & ~Self.syncBit, errno: result < 0 ? -result : 0))
            }
        }
        defer { completed.removeAll(keepingCapacity: true) }
        return completed
    }
}
