#if canImport(Glibc)
import Glibc
#endif

/// One blocking TCP client connection (`TCP_NODELAY`, 4 MiB send buffer): what a load
/// generator's producer thread uses. Not thread-safe: one owner thread.
public final class ClientSocket {
    public let fd: Int32

    /// Connects to `host:port` (an IPv4 literal or `localhost`). With `timeoutMs` > 0 the connect,
    /// and any blocking read or write that makes no progress for that long, fails (ETIMEDOUT): a
    /// broker that is stopped (SIGSTOP) or wedged, or a host that drops packets, must not hang its
    /// client forever.
    public init(host: String, port: UInt16, timeoutMs: Int = 0) throws(SystemError) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let literal = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, literal, &address.sin_addr) == 1 else {
            throw SystemError("inet_pton", errno: EINVAL, "\(host): only IPv4 literals (or localhost) are supported")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        let flags = fcntl(fd, F_GETFL)
        if timeoutMs > 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        var ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var err = ok == 0 ? 0 : errno
        if timeoutMs > 0 && ok != 0 && err == EINPROGRESS {
            // Connected (or refused) when writable; nothing within the timeout: ETIMEDOUT.
            var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready = poll(&waiting, 1, Int32(timeoutMs))
            while ready < 0 && errno == EINTR { ready = poll(&waiting, 1, Int32(timeoutMs)) }
            var length = socklen_t(MemoryLayout<Int32>.size)
            if ready > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) == 0 {
                ok = err == 0 ? 0 : -1
            } else {
                (ok, err) = (-1, ready == 0 ? ETIMEDOUT : errno)
            }
        }
        guard ok == 0 else {
            _ = Glibc.close(fd)
            throw SystemError("connect", errno: err, "\(host):\(port)")
        }
        if timeoutMs > 0 { _ = fcntl(fd, F_SETFL, flags) }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var bufferSize: Int32 = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufferSize, socklen_t(MemoryLayout<Int32>.size))
        if timeoutMs > 0 {
            var limit = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        self.fd = fd
    }

    deinit { _ = Glibc.close(fd) }

    /// Writes every byte of `iov[0..<count]` with `sendmsg` (modifies the iovecs while doing so).
    public func writeAll(_ iov: UnsafeMutablePointer<iovec>, count: Int) throws(SystemError) {
        var first = 0
        while first < count {
            var message = msghdr()
            message.msg_iov = iov + first
            message.msg_iovlen = count - first
            let n = sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw SystemError("sendmsg", errno: ETIMEDOUT, "the broker took nothing for the socket's timeout") }
                throw SystemError("sendmsg", errno: errno)
            }
            var left = n
            while left > 0 && first < count {
                let len = iov[first].iov_len
                if left >= len {
                    left -= len
                    first += 1
                } else {
                    iov[first].iov_base = iov[first].iov_base! + left
                    iov[first].iov_len = len - left
                    left = 0
                }
            }
            while first < count && iov[first].iov_len == 0 { first += 1 }
        }
    }

    /// Reads what is available into `buffer`; with `wait` false returns 0 when nothing is.
    /// The peer closing the connection is an error (ECONNRESET).
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, wait: Bool) throws(SystemError) -> Int {
        while true {
            let n = recv(fd, buffer, count, wait ? 0 : Int32(MSG_DONTWAIT))
            if n > 0 { return n }
            if n == 0 { throw SystemError("recv", errno: ECONNRESET, "connection closed by the broker") }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                // Blocking, EAGAIN means the socket's receive timeout passed.
                if wait { throw SystemError("recv", errno: ETIMEDOUT, "no answer within the socket's timeout") }
                return 0
            }
            throw SystemError("recv", errno: errno)
        }
    }
}

extension Sys {
    /// Sleeps the calling thread.
    public static func sleep(microseconds: UInt32) {
        _ = usleep(microseconds)
    }
}
