import ApusBroker
import ApusConfig
import ApusIO
#if canImport(Glibc)
import Glibc
#endif

/// How a shard's connections reach the network. The loop's turn is the same for every
/// implementation — wait, jobs, ``process(_:accepting:)``, the broker's commit,
/// ``flush(_:_:)`` — and only these types touch sockets, the poller or the ring.
protocol ShardNetwork: AnyObject {
    /// For the log: `io_uring` or `epoll`.
    var name: String { get }
    /// Waits up to `timeoutMs` for network events or a wake-up.
    func wait(timeoutMs: Int32)
    /// Applies the events of the last wait: accepts connections, reads requests (handing
    /// each frame to the loop), notes finished sends and closes broken connections.
    func process(_ loop: ShardLoop, accepting: Bool)
    /// Sends what this turn's active connections have ready and arranges their next reads.
    func flush(_ loop: ShardLoop, _ active: [Connection])
    /// Starts watching a new connection.
    func add(_ connection: Connection) throws(SystemError)
    /// Stops watching a connection the loop has closed.
    func closed(_ connection: Connection)
    /// Stops reading `connection` (shutdown): responses still go out.
    func mute(_ connection: Connection)
    /// Stops accepting (shutdown), before the listener is closed.
    func stopAccepting()
    /// Waits (briefly) until nothing in flight refers to closed connections.
    func finishClosing()
    /// Wakes the loop from another thread.
    func wake()
}

/// epoll readiness with plain reads, writes and sendfile (the POSIX backend).
final class EpollNetwork: ShardNetwork {
    let name = "epoll"
    private let poller: Poller
    private let listeners: [Int32]
    private var ready: [Poller.Ready] = []

    init(_ poller: Poller, listeners: [Int32]) {
        self.poller = poller
        self.listeners = listeners
    }

    func wait(timeoutMs: Int32) { ready = poller.wait(timeoutMs: timeoutMs) }

    func process(_ loop: ShardLoop, accepting: Bool) {
        for event in ready {
            if let listener = listeners.firstIndex(of: event.fd) {
                if accepting { acceptAll(loop, listener) }
                continue
            }
            guard let connection = loop.connection(fd: event.fd) else { continue }
            loop.touch(connection)
            if event.readable && !connection.muted {
                let now = Sys.wallClockMs()
                let reason = connection.readFrames(maxFrameBytes: loop.config.requestMaxBytes, budget: loop.config.turnReadBytes) {
                    loop.handle($0, from: connection, nowMs: now)
                }
                if let reason { loop.close(connection, reason: reason) }
            }
            // A hung-up connection that is not being read (muted) would be reported forever.
            if event.hangup && loop.connection(fd: event.fd) != nil && (!event.readable || connection.muted) { loop.close(connection, reason: "") }
        }
    }

