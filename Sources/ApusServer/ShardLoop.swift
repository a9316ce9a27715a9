import ApusBroker
import ApusIO
import ApusStorage
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One shard's event loop, run on its own pinned thread: its connections, its broker (which
/// owns some partitions and its own append backend), and its inbox of jobs from other shards,
/// woken through the loop's eventfd.
///
/// Network I/O follows the append backend: with io_uring the shard's ring accepts, receives
/// and sends (every operation queued in a turn goes in one submission); with POSIX, epoll
/// readiness and plain reads and writes. Each turn: wait, run the jobs other shards sent,
/// read requests and hand complete frames to the broker, commit the turn's appends in one
/// group commit, and send the responses that are ready (fetch data by sendfile).
final class ShardLoop: @unchecked Sendable {
    let index: Int
    let cpu: Int
    let config: ServerConfig
    let logger: Logger
    /// epoll (POSIX backend) or the network ring (io_uring backend).
    let poller: Poller?
    let ring: NetRing?
    let broker: Broker
    /// The listening socket (shard 0 only): it accepts and hands connections out in turn.
    let listener: Int32?
    /// Gives an accepted connection to the shard whose turn it is (shard 0 only).
    var distribute: ((Int32, String) -> Void)?
    private let stop = Atomic<Bool>(false)
    private var connections: [Int32: Connection] = [:]
    private var byID: [ConnectionID: Connection] = [:]
    private var nextID: ConnectionID
    /// Connections accepted by shard 0 for this shard, not yet added to its poller.
    private let handedOff = Mutex<[(fd: Int32, peer: String)]>([])
    /// Set once stopping: connections are no longer read.
    private var draining = false

    /// Connections closed while the ring still holds their buffers (io_uring), by id.
    private var closing: [ConnectionID: Connection] = [:]
    /// An accept is queued on the ring (shard 0); after a failure, not before this time.
    private var acceptArmed = false
    private var acceptRetryAtMs: Int64 = 0

    /// Connections with something to do this turn (a completion, a readiness event, a
    /// response that became ready, new): only they are visited after the commit, so idle
    /// connections cost a turn nothing.
    private var active: [Connection] = []
    /// Connections closed with a warning since the last summary line (one per second at most
    /// per shard: a flood of bad clients must not flood the log).
    private var closeWarnings = (logged: 0, suppressed: 0, windowStartMs: Int64(0))
    /// Times each turn and its phases (stall detection).
    private var clock: TurnClock
    let stalls: StallReport

    init(index: Int, cpu: Int, config: ServerConfig, logger: Logger, poller: Poller?, ring: NetRing?, broker: Broker, listener: Int32?,
         stalls: StallReport) {
        self.index = index
        self.stalls = stalls
        clock = TurnClock(shard: index, warnMs: config.stallWarnMs)
        self.cpu = cpu
        self.config = config
        self.logger = logger
        self.poller = poller
        self.ring = ring
        self.broker = broker
        self.listener = listener
        nextID = index
    }

    /// Asks the loop to stop (any thread).
    func requestStop() {
        stop.store(true, ordering: .releasing)
        wake()
    }

    /// Wakes the loop from another thread.
    func wake() {
        poller?.wake()
        ring?.wake()
    }

    /// Hands an accepted connection to this shard (any thread).
    func adopt(fd: Int32, peer: String) {
        handedOff.withLock { $0.append((fd, peer)) }
        wake()
    }

