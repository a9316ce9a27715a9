import ApusBroker
import ApusIO
import ApusStorage
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `apus serve`: accepts Kafka clients and runs the broker on an event loop.
///
/// One loop thread today (one shard owning every partition): epoll for sockets, the storage
/// backend chosen at start-up for appends. Each loop turn reads requests, hands complete
/// frames to the broker, commits the turn's appends in one group commit, and writes the
/// responses that are ready (fetch data by sendfile).
public final class Server {
    public let config: ServerConfig
    let logger: Logger
    let poller: Poller
    let listener: Int32
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    let broker: Broker
    let backendName: String
    private var connections: [Int32: Connection] = [:]
    private var byID: [ConnectionID: Connection] = [:]
    private var nextID: ConnectionID = 1
    private let stopRequested = Atomic<Bool>(false)
    /// Set once stopping: connections are no longer read.
    private var draining = false

    public init(config: ServerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let now = Sys.wallClockMs()
        let (backend, reason) = try makeAppendBackend(config.ioBackend, syncsOnAppendPath: config.broker.log.durability != .pageCache)
        if let reason { logger.info("\(reason)") }
        backendName = backend.name
        let logs = try LogManager(dataDirectory: config.dataDirectory, defaultConfig: config.broker.log, logger: logger)
        if !logs.wasCleanShutdown { logger.info("no clean-shutdown marker: logs will be recovered") }
        poller = try Poller()
        (listener, port) = try Net.listen(host: config.listenHost, port: config.listenPort)
        try poller.add(listener, writable: false)
        var brokerConfig = config.broker
        if !config.advertisedIsExplicit {
            brokerConfig.advertisedHost = config.listenHost == "0.0.0.0" ? "127.0.0.1" : config.listenHost
            brokerConfig.advertisedPort = Int32(port)
        }
        logger.debug("advertising", metadata: ["address": "\(brokerConfig.advertisedHost):\(brokerConfig.advertisedPort)"])
        broker = try Broker(config: brokerConfig, logs: logs, shard: LogShard(backend: backend), logger: logger, nowMs: now)
    }

    /// Asks the loop to stop gracefully (any thread; used by the signal handlers).
    public func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        poller.wake()
    }

    /// Runs until a stop is requested, then finishes in-flight requests (up to the
    /// shutdown deadline), syncs the logs and writes the clean-shutdown marker.
    public func run() throws {
        logger.info("listening", metadata: [
            "address": "\(config.listenHost):\(port)", "dataDir": "\(config.dataDirectory)",
            "ioBackend": "\(backendName)", "durability": "\(config.broker.log.durability.rawValue)",
        ])
        var nextMaintenance = Sys.wallClockMs()
        while !stopRequested.load(ordering: .acquiring) {
            turn(timeoutMs: nextTimeout())
            let now = Sys.wallClockMs()
            if now >= nextMaintenance {
                broker.maintenance(nowMs: now)
                nextMaintenance = now + Self.maintenanceIntervalMs
            }
        }
        logger.info("stopping: no new connections or requests; finishing in-flight ones")
        poller.remove(listener)
        Net.close(listener)
        for connection in connections.values {
            connection.muted = true
            try? poller.modify(connection.fd, writable: connection.watchingWritable, readable: false)
        }
        draining = true
        broker.expireParkedFetches()
        let deadline = Sys.wallClockMs() + config.shutdownDeadlineMs
        while (broker.awaitingSync || connections.values.contains { $0.hasWritableData }) && Sys.wallClockMs() < deadline {
            turn(timeoutMs: 10, accepting: false)
        }
        for connection in connections.values { close(connection, reason: nil) }
        try broker.shutdown(nowMs: Sys.wallClockMs())
        logger.info("stopped cleanly")
    }

    /// How often retention runs and recovery points are written.
    static let maintenanceIntervalMs: Int64 = 5_000

    private func nextTimeout() -> Int32 {
        if broker.awaitingSync { return 1 }
        if let deadline = broker.nextDeadlineMs { return Int32(max(0, min(100, deadline - Sys.wallClockMs()))) }
        return 100
    }

    /// One loop turn: readiness, requests, group commit, responses.
    private func turn(timeoutMs: Int32, accepting: Bool = true) {
        for ready in poller.wait(timeoutMs: timeoutMs) {
            if ready.fd == listener {
                if accepting { acceptAll() }
                continue
            }
            guard let connection = connections[ready.fd] else { continue }
            if ready.readable && !connection.muted { read(connection) }
            // A hung-up connection that is not being read (muted) would be reported forever.
            if ready.hangup && connections[ready.fd] != nil && (!ready.readable || connection.muted) { close(connection, reason: "") }
        }
        let now = Sys.wallClockMs()
        for completion in broker.endOfTurn(nowMs: now) {
            byID[completion.connection]?.complete(sequence: completion.sequence, frame: completion.frame)
        }
        for connection in Array(connections.values) where connection.hasWritableData || connection.watchingWritable {
            write(connection)
        }
    }

    private func acceptAll() {
        while true {
            do {
                guard let (fd, peer) = try Net.accept(listener) else { return }
                let connection = Connection(id: nextID, fd: fd, peer: peer)
                nextID += 1
                try poller.add(fd, writable: false)
                connections[fd] = connection
                byID[connection.id] = connection
                logger.debug("connection opened", metadata: ["peer": "\(peer)"])
            } catch {
                logger.warning("accept failed", metadata: ["error": "\(error)"])
                return
            }
        }
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
        if let reason, !reason.isEmpty {
            logger.warning("closing connection", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
        }
        poller.remove(connection.fd)
        connections[connection.fd] = nil
        byID[connection.id] = nil
        broker.connectionClosed(connection.id)
    }
}
