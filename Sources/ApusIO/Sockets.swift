import CApusSys
#if canImport(Glibc)
import Glibc
#endif

/// Socket and readiness syscalls (epoll, eventfd, sendfile), wrapped once like `Sys`.
public enum Net {
    /// A listening TCP socket on `host:port` (IPv4), non-blocking, SO_REUSEADDR.
    /// - Returns: the descriptor and the port actually bound (for port 0).
    public static func listen(host: String, port: UInt16, backlog: Int32 = 1024) throws(SystemError) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError("socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        if inet_pton(AF_INET, host, &address.sin_addr) != 1 {
            Glibc.close(fd)
            throw SystemError("inet_pton", errno: EINVAL, host)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound != 0 {
            let e = errno
            Glibc.close(fd)
            throw SystemError("bind", errno: e, "\(host):\(port)")
        }
        if Glibc.listen(fd, backlog) != 0 {
            let e = errno
            Glibc.close(fd)
            throw SystemError("listen", errno: e)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }

    /// Accepts one connection (non-blocking, TCP_NODELAY); nil when none is pending.
    public static func accept(_ listener: Int32) throws(SystemError) -> (fd: Int32, peer: String)? {
        var peer = [CChar](repeating: 0, count: 64)
        while true {
            let fd = apus_accept(listener, &peer, peer.count)
            if fd >= 0 { return (fd, peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }) }
            let e = -fd
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SystemError("accept4", errno: e)
        }
    }

    /// Reads what is available; 0 means the peer closed, nil means nothing to read now.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SystemError("read", errno: e, "fd \(fd)")
        }
    }

    /// Writes as much of `iov` as the socket takes now; returns the bytes written (0 if full).
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) throws(SystemError) -> Int {
        while true {
            let n = Glibc.writev(fd, iov, count)
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            throw SystemError("writev", errno: e, "fd \(fd)")
        }
    }

    /// Sends file bytes to a socket without copying them through user space; returns the bytes
    /// sent (0 if the socket is full). A file shorter than the range is an error, not a stall.
    public static func sendfile(socket: Int32, file: Int32, offset: Int64, count: Int) throws(SystemError) -> Int {
        var off = offset
        while true {
            let n = apus_sendfile(socket, file, &off, count)
            if n == 0 && count > 0 { throw SystemError("sendfile", errno: EIO, "file ends before the range (fd \(file))") }
            if n >= 0 { return Int(n) }
            let e = Int32(-n)
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            throw SystemError("sendfile", errno: e, "fd \(file) → \(socket)")
        }
    }

    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Waits up to `timeoutMs` until `fd` is readable (or writable); false on timeout.
    public static func wait(_ fd: Int32, writable: Bool = false, timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        while true {
            let n = poll(&p, 1, timeoutMs)
            if n >= 0 { return n > 0 }
            if errno != EINTR { return false }
        }
    }

    /// Writes all of `bytes` to a non-blocking socket, waiting for room up to `timeoutMs` at a
    /// time; false if the peer went away or stalled.
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8], timeoutMs: Int32) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                guard wait(fd, writable: true, timeoutMs: timeoutMs) else { return false }
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return true
    }
}

/// An epoll instance plus an eventfd to wake it from other threads. One per event loop: only
/// `wake()` may be called from other threads.
public final class Poller: @unchecked Sendable {
    public let epollFd: Int32
    public let wakeFd: Int32
    private var events = [apus_poll_event](repeating: apus_poll_event(), count: 256)

    public struct Ready {
        public var fd: Int32
        public var readable: Bool
        public var writable: Bool
        public var hangup: Bool
    }

    public init() throws(SystemError) {
        epollFd = apus_epoll_create()
        if epollFd < 0 { throw SystemError("epoll_create1", errno: -epollFd) }
        wakeFd = apus_eventfd()
        if wakeFd < 0 { throw SystemError("eventfd", errno: -wakeFd) }
        try add(wakeFd, writable: false)
    }

    deinit {
        Glibc.close(epollFd)
        Glibc.close(wakeFd)
    }

    private func control(_ op: Int32, _ fd: Int32, writable: Bool, readable: Bool = true) throws(SystemError) {
        let mask = (readable ? UInt32(APUS_POLLIN | APUS_POLLRDHUP) : 0) | (writable ? UInt32(APUS_POLLOUT) : 0)
        let r = apus_epoll_ctl(epollFd, op, fd, mask)
        if r < 0 { throw SystemError("epoll_ctl", errno: -r, "fd \(fd)") }
    }

    public func add(_ fd: Int32, writable: Bool) throws(SystemError) { try control(1, fd, writable: writable) }
    /// Changes what `fd` is watched for; a connection whose responses back up stops being read.
    public func modify(_ fd: Int32, writable: Bool, readable: Bool = true) throws(SystemError) {
        try control(3, fd, writable: writable, readable: readable)
    }
    public func remove(_ fd: Int32) { _ = apus_epoll_ctl(epollFd, 2, fd, 0) }

    /// Wakes a `wait` in progress (any thread).
    public func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFd, &one, 8)
    }

    /// Waits up to `timeoutMs` (-1: forever) and returns the ready descriptors. The wake
    /// descriptor is drained and not returned.
    public func wait(timeoutMs: Int32) -> [Ready] {
        let n = events.withUnsafeMutableBufferPointer { apus_epoll_wait(epollFd, $0.baseAddress, Int32($0.count), timeoutMs) }
        guard n > 0 else { return [] }
        var ready: [Ready] = []
        ready.reserveCapacity(Int(n))
        let readMask = UInt32(APUS_POLLIN | APUS_POLLHUP | APUS_POLLERR)
        let hangMask = UInt32(APUS_POLLHUP | APUS_POLLERR | APUS_POLLRDHUP)
        for i in 0..<Int(n) {
            let e = events[i]
            if e.fd == wakeFd {
                var value: UInt64 = 0
                _ = Glibc.read(wakeFd, &value, 8)
                continue
            }
            ready.append(Ready(fd: e.fd, readable: e.events & readMask != 0,
                               writable: e.events & UInt32(APUS_POLLOUT) != 0, hangup: e.events & hangMask != 0))
        }
        return ready
    }
}

extension Net {
    /// Prepares a socket accepted through io_uring (TCP_NODELAY) and returns its peer address.
    public static func accepted(_ fd: Int32) -> String {
        var peer = [CChar](repeating: 0, count: 64)
        _ = apus_socket_accepted(fd, &peer, peer.count)
        return peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Shuts a socket down both ways, so that operations in flight on it complete.
    public static func shutdown(_ fd: Int32) { _ = apus_shutdown(fd) }
}
