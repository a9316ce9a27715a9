import ApusBroker
import ApusConfig
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
/// Network I/O goes through a ``ShardNetwork`` (the shard's io_uring ring, or epoll). Each
/// turn: wait, run the jobs other shards sent, read requests and hand complete frames to the
/// broker, let the broker commit the turn's appends (one group commit) and take the
/// ``TurnOutcome`` it returns, and send the responses that are ready.
final class ShardLoop: @unchecked Sendable {
    let index: Int
    let cpu: Int
    let config: ServerConfig
    let logger: Logger
    /// epoll (POSIX backend) or the network ring (io_uring backend).
    let network: ShardNetwork
    let broker: Broker
    /// The listening sockets, in `listeners` order (shard 0 only): it accepts and hands
    /// connections out in turn.
    let listeners: [Int32]
    /// Per listener: where sessions for its connections come from (nil: plaintext).
    let tls: [TLSContext?]
    /// Gives an accepted connection to the shard whose turn it is (shard 0 only).
    var distribute: ((AcceptedConnection) -> Void)?
    private let stop = Atomic<Bool>(false)
    private var connections: [Int32: Connection] = [:]
    private var byID: [ConnectionID: Connection] = [:]
    private var nextID: ConnectionID
    /// Connections accepted by shard 0 for this shard, not yet added to its poller.
    private let handedOff = Mutex<[AcceptedConnection]>([])
    /// Set once stopping: connections are no longer read.
    private(set) var draining = false

    /// Connections with something to do this turn (a completion, a readiness event, a
    /// response that became ready, new): only they are visited after the commit, so idle
    /// connections cost a turn nothing.
    private var active: [Connection] = []
    /// Connections closed with a warning since the last summary line (one per second at most
    /// per shard: a flood of bad clients must not flood the log).
    private var closeWarnings = LogRateLimit(perSecond: ShardLoop.closeWarningsPerSecond)
    /// Times each turn and its phases (stall detection).
    private var clock: TurnClock
    let stalls: StallReport
    /// Where the shard leaves its statistics for the metrics endpoint once a second.
    let metrics: MetricsHub
    /// Connections and request latencies, counted on this thread (and by its connections).
    private let counters = ShardCounters()

    init(index: Int, cpu: Int, config: ServerConfig, logger: Logger, network: ShardNetwork, broker: Broker, listeners: [Int32], tls: [TLSContext?],
         stalls: StallReport, metrics: MetricsHub) {
        self.index = index
        self.stalls = stalls
        self.metrics = metrics
        clock = TurnClock(shard: index, warnMs: config.stallWarnMs)
        self.cpu = cpu
        self.config = config
        self.logger = logger
        self.network = network
        self.broker = broker
        self.listeners = listeners
        self.tls = tls
        nextID = index
    }

    /// Asks the loop to stop (any thread).
    func requestStop() {
        stop.store(true, ordering: .releasing)
        wake()
    }

    /// Wakes the loop from another thread.
    func wake() { network.wake() }