    /// Runs until a stop is requested, then finishes in-flight requests (up to the shutdown
    /// deadline, and until no shard needs this one any more) and syncs this shard's logs.
    func run() {
        ShardThreadContract.markCurrentThread(true)
        var nextMaintenance = Sys.wallClockMs()
        var nextPublish = nextMaintenance
        while !stop.load(ordering: .acquiring) {
            turn(timeoutMs: nextTimeout())
            broker.finishJobs()
            let now = Sys.wallClockMs()
            if now >= nextMaintenance {
                broker.maintenance(nowMs: now)
                nextMaintenance = now + Self.maintenanceIntervalMs
                clock.mark(.maintenance)
            }
            if let found = clock.end() {
                stalls.record(found.stall)
                if found.log {
                    logger.warning("shard stalled", metadata: [
                        "shard": "\(index)", "ms": "\(String(format: "%.1f", found.stall.ms))", "phase": "\(found.stall.phase)",
                        "stallsNotLogged": "\(found.unlogged)",
                    ])
                }
            }
            if now >= nextPublish {
                stalls.setTurns(clock.turns, shard: index)
                if index == 0, let path = config.stallStatsFile { stalls.publish(to: path) }
                nextPublish = now + 1_000
            }
        }
        stalls.setTurns(clock.turns, shard: index)
        if let listener {
            logger.info("stopping: no new connections or requests; finishing in-flight ones")
            poller?.remove(listener)
            if ring != nil { Net.shutdown(listener) }  // ends the ring's multishot accept
            Net.close(listener)
        }
        for connection in connections.values {
            connection.muted = true
            try? poller?.modify(connection.fd, writable: connection.watchingWritable, readable: false)
        }
        draining = true
        broker.expireParkedFetches()
        let deadline = Sys.wallClockMs() + config.shutdownDeadlineMs
        while Sys.wallClockMs() < deadline {
            turn(timeoutMs: 5, accepting: false)
            // Idle is reported before this turn's jobs count as done, so that no shard sees
            // everyone idle while the consequences of a job (a response to send back, a sync
            // to wait for) are still only known here.
            let idle = !broker.awaitingSync && !broker.hasParkedFetches && !connections.values.contains { $0.hasWritableData }
            broker.reportIdle(idle)
            broker.finishJobs()
            if idle && broker.meshQuiescent { break }
        }
        broker.closeInbox()
        for connection in connections.values { close(connection, reason: nil) }
        if let ring {
            // Let the ring finish with the closed connections' buffers before they are freed.
            let until = Sys.wallClockMs() + 1_000
            while !closing.isEmpty && Sys.wallClockMs() < until { complete(ring.wait(timeoutMs: 10)) }
        }
        ShardThreadContract.markCurrentThread(false)  // the final sync waits, by design
        broker.syncAll(nowMs: Sys.wallClockMs())
    }

    /// How often retention runs and recovery points are written.
    static let maintenanceIntervalMs: Int64 = 5_000

    private func nextTimeout() -> Int32 {
        if broker.awaitingSync { return 1 }
        if let deadline = broker.nextDeadlineMs { return Int32(max(0, min(100, deadline - Sys.wallClockMs()))) }
        return 100
    }

    /// One loop turn: readiness, jobs from other shards, requests, group commit, responses.
    private func turn(timeoutMs: Int32, accepting: Bool = true) {
        if let ring { return ringTurn(ring, timeoutMs: timeoutMs, accepting: accepting) }
        guard let poller else { return }
        let ready = poller.wait(timeoutMs: timeoutMs)
        clock.begin()
        broker.startOfTurn()
        adoptHandedOff()
        clock.mark(.jobs)
        for event in ready {
            if event.fd == listener {
                if accepting { acceptAll() }
                continue
            }
            guard let connection = connections[event.fd] else { continue }
            touch(connection)
            if event.readable && !connection.muted { read(connection) }
            // A hung-up connection that is not being read (muted) would be reported forever.
            if event.hangup && connections[event.fd] != nil && (!event.readable || connection.muted) { close(connection, reason: "") }
        }
        clock.mark(.read)
        finishTurn()
        clock.mark(.commit)
        for connection in takeActive() where connection.hasWritableData || connection.watchingWritable {
            write(connection)
        }
        clock.mark(.send)
    }

    private func touch(_ connection: Connection) {
        guard !connection.active else { return }
        connection.active = true
        active.append(connection)
    }

    /// This turn's active connections, cleared for the next turn.
    private func takeActive() -> [Connection] {
        let list = active
        active.removeAll(keepingCapacity: true)
        for connection in list { connection.active = false }
        return list
    }

    /// The group commit, and the responses it (or other shards) completed.
    private func finishTurn() {
        for completion in broker.endOfTurn(nowMs: Sys.wallClockMs()) {
            guard let connection = byID[completion.connection] else { continue }
            connection.complete(sequence: completion.sequence, frame: completion.frame)
            touch(connection)
        }
        if !broker.closeRequests.isEmpty {
            for (id, reason) in broker.closeRequests { if let connection = byID[id] { close(connection, reason: reason) } }
            broker.closeRequests.removeAll()
        }
    }

