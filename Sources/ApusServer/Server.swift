import ApusBroker
import ApusConfig
import ApusIO
import ApusStorage
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `apus serve`: accepts Kafka clients and runs the broker as shards, one pinned thread per
/// CPU in `cpus`, sharing nothing but the topic catalog and their inboxes.
///
/// Each shard (``ShardLoop``) has its own event loop, append backend (io_uring or POSIX) and
/// the partitions the mesh assigns it; shard 0 also accepts connections, handing them to the
/// shards in turn, and keeps topics, groups and producer ids.
public final class Server {
    public let config: ServerConfig
    let logger: Logger
    let logs: LogManager
    let mesh: ShardMesh
    let loops: [ShardLoop]
    let stalls: StallReport
    let metrics: MetricsHub
    let metricsServer: MetricsServer?
    let backendName: String
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    /// Every metric family the endpoint exports, as docs/metrics.md's table.
    public static var metricsTable: String { MetricsCatalog.markdownTable }
    /// tools/deploy/grafana-dashboard.json, generated from the same list.
    public static var grafanaDashboard: String { MetricsCatalog.grafanaDashboard }

    /// The metrics endpoint's port (nil when `metrics.listen` is off).
    public var metricsPort: UInt16? { metricsServer?.port }

    public init(config: ServerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let files = Sys.raiseOpenFileLimit()
        if files.after > files.before { logger.info("raised the open-files limit", metadata: ["from": "\(files.before)", "to": "\(files.after)"]) }
        let cpus = try config.cpus.resolve(allowed: Placement.allowedCPUs())
        let now = Sys.wallClockMs()
        let openStarted = Sys.monotonicNs()
        logs = try LogManager(dataDirectory: config.dataDirectory, defaultConfig: config.broker.log, logger: logger)
        if !logs.wasCleanShutdown { logger.info("no clean-shutdown marker: logs will be recovered") }
        mesh = ShardMesh(count: cpus.count, catalog: try TopicCatalog.load(logs: logs, shards: cpus.count, broker: config.broker, logger: logger, nowMs: now))
        metrics = MetricsHub(shards: cpus.count)
        metrics.setRecovery(ns: Sys.monotonicNs() - openStarted)
        let (listener, port) = try Self.listen(config, logger: logger)
        self.port = port
        var brokerConfig = config.broker
        if !config.advertisedIsExplicit {
            brokerConfig.advertisedHost = config.listenHost == "0.0.0.0" ? "127.0.0.1" : config.listenHost
            brokerConfig.advertisedPort = Int32(port)
        }
        logger.debug("advertising", metadata: ["address": "\(brokerConfig.advertisedHost):\(brokerConfig.advertisedPort)"])
        stalls = StallReport(shards: cpus.count, warnMs: config.stallWarnMs)
        if let (host, port) = config.metricsListen {
            metricsServer = try MetricsServer(host: host, port: port, hub: metrics, stalls: stalls)
        } else {
            metricsServer = nil
        }
        var loops: [ShardLoop] = []
        var backendName = ""
        for (index, cpu) in cpus.enumerated() {
            let (backend, reason) = try makeAppendBackend(config.ioBackend, syncsOnAppendPath: config.broker.log.durability != .pageCache)
            if let reason, index == 0 { logger.info("\(reason)") }
            backendName = backend.name
            // Network I/O uses the same backend as appends: the shard's ring, or epoll.
            let shardListener = index == 0 ? listener : nil
            var network: ShardNetwork?
            if backend.kind == .uring {
                do {
                    network = RingNetwork(try NetRing(), listener: shardListener)
                } catch {
                    if index == 0 { logger.warning("no io_uring ring for network I/O; using epoll", metadata: ["error": "\(error)"]) }
                }
            }
            if network == nil {
                let poller = try Poller()
                if let shardListener { try poller.add(shardListener, writable: false) }
                network = EpollNetwork(poller, listener: shardListener)
            }
            let broker = try Broker(config: brokerConfig, logs: logs, shard: LogShard(backend: backend), logger: logger, nowMs: now,
                                    mesh: mesh, index: index)
            let loop = ShardLoop(index: index, cpu: cpu, config: config, logger: logger, network: network!, broker: broker,
                                 listener: shardListener, stalls: stalls, metrics: metrics)
            mesh.setWake(index) { loop.wake() }
            loops.append(loop)
        }
        self.loops = loops
        self.backendName = backendName
        if loops.count > 1 {
            var next = 0
            loops[0].distribute = { [loops] fd, peer in
                let target = loops[next]
                next = (next + 1) % loops.count
                if target === loops[0] { target.add(fd: fd, peer: peer) } else { target.adopt(fd: fd, peer: peer) }
            }
        }
    }