    /// Hands an accepted connection to this shard (any thread).
    func adopt(_ accepted: AcceptedConnection) {
        handedOff.withLock { $0.append(accepted) }
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
                        "cause": "\(found.stall.cause.rawValue)", "onCPUMs": "\(String(format: "%.1f", found.stall.onCPUMs))",
                        "sleeps": "\(found.stall.sleeps)", "preemptions": "\(found.stall.preemptions)",
                        "stallsNotLogged": "\(found.unlogged)",
                    ])
                }
            }
            if now >= nextPublish {
                metrics.publish(index, .init(atMs: now, broker: broker.metricsSnapshot(), stats: counters.stats, connectionsOpen: connections.count,
                                             turns: clock.turns, busyNs: clock.busyNs, turnLatency: clock.turnLatency))
                stalls.setTurns(clock.turns, shard: index)
                if index == 0, let path = config.stallStatsFile { stalls.publish(to: path) }
                nextPublish = now + 1_000
            }
        }
        stalls.setTurns(clock.turns, shard: index)
        if !listeners.isEmpty {
            logger.info("stopping: no new connections or requests; finishing in-flight ones")
            network.stopAccepting()
            for fd in listeners { Net.close(fd) }
        }
        for connection in connections.values {
            connection.muted = true
            network.mute(connection)
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
        network.finishClosing()
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

    /// One loop turn: network events, jobs from other shards, requests, group commit, responses.
    private func turn(timeoutMs: Int32, accepting: Bool = true) {
        network.wait(timeoutMs: timeoutMs)
        clock.begin()
        broker.startOfTurn()
        adoptHandedOff()
        clock.mark(.jobs)
        network.process(self, accepting: accepting)
        clock.mark(.read)
        let outcome = broker.endOfTurn(nowMs: Sys.wallClockMs())
        for completion in outcome.completions {
            guard let connection = byID[completion.connection] else { continue }
            connection.complete(sequence: completion.sequence, frame: completion.frame)
            touch(connection)
        }
        for (id, reason) in outcome.closes { if let connection = byID[id] { close(connection, reason: reason) } }
        clock.mark(.commit)
        network.flush(self, takeActive())
        clock.mark(.send)
    }

    // MARK: Connections (for the network)

    func connection(fd: Int32) -> Connection? { connections[fd] }
    func connection(id: ConnectionID) -> Connection? { byID[id] }
    func isOpen(_ connection: Connection) -> Bool { connections[connection.fd] === connection }

    /// A connection accepted by this shard's listener: served here or dealt to another shard.
    func accepted(_ connection: AcceptedConnection) {
        if let distribute { distribute(connection) } else { add(connection) }
    }

    /// Marks a connection as having something to do this turn.
    func touch(_ connection: Connection) {
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

    private func adoptHandedOff() {
        let arrived = handedOff.withLock { pending -> [AcceptedConnection] in
            defer { pending.removeAll() }
            return pending
        }
        for accepted in arrived {
            if draining { Net.close(accepted.fd) } else { add(accepted) }
        }
    }

    /// Starts serving an accepted connection on this shard.
    func add(_ accepted: AcceptedConnection) {
        let (fd, peer) = (accepted.fd, accepted.peer)
        let listener = broker.config.advertised(accepted.listener)
        let session = ClientSession(listener: accepted.listener, securityProtocol: listener.securityProtocol,
                                    host: peer.split(separator: ":").dropLast().joined(separator: ":"))
        var tlsSession: TLSSession?
        if listener.securityProtocol.usesTLS {
            guard tls.indices.contains(accepted.listener), let made = tls[accepted.listener]?.session() else {
                logger.warning("no TLS session for a new connection; closing it", metadata: ["peer": "\(peer)", "listener": "\(listener.name)"])
                Net.close(fd)
                return
            }
            tlsSession = made
        }
        let connection = Connection(id: nextID, fd: fd, peer: peer, session: session, tls: tlsSession, counters: counters)
        do {
            try network.add(connection)
        } catch {
            logger.warning("could not watch a new connection", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return  // the connection closes its socket
        }
        nextID += broker.mesh.count  // ids ≡ shard (mod shards): completions find their shard
        connections[fd] = connection
        byID[connection.id] = connection
        counters.stats.accepted &+= 1
        touch(connection)
        logger.debug("connection opened", metadata: ["peer": "\(peer)", "shard": "\(index)"])
    }

    /// Hands one request frame to the broker; false once the connection is closed.
    func handle(_ frame: UnsafeRawBufferPointer, from connection: Connection, nowMs: Int64) -> Bool {
        let sequence = connection.takeSequence()
        if connection.clientId == nil {
            connection.clientId = RequestPreamble.clientId(frame)
            if let tls = connection.tls {
                logger.debug("TLS connection", metadata: ["peer": "\(connection.peer)", "client": "\(connection.clientId ?? "-")",
                                                          "tls": "\(tls.negotiated)", "principal": "\(connection.session.principal)"])
            }
        }
        let startNs = Sys.monotonicNs()
        let queueNs = startNs &- clock.turnStartNs
        let apiKey = RequestPreamble(frame)?.apiKey ?? -1
        let outcome = broker.handle(frame: frame, connection: connection.id, sequence: sequence, nowMs: nowMs, session: connection.session)
        let handledNs = Sys.monotonicNs()
        switch outcome {
        case .respond(let response):
            connection.enqueue(sequence: sequence, frame: response, apiKey: apiKey, queueNs: queueNs, startNs: startNs, handledNs: handledNs)
        case .pending:
            connection.enqueue(sequence: sequence, frame: nil, apiKey: apiKey, queueNs: queueNs, startNs: startNs, handledNs: handledNs)
        case .noResponse:
            break
        case .close(let why):
            close(connection, reason: why)
            return false
        }
        return true
    }

    /// Logs why a connection was closed: the first few each second, then one summary line
    /// for the rest (a fuzzer or a misbehaving client fleet must not flood the log).
    private func warnClosing(_ connection: Connection, _ reason: String) {
        let allowed = closeWarnings.allow(nowMs: Sys.wallClockMs()) { count, seconds in
            logger.warning("closed more connections; their reasons were not logged", metadata: [
                "shard": "\(index)", "count": "\(count)", "seconds": "\(seconds)",
            ])
        }
        guard allowed else { return }
        logger.warning("closing connection", metadata: ["peer": "\(connection.peer)", "client": "\(connection.clientId ?? "-")", "reason": "\(reason)"])
    }

    static let closeWarningsPerSecond = 10

    func close(_ connection: Connection, reason: String?) {
        guard connections[connection.fd] === connection else { return }
        if let reason, !reason.isEmpty {
            warnClosing(connection, reason)
            counters.stats.rejected &+= 1
        }
        counters.stats.closed &+= 1
        network.closed(connection)
        connections[connection.fd] = nil
        byID[connection.id] = nil
        broker.connectionClosed(connection.id)
    }
}

/// A connection a listener accepted: its socket, the peer's address and the listener's index.
struct AcceptedConnection: Sendable {
    var fd: Int32
    var peer: String
    var listener: Int
}
