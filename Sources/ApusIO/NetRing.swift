import CApusSys
import CApusUring
#if canImport(Glibc)
import Glibc
#endif

/// A shard's network event loop on io_uring: accept, receive, send and poll operations are
/// queued during a turn and submitted together by ``wait(timeoutMs:)``, which returns their
/// completions. Other threads wake it through an eventfd read by the ring. One per shard;
/// only ``wake()`` may be called from other threads.
public final class NetRing: @unchecked Sendable {
    private let ring: OpaquePointer
    private let wakeFd: Int32
    private let wakeBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private var completions: [Completion] = []

    /// The tag of the ring's own eventfd read (never returned). Not UInt64.max: liburing uses
    /// that for the timeouts it queues itself on kernels without EXT_ARG.
    static let wakeTag = UInt64.max - 1

    public struct Completion {
        /// The tag the operation was queued with.
        public var tag: UInt64
        /// Bytes or a new descriptor, or -errno.
        public var result: Int32
    }

    public init(entries: UInt32 = 1024) throws(SystemError) {
        var error: Int32 = 0
        guard let ring = apus_ring_create(entries, &error) else { throw SystemError("io_uring_queue_init", errno: error) }
        self.ring = ring
        wakeFd = apus_eventfd()
        if wakeFd < 0 {
            apus_ring_destroy(ring)
            throw SystemError("eventfd", errno: -wakeFd)
        }
        armWake()
    }

    deinit {
        apus_ring_destroy(ring)
        Glibc.close(wakeFd)
        wakeBuffer.deallocate()
    }

    private func armWake() { _ = apus_ring_prep_read(ring, wakeFd, wakeBuffer, 8, Self.wakeTag) }

    /// Wakes a ``wait(timeoutMs:)`` in progress (any thread).
    public func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFd, &one, 8)
    }

    /// Accepts one connection on `listener`.
    public func accept(_ listener: Int32, tag: UInt64) { _ = apus_ring_prep_accept(ring, listener, tag) }

    /// Receives into `buffer` (which must stay valid until the completion).
    public func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, tag: UInt64) {
        _ = apus_ring_prep_recv(ring, fd, buffer.baseAddress, buffer.count, tag)
    }

    /// Sends `count` buffers of `iov` (which must stay valid until the completion).
    public func send(_ fd: Int32, _ iov: UnsafePointer<iovec>, count: Int32, tag: UInt64) {
        iov.withMemoryRebound(to: apus_iovec.self, capacity: Int(count)) { _ = apus_ring_prep_sendv(ring, fd, $0, UInt32(count), tag) }
    }

    /// Completes when `fd` is writable (or readable).
    public func poll(_ fd: Int32, writable: Bool, tag: UInt64) { _ = apus_ring_prep_poll(ring, fd, writable ? 1 : 0, tag) }

    /// Submits everything queued since the last call in one system call, waits up to
    /// `timeoutMs` for a completion, and returns every completion available.
    public func wait(timeoutMs: Int32) -> [Completion] {
        let rc = apus_ring_submit_and_wait_ms(ring, timeoutMs)
        _ = rc  // -ETIME (nothing completed in time) and -EINTR just mean: look at what is there
        completions.removeAll(keepingCapacity: true)
        var tag: UInt64 = 0
        var result: Int32 = 0
        while apus_ring_peek_completion(ring, &tag, &result) == 1 {
            if tag == Self.wakeTag {
                armWake()
                continue
            }
            completions.append(Completion(tag: tag, result: result))
        }
        return completions
    }
}
