import ApusBroker
import ApusIO
import ApusStorage
import Logging
import Synchronization

/// One shard's event loop, run on its own pinned thread: epoll for its connections, its
/// broker (which owns some partitions and its own append backend), and its inbox of jobs from
/// other shards, woken through the same eventfd as the poller.
///
/// Each turn: wait for readiness, run the jobs other shards sent, read requests and hand
/// complete frames to the broker, commit the turn's appends in one group commit, and write
/// the responses that are ready (fetch data by sendfile).
final class ShardLoop: @unchecked Sendable {
    let index: Int
    let cpu: Int
    let config: ServerConfig
    let logger: Logger
    let poller: Poller
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

    init(index: Int, cpu: Int, config: ServerConfig, logger: Logger, poller: Poller, broker: Broker, listener: Int32?) {
        self.index = index
        self.cpu = cpu
        self.config = config
        self.logger = logger
        self.poller = poller
        self.broker = broker
        self.listener = listener
        nextID = index
    }

    /// Asks the loop to stop (any thread).
    func requestStop() {
        stop.store(true, ordering: .releasing)
        poller.wake()
    }

    /// Hands an accepted connection to this shard (any thread).
    func adopt(fd: Int32, peer: String) {
        handedOff.withLock { $0.append((fd, peer)) }
        poller.wake()
    }

    /// Runs until a stop is requested, then finishes in-flight requests (up to the shutdown
    /// deadline, and until no shard needs this one any more) and syncs this shard's logs.
    func run() {
        var nextMaintenance = Sys.wallClockMs()
        while !stop.load(ordering: .acquiring) {
            turn(timeoutMs: nextTimeout())
            let now = Sys.wallClockMs()
            if now >= nextMaintenance {
                broker.maintenance(nowMs: now)
                nextMaintenance = now + Self.maintenanceIntervalMs
            }
        }
        if let listener {
            logger.info("stopping: no new connections or requests; finishing in-flight ones")
            poller.remove(listener)
            Net.close(listener)
        }
        for connection in connections.values {
            connection.muted = true
            try? poller.modify(connection.fd, writable: connection.watchingWritable, readable: false)
        }
        draining = true
        broker.expireParkedFetches()
        let deadline = Sys.wallClockMs() + config.shutdownDeadlineMs
        while Sys.wallClockMs() < deadline {
            let idle = !broker.awaitingSync && !broker.hasParkedFetches && !connections.values.contains { $0.hasWritableData }
            broker.reportIdle(idle)
            if idle && broker.meshQuiescent { break }
            turn(timeoutMs: 5, accepting: false)
        }
        for connection in connections.values { close(connection, reason: nil) }
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
        let ready = poller.wait(timeoutMs: timeoutMs)
        broker.startOfTurn()
        if !draining { adoptHandedOff() }
        for event in ready {
            if event.fd == listener {
                if accepting { acceptAll() }
                continue
            }
            guard let connection = connections[event.fd] else { continue }
            if event.readable && !connection.muted { read(connection) }
            // A hung-up connection that is not being read (muted) would be reported forever.
            if event.hangup && connections[event.fd] != nil && (!event.readable || connection.muted) { close(connection, reason: "") }
        }
        let now = Sys.wallClockMs()
        for completion in broker.endOfTurn(nowMs: now) {
            byID[completion.connection]?.complete(sequence: completion.sequence, frame: completion.frame)
        }
        if !broker.closeRequests.isEmpty {
            for (id, reason) in broker.closeRequests { if let connection = byID[id] { close(connection, reason: reason) } }
            broker.closeRequests.removeAll()
        }
        for connection in Array(connections.values) where connection.hasWritableData || connection.watchingWritable {
            write(connection)
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
        for (fd, peer) in arrived { add(fd: fd, peer: peer) }
    }

    /// Starts serving an accepted connection on this shard.
    func add(fd: Int32, peer: String) {
        let connection = Connection(id: nextID, fd: fd, peer: peer)
        do {
            try poller.add(fd, writable: false)
        } catch {
            logger.warning("could not watch a new connection", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return  // the connection closes its socket
        }
        nextID += broker.mesh.count  // ids ≡ shard (mod shards): completions find their shard
        connections[fd] = connection
        byID[connection.id] = connection
        logger.debug("connection opened", metadata: ["peer": "\(peer)", "shard": "\(index)"])
    }

    private func read(_ connection: Connection) {
        let now = Sys.wallClockMs()
        let reason = connection.readFrames(maxFrameBytes: config.requestMaxBytes) { frame in
            let sequence = connection.takeSequence()
            switch broker.handle(frame: frame, connection: connection.id, sequence: sequence, nowMs: now) {
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
        if let reason, connections[connection.fd] != nil { close(connection, reason: reason) }
    }

    private func write(_ connection: Connection) {
        guard connections[connection.fd] != nil else { return }
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

    private func close(_ connection: Connection, reason: String?) {
        guard connections[connection.fd] === connection else { return }
        if let reason, !reason.isEmpty {
            logger.warning("closing connection", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
        }
        poller.remove(connection.fd)
        connections[connection.fd] = nil
        byID[connection.id] = nil
        broker.connectionClosed(connection.id)
    }
}