    // MARK: io_uring

    /// What a ring completion was for: the low 3 bits of its tag; the rest is the connection id.
    enum Tag {
        static let receive: UInt64 = 1
        static let pollReadable: UInt64 = 2
        static let send: UInt64 = 3
        static let pollWritable: UInt64 = 4
        static let accept: UInt64 = 5
    }

    private func tag(_ connection: Connection, _ kind: UInt64) -> UInt64 { UInt64(connection.id) << 3 | kind }

    /// A turn on the ring: the operations queued by the last turn are submitted together with
    /// the wait; then completions, jobs, requests, commit, and the next receives and sends.
    private func ringTurn(_ ring: NetRing, timeoutMs: Int32, accepting: Bool) {
        let events = ring.wait(timeoutMs: timeoutMs)
        clock.begin()
        broker.startOfTurn()
        adoptHandedOff()
        clock.mark(.jobs)
        complete(events, accepting: accepting)
        clock.mark(.read)
        if let listener, !acceptArmed, !draining, Sys.wallClockMs() >= acceptRetryAtMs {
            ring.accept(listener, tag: Tag.accept)
            acceptArmed = true
        }
        finishTurn()
        clock.mark(.commit)
        defer { clock.mark(.send) }
        for connection in takeActive() where connections[connection.fd] === connection {
            flushOnRing(ring, connection)
            guard connections[connection.fd] === connection else { continue }
            connection.muted = draining || connection.queuedBytes > config.connectionBacklogBytes
            if !connection.muted && !connection.receiving && !connection.pollingReadable {
                ring.receive(connection.fd, into: connection.receiveBuffer(), tag: tag(connection, Tag.receive))
                connection.receiving = true
            }
        }
    }

    /// Applies ring completions: accepted sockets, received bytes (requests), sent bytes.
    private func complete(_ events: [NetRing.Completion], accepting: Bool = false) {
        for event in events {
            let kind = event.tag & 7
            if kind == Tag.accept {
                acceptArmed = false  // one accept at a time, re-armed at the end of the turn
                if event.result >= 0 {
                    let fd = event.result
                    if accepting && !draining {
                        let peer = Net.accepted(fd)
                        if let distribute { distribute(fd, peer) } else { add(fd: fd, peer: peer) }
                    } else {
                        Net.close(fd)
                    }
                } else if event.result != -EAGAIN && event.result != -ECANCELED && !draining {
                    // Out of descriptors and the like: say so, and try again a little later
                    // rather than spinning on a listener that stays readable.
                    logger.warning("accept failed; retrying in 100 ms", metadata: ["error": "\(SystemError("accept", errno: -event.result))"])
                    acceptRetryAtMs = Sys.wallClockMs() + 100
                }
                continue
            }
            let id = ConnectionID(event.tag >> 3)
            if let connection = closing[id] {
                forget(connection, kind)
                continue
            }
            guard let connection = byID[id] else { continue }
            touch(connection)
            forget(connection, kind)
            let result = Int(event.result)
            switch kind {
            case Tag.receive where result == -Int(EAGAIN):
                ring?.poll(connection.fd, writable: false, tag: tag(connection, Tag.pollReadable))
                connection.pollingReadable = true
            case Tag.receive where result < 0:
                close(connection, reason: "read failed: \(SystemError("recv", errno: Int32(-result)))")
            case Tag.receive where draining:
                break  // stopping: requests that arrive now are not read (as with epoll)
            case Tag.receive:
                let now = Sys.wallClockMs()
                let reason = connection.received(result, maxFrameBytes: config.requestMaxBytes) { handle($0, from: connection, nowMs: now) }
                if let reason { close(connection, reason: reason) }
            case Tag.send where result == -Int(EAGAIN):
                ring?.poll(connection.fd, writable: true, tag: tag(connection, Tag.pollWritable))
                connection.sending = true
            case Tag.send where result < 0:
                close(connection, reason: "write failed: \(SystemError("send", errno: Int32(-result)))")
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

    /// Queues the next send of ready responses (bytes on the ring; file ranges with sendfile,
    /// waiting on the ring for room when the socket is full).
    private func flushOnRing(_ ring: NetRing, _ connection: Connection) {
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
                    close(connection, reason: "write failed: \(error)")
                    return
                }
            }
        }
    }