    /// Binds the listener, waiting up to 5 s while the address is in use: a previous instance
    /// killed a moment ago can hold its socket until its io_uring ring is torn down.
    private static func listen(_ config: ServerConfig, logger: Logger) throws -> (Int32, UInt16) {
        let deadline = Sys.wallClockMs() + 5_000
        var logged = false
        while true {
            let result = Result { () throws(SystemError) in try Net.listen(host: config.listenHost, port: config.listenPort) }
            switch result {
            case .success(let bound):
                return bound
            case .failure(let error):
                guard error.errno == EADDRINUSE && config.listenPort != 0 && Sys.wallClockMs() < deadline else { throw error }
                if !logged {
                    logger.info("address in use; retrying for up to 5 s", metadata: ["address": "\(config.listenHost):\(config.listenPort)"])
                    logged = true
                }
                Sys.sleep(microseconds: 50_000)
            }
        }
    }

    /// Asks every shard to stop gracefully (any thread; used by the signal handlers).
    public func requestStop() {
        mesh.beginShutdown()
        for loop in loops { loop.requestStop() }
    }

    /// Runs the shards until a stop is requested; each finishes its in-flight requests (up to
    /// the shutdown deadline) and syncs its logs, then the clean-shutdown marker is written.
    public func run() throws {
        logger.info("listening", metadata: [
            "address": "\(config.listenHost):\(port)", "dataDir": "\(config.dataDirectory)",
            "ioBackend": "\(backendName)", "network": "\(loops[0].network.name)", "durability": "\(config.broker.log.durability.rawValue)",
            "shards": "\(loops.count)", "cpus": "\(loops.map(\.cpu))",
            "metrics": "\(metricsServer.map { "\(config.metricsListen!.host):\($0.port)" } ?? "off")",
        ])
        metricsServer?.start()
        metrics.setListening(true)
        let numaNodes = config.numa ? Placement.numaNodeCount() : 0
        var threads: [Placement.Thread] = []
        for loop in loops {
            let logger = self.logger
            threads.append(try Placement.startThread(name: "apus-shard-\(loop.index)") {
                do {
                    try Placement.pinCurrentThread(to: loop.cpu)
                } catch {
                    logger.warning("could not pin shard to its CPU; it runs unpinned", metadata: ["shard": "\(loop.index)", "error": "\(error)"])
                }
                if numaNodes > 1, let node = Placement.numaNode(ofCPU: loop.cpu) {
                    do {
                        try Placement.preferMemory(onNode: node)
                        logger.debug("shard memory on its CPU's NUMA node", metadata: ["shard": "\(loop.index)", "node": "\(node)"])
                    } catch {
                        logger.warning("could not prefer the shard's NUMA node", metadata: ["shard": "\(loop.index)", "error": "\(error)"])
                    }
                }
                loop.run()
            })
        }
        for thread in threads { thread.join() }
        metrics.setListening(false)
        metricsServer?.shutdown()
        reportStalls()
        try logs.close()
        logger.info("stopped cleanly")
    }

    /// The shutdown summary of the shards' turns and stalls, and of the shard-thread contract.
    private func reportStalls() {
        let report = stalls.snapshot
        for (index, shard) in report.shards.enumerated() {
            logger.info("shard turns", metadata: [
                "shard": "\(index)", "turns": "\(shard.turns)", "stalls": "\(shard.stalls)", "warnMs": "\(report.warnMs)",
                "longestMs": "\(String(format: "%.1f", shard.longestMs))", "longestPhase": "\(shard.longestPhase)",
            ])
        }
        let contract = ShardThreadContract.violations
        if contract.count > 0 {
            logger.error("shard threads made calls that may wait on the disk", metadata: [
                "count": "\(contract.count)", "first": "\(contract.examples.joined(separator: "; "))",
            ])
        }
        if let path = config.stallStatsFile {
            stalls.publish(to: path)
            DiskWorker.shared.waitUntilIdle()
        }
    }
}