    private func acceptAll(_ loop: ShardLoop, _ listener: Int) {
        while true {
            do {
                guard let (fd, peer) = try Net.accept(listeners[listener]) else { return }
                loop.accepted(AcceptedConnection(fd: fd, peer: peer, listener: listener))
            } catch {
                loop.logger.warning("accept failed", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    func flush(_ loop: ShardLoop, _ active: [Connection]) {
        for connection in active where (connection.hasWritableData || connection.watchingWritable) && loop.isOpen(connection) {
            do {
                let done = try connection.flush()
                let backlog = connection.queuedBytes > loop.config.connectionBacklogBytes || loop.draining
                if !done != connection.watchingWritable || backlog != connection.muted {
                    connection.watchingWritable = !done
                    connection.muted = backlog
                    try poller.modify(connection.fd, writable: !done, readable: !connection.muted)
                }
            } catch {
                loop.close(connection, reason: "write failed: \(error)")
            }
        }
    }

    func add(_ connection: Connection) throws(SystemError) { try poller.add(connection.fd, writable: false) }
    func closed(_ connection: Connection) { poller.remove(connection.fd) }
    func mute(_ connection: Connection) { try? poller.modify(connection.fd, writable: connection.watchingWritable, readable: false) }

    func stopAccepting() {
        for fd in listeners { poller.remove(fd) }
    }

    func finishClosing() {}
    func wake() { poller.wake() }
}

/// The shard's network ring (the io_uring backend): accept, one receive per connection, sends
/// of ready responses' bytes and waits for readiness, all queued in a turn and submitted with
/// the next wait. File ranges go by sendfile.
final class RingNetwork: ShardNetwork {
    let name = "io_uring"
    private let ring: NetRing
    private let listeners: [Int32]
    private var events: [NetRing.Completion] = []
    /// Connections closed while the ring still holds their buffers, by id.
    private var closing: [ConnectionID: Connection] = [:]
    /// Per listener: an accept is queued (shard 0); after a failure, not before this time.
    private var acceptArmed: [Bool]
    private var acceptRetryAtMs: Int64 = 0

    init(_ ring: NetRing, listeners: [Int32]) {
        self.ring = ring
        self.listeners = listeners
        acceptArmed = listeners.map { _ in false }
    }

    /// What a completion was for: the low 3 bits of its tag; the rest is the connection id
    /// (the listener's index for an accept).
    enum Tag {
        static let receive: UInt64 = 1
        static let pollReadable: UInt64 = 2
        static let send: UInt64 = 3
        static let pollWritable: UInt64 = 4
        static let accept: UInt64 = 5
    }

    private func tag(_ connection: Connection, _ kind: UInt64) -> UInt64 { UInt64(connection.id) << 3 | kind }

    func wait(timeoutMs: Int32) { events = ring.wait(timeoutMs: timeoutMs) }

    func process(_ loop: ShardLoop, accepting: Bool) {
        complete(events, loop, accepting: accepting)
        events.removeAll(keepingCapacity: true)
        guard !listeners.isEmpty, !loop.draining, Sys.wallClockMs() >= acceptRetryAtMs else { return }
        for (i, fd) in listeners.enumerated() where !acceptArmed[i] {
            ring.accept(fd, tag: UInt64(i) << 3 | Tag.accept)
            acceptArmed[i] = true
        }
    }

    private func complete(_ events: [NetRing.Completion], _ loop: ShardLoop?, accepting: Bool) {
        for event in events {
            let kind = event.tag & 7
            if kind == Tag.accept {
                let listener = Int(event.tag >> 3)
                acceptArmed[listener] = false  // one accept at a time per listener, re-armed in `process`
                if event.result >= 0 {
                    if let loop, accepting && !loop.draining {
                        loop.accepted(AcceptedConnection(fd: event.result, peer: Net.accepted(event.result), listener: listener))
                    } else {
                        Net.close(event.result)
                    }
                } else if let loop, event.result != -EAGAIN && event.result != -ECANCELED && !loop.draining {
                    // Out of descriptors and the like: say so, and try again a little later
                    // rather than spinning on a listener that stays readable.
                    loop.logger.warning("accept failed; retrying in 100 ms", metadata: ["error": "\(SystemError("accept", errno: -event.result))"])
                    acceptRetryAtMs = Sys.wallClockMs() + 100
                }
                continue
            }
            let id = ConnectionID(event.tag >> 3)
            if let connection = closing[id] {
                forget(connection, kind)
                continue
            }
            guard let loop, let connection = loop.connection(id: id) else { continue }
            loop.touch(connection)
            forget(connection, kind)
            let result = Int(event.result)
            switch kind {
            case Tag.receive where result == -Int(EAGAIN):
                ring.poll(connection.fd, writable: false, tag: tag(connection, Tag.pollReadable))
                connection.pollingReadable = true
            case Tag.receive where result < 0:
                loop.close(connection, reason: "read failed: \(SystemError("recv", errno: Int32(-result)))")
            case Tag.receive where loop.draining:
                break  // stopping: requests that arrive now are not read (as with epoll)
            case Tag.receive:
                let now = Sys.wallClockMs()
                let reason = connection.received(result, maxFrameBytes: loop.config.requestMaxBytes) { loop.handle($0, from: connection, nowMs: now) }
                if let reason { loop.close(connection, reason: reason) }
            case Tag.send where result == -Int(EAGAIN):
                ring.poll(connection.fd, writable: true, tag: tag(connection, Tag.pollWritable))
                connection.sending = true
            case Tag.send where result < 0:
                loop.close(connection, reason: "write failed: \(SystemError("send", errno: Int32(-result)))")
            case Tag.send:
                connection.advance(sent: result)
            default:
                break  // a wait for readiness ended: the next receive or send follows this turn
            }
        }
    }

    /// Notes that an operation of `kind` on `connection` finished; frees a closed connection
    /// once the ring holds nothing of it.
    private func forget(_ connection: Connection, _ kind: UInt64) {
        switch kind {
        case Tag.receive: connection.receiving = false
        case Tag.pollReadable: connection.pollingReadable = false
        default: connection.sending = false
        }
        if !connection.hasOperationsInFlight { closing[connection.id] = nil }
    }

    func flush(_ loop: ShardLoop, _ active: [Connection]) {
        for connection in active where loop.isOpen(connection) {
            send(loop, connection)
            guard loop.isOpen(connection) else { continue }
            connection.muted = loop.draining || connection.queuedBytes > loop.config.connectionBacklogBytes
            if !connection.muted && !connection.receiving && !connection.pollingReadable {
                ring.receive(connection.fd, into: connection.receiveBuffer(atMost: loop.config.turnReadBytes), tag: tag(connection, Tag.receive))
                connection.receiving = true
            }
        }
    }

    /// Queues the next send of ready responses (bytes on the ring; file ranges with sendfile,
    /// waiting on the ring for room when the socket is full).
    private func send(_ loop: ShardLoop, _ connection: Connection) {
        if connection.tls != nil {
            // Ciphertext is written as it is made (like file ranges without TLS), waiting on the
            // ring for room when the socket is full.
            guard !connection.sending, connection.hasWritableData else { return }
            do {
                if try !connection.flush() {
                    ring.poll(connection.fd, writable: true, tag: tag(connection, Tag.pollWritable))
                    connection.sending = true
                }
            } catch {
                loop.close(connection, reason: "write failed: \(error)")
            }
            return
        }
        while !connection.sending {
            switch connection.nextSend() {
            case .idle:
                return
            case .bytes(let iov, let count):
                ring.send(connection.fd, iov, count: count, tag: tag(connection, Tag.send))
                connection.sending = true
            case .file(let range, let offset):
                do {
                    let sent = try Net.sendfile(socket: connection.fd, file: range.fd, offset: range.position + Int64(offset), count: range.length - offset)
                    connection.advance(sent: sent)
                    if sent < range.length - offset {
                        ring.poll(connection.fd, writable: true, tag: tag(connection, Tag.pollWritable))
                        connection.sending = true
                    }
                } catch {
                    loop.close(connection, reason: "write failed: \(error)")
                    return
                }
            }
        }
    }

    func add(_ connection: Connection) throws(SystemError) {}  // its first receive is queued by `flush`

    func closed(_ connection: Connection) {
        if connection.hasOperationsInFlight {
            Net.shutdown(connection.fd)  // the ring's operations on it complete; then it is freed
            closing[connection.id] = connection
        }
    }

    func mute(_ connection: Connection) {}  // `flush` queues no more receives while draining

    func stopAccepting() {
        for fd in listeners { Net.shutdown(fd) }  // ends a queued accept
    }

    func finishClosing() {
        let until = Sys.wallClockMs() + 1_000
        while !closing.isEmpty && Sys.wallClockMs() < until { complete(ring.wait(timeoutMs: 10), nil, accepting: false) }
    }

    func wake() { ring.wake() }
}