    private func acceptAll() {
        guard let listener else { return }
        while true {
            do {
                guard let (fd, peer) = try Net.accept(listener) else { return }
                if let distribute { distribute(fd, peer) } else { add(fd: fd, peer: peer) }
            } catch {
                logger.warning("accept failed", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    private func adoptHandedOff() {
        let arrived = handedOff.withLock { pending -> [(fd: Int32, peer: String)] in
            defer { pending.removeAll() }
            return pending
        }
        for (fd, peer) in arrived {
            if draining { Net.close(fd) } else { add(fd: fd, peer: peer) }
        }
    }

    /// Starts serving an accepted connection on this shard.
    func add(fd: Int32, peer: String) {
        let connection = Connection(id: nextID, fd: fd, peer: peer)
        do {
            try poller?.add(fd, writable: false)
        } catch {
            logger.warning("could not watch a new connection", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return  // the connection closes its socket
        }
        nextID += broker.mesh.count  // ids ≡ shard (mod shards): completions find their shard
        connections[fd] = connection
        byID[connection.id] = connection
        touch(connection)
        logger.debug("connection opened", metadata: ["peer": "\(peer)", "shard": "\(index)"])
    }

    private func read(_ connection: Connection) {
        let now = Sys.wallClockMs()
        let reason = connection.readFrames(maxFrameBytes: config.requestMaxBytes) { handle($0, from: connection, nowMs: now) }
        if let reason { close(connection, reason: reason) }
    }

    /// Hands one request frame to the broker; false once the connection is closed.
    private func handle(_ frame: UnsafeRawBufferPointer, from connection: Connection, nowMs: Int64) -> Bool {
        let sequence = connection.takeSequence()
        switch broker.handle(frame: frame, connection: connection.id, sequence: sequence, nowMs: nowMs) {
        case .respond(let response):
            connection.enqueue(sequence: sequence, frame: response)
        case .pending:
            connection.enqueue(sequence: sequence, frame: nil)
        case .noResponse:
            break
        case .close(let why):
            close(connection, reason: why)
            return false
        }
        return true
    }

    private func write(_ connection: Connection) {
        guard connections[connection.fd] === connection, let poller else { return }
        do {
            let done = try connection.flush()
            let backlog = connection.queuedBytes > config.connectionBacklogBytes || draining
            if !done != connection.watchingWritable || backlog != connection.muted {
                connection.watchingWritable = !done
                connection.muted = backlog || draining
                try poller.modify(connection.fd, writable: !done, readable: !connection.muted)
            }
        } catch {
            close(connection, reason: "write failed: \(error)")
        }
    }

    /// Logs why a connection was closed: the first few each second, then one summary line
    /// for the rest (a fuzzer or a misbehaving client fleet must not flood the log).
    private func warnClosing(_ connection: Connection, _ reason: String) {
        let now = Sys.wallClockMs()
        if now - closeWarnings.windowStartMs >= 1_000 {
            if closeWarnings.suppressed > 0 {
                logger.warning("closed more connections; their reasons were not logged", metadata: [
                    "shard": "\(index)", "count": "\(closeWarnings.suppressed)", "seconds": "\(Double(now - closeWarnings.windowStartMs) / 1000)",
                ])
            }
            closeWarnings = (0, 0, now)
        }
        guard closeWarnings.logged < Self.closeWarningsPerSecond else {
            closeWarnings.suppressed += 1
            return
        }
        closeWarnings.logged += 1
        logger.warning("closing connection", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
    }

    static let closeWarningsPerSecond = 10

    private func close(_ connection: Connection, reason: String?) {
        guard connections[connection.fd] === connection else { return }
        if let reason, !reason.isEmpty { warnClosing(connection, reason) }
        poller?.remove(connection.fd)
        connections[connection.fd] = nil
        byID[connection.id] = nil
        broker.connectionClosed(connection.id)
        if connection.hasOperationsInFlight {
            Net.shutdown(connection.fd)  // the ring's operations on it complete; then it is freed
            closing[connection.id] = connection
        }
    }
}
