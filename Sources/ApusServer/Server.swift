import ApusBroker
import ApusCluster
import ApusConfig
import ApusIO
import ApusStorage
import KafkaWire
import Logging
import Synchronization
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
    /// `page.cache.max.bytes` resolved (`auto`: a third of the machine's memory), over all shards.
    let pageCacheBudget: Int64
    /// The port actually bound by the first listener (useful with port 0).
    public let port: UInt16
    /// Every listener's bound port, in `listeners` order.
    public let ports: [UInt16]
    /// The listeners as clients are told of them.
    public let listeners: [AdvertisedListener]
    private let listenerFDs: [Int32]
    /// The TLS context of each listener, in `listeners` order (nil for plaintext ones).
    let tls: [TLSContext?]
    /// Membership in a cluster on etcd (`cluster.metadata`), started with the shards.
    let cluster: ClusterAgent?
    /// Follower fetching from the leaders of replicated partitions (cluster mode).
    let replicaFetchers: ReplicaFetchers?
    /// The topic records on etcd (cluster mode): a stopping broker hands its leadership off.
    let topicRecords: TopicRecords?
    private let handedOff = Atomic<Bool>(false)
    /// Every metric family the endpoint exports, as docs/metrics.md's table.
    public static var metricsTable: String { MetricsCatalog.markdownTable }
    /// tools/deploy/grafana-dashboard.json, generated from the same list.
    public static var grafanaDashboard: String { MetricsCatalog.grafanaDashboard }

    /// The metrics endpoint's port (nil when `metrics.listen` is off).
    public var metricsPort: UInt16? { metricsServer?.port }

    /// Descriptors the table holds from the start (at most the open-files limit): 1 MiB of
    /// kernel memory; a broker that opens more grows it again, once per doubling.
    static let reservedDescriptors: UInt64 = 1 << 17

    public init(config: ServerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let files = Sys.raiseOpenFileLimit()
        if files.after > files.before { logger.info("raised the open-files limit", metadata: ["from": "\(files.before)", "to": "\(files.after)"]) }
        // Before any shard runs: a shard's accept or dup then never grows the table (and waits).
        Sys.reserveDescriptorTable(Int(min(files.after, Self.reservedDescriptors)))
        let cpus = try config.cpus.resolve(allowed: Placement.allowedCPUs())
        pageCacheBudget = config.pageCacheMaxBytes ?? Sys.physicalMemoryBytes() / 3
        let now = Sys.wallClockMs()
        let openStarted = Sys.monotonicNs()
        logs = try LogManager(dataDirectory: config.dataDirectory, defaultConfig: config.broker.log, logger: logger)
        if !logs.wasCleanShutdown { logger.info("no clean-shutdown marker: logs will be recovered") }
        mesh = ShardMesh(count: cpus.count, catalog: try TopicCatalog.load(logs: logs, shards: cpus.count, broker: config.broker, logger: logger, nowMs: now,
                                                                          replicatedOffsets: !config.clusterEtcd.isEmpty),
                         security: try SecurityStore.load(logs: logs, logger: logger))
        metrics = MetricsHub(shards: cpus.count)
        metrics.setRecovery(ns: Sys.monotonicNs() - openStarted)
        let resolved = try config.resolvedListeners()
        var bound: [(fd: Int32, port: UInt16)] = []
        for (address, _) in resolved { bound.append(try Self.listen(address, logger: logger)) }
        listenerFDs = bound.map(\.fd)
        ports = bound.map(\.port)
        self.port = ports[0]
        var brokerConfig = config.broker
        brokerConfig.listeners = zip(resolved, bound).map { listener, bound in
            let advertised = config.advertisedListeners[listener.address.name]
            let host = advertised?.host ?? (listener.address.host == "0.0.0.0" ? "127.0.0.1" : listener.address.host)
            return AdvertisedListener(name: listener.address.name, securityProtocol: listener.securityProtocol,
                                      host: host, port: Int32(advertised?.port ?? bound.port))
        }
        self.listeners = brokerConfig.listeners
        // One TLS context per distinct setting: listeners with the same ssl.* share one.
        var contexts: [(settings: TLSSettings, context: TLSContext)] = []
        var perListener: [TLSContext?] = []
        for listener in listeners {
            guard listener.securityProtocol.usesTLS else {
                perListener.append(nil)
                continue
            }
            let settings = config.tlsSettings(forListener: listener.name)
            if let shared = contexts.first(where: { $0.settings == settings }) {
                perListener.append(shared.context)
                continue
            }
            do {
                let context = try TLSContext(settings)
                contexts.append((settings, context))
                perListener.append(context)
            } catch {
                throw TLSError(description: "TLS listener \(listener.name): \(error)")
            }
            logger.info(kernelTLSAvailable()
                ? "TLS: the kernel offers TLS offload, but this build encrypts in user space: fetches over TLS read file data into memory and encrypt it"
                : "TLS: no kernel TLS offload here (no /proc/net/tls_stat): fetches over TLS read file data into memory and encrypt it; plaintext listeners keep sendfile",
                metadata: ["listener": "\(listener.name)", "keystore": "\(settings.keystore ?? "-")",
                           "clientAuth": "\(settings.clientAuth.rawValue)", "minProtocol": "\(settings.minProtocol)"])
        }
        tls = perListener
        if config.clusterEtcd.isEmpty {
            cluster = nil
            replicaFetchers = nil
            topicRecords = nil
        } else {
            let me = BrokerRegistration(nodeId: brokerConfig.nodeId, listeners: brokerConfig.listeners.map {
                .init(name: $0.name, securityProtocol: $0.securityProtocol.rawValue, host: $0.host, port: $0.port)
            }, startedAtMs: now)
            let agent = try ClusterAgent(endpoints: config.clusterEtcd, prefix: config.clusterPrefix, registration: me,
                                         leaseSeconds: (config.sessionTimeoutMs + 999) / 1_000, preferredLeaderDelaySeconds: config.preferredLeaderDelaySeconds, logger: logger)
            let records = try TopicRecords(endpoints: config.clusterEtcd, prefix: config.clusterPrefix)
            topicRecords = records
            let membership = ClusterMembership(store: EtcdTopicStore(records), worker: DiskWorker(label: "apus.cluster"))
            mesh.cluster = membership
            // Followers reach their leaders on the listener of the same name (the first plaintext one).
            if let replication = brokerConfig.listeners.first(where: { $0.securityProtocol == .plaintext }) {
                replicaFetchers = ReplicaFetchers(mesh: mesh, nodeId: brokerConfig.nodeId, listener: replication.name, logger: logger)
            } else {
                replicaFetchers = nil
                logger.warning("no PLAINTEXT listener: this broker cannot follow replicated partitions (followers fetch over plaintext)")
            }
            agent.onChange = { [mesh, replicaFetchers] view in
                let state = ClusterState(view)
                membership.publish(state, to: mesh)
                replicaFetchers?.update(state)
            }
            cluster = agent
        }
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
            let shardListeners = index == 0 ? listenerFDs : []
            var network: ShardNetwork?
            if backend.kind == .uring {
                do {
                    network = RingNetwork(try NetRing(), listeners: shardListeners)
                } catch {
                    if index == 0 { logger.warning("no io_uring ring for network I/O; using epoll", metadata: ["error": "\(error)"]) }
                }
            }
            if network == nil {
                let poller = try Poller()
                for fd in shardListeners { try poller.add(fd, writable: false) }
                network = EpollNetwork(poller, listeners: shardListeners)
            }
            let logShard = LogShard(backend: backend)
            logShard.pageCacheBudget = pageCacheBudget / Int64(cpus.count)
            let broker = try Broker(config: brokerConfig, logs: logs, shard: logShard, logger: logger, nowMs: now,
                                    mesh: mesh, index: index)
            let loop = ShardLoop(index: index, cpu: cpu, config: config, logger: logger, network: network!, broker: broker,
                                 listeners: shardListeners, tls: tls, stalls: stalls, metrics: metrics)
            mesh.setWake(index) { loop.wake() }
            loops.append(loop)
        }
        self.loops = loops
        self.backendName = backendName
        if loops.count > 1 {
            var next = 0
            loops[0].distribute = { [loops] accepted in
                let target = loops[next]
                next = (next + 1) % loops.count
                if target === loops[0] { target.add(accepted) } else { target.adopt(accepted) }
            }
        }
    }

    /// Binds a listener, waiting up to 5 s while the address is in use: a previous instance
    /// killed a moment ago can hold its socket until its io_uring ring is torn down.
    private static func listen(_ address: ListenerAddress, logger: Logger) throws -> (fd: Int32, port: UInt16) {
        let deadline = Sys.wallClockMs() + 5_000
        var logged = false
        while true {
            let result = Result { () throws(SystemError) in try Net.listen(host: address.host, port: address.port) }
            switch result {
            case .success(let bound):
                return bound
            case .failure(let error):
                guard error.errno == EADDRINUSE && address.port != 0 && Sys.wallClockMs() < deadline else { throw error }
                if !logged {
                    logger.info("address in use; retrying for up to 5 s", metadata: ["address": "\(address.host):\(address.port)"])
                    logged = true
                }
                Sys.sleep(microseconds: 50_000)
            }
        }
    }

    /// Re-reads the TLS certificate, key and CAs (SIGHUP): new connections use them, established
    /// ones are not dropped. A file that does not load leaves the old context in use.
    public func reloadTLS() {
        var done: [ObjectIdentifier] = []
        for (listener, context) in zip(listeners, tls) {
            guard let context, !done.contains(ObjectIdentifier(context)) else { continue }
            done.append(ObjectIdentifier(context))
            do {
                try context.reload()
                logger.info("TLS certificate reloaded", metadata: ["listener": "\(listener.name)", "keystore": "\(context.settings.keystore ?? "-")"])
            } catch {
                logger.error("TLS certificate reload failed; the previous one stays in use", metadata: ["listener": "\(listener.name)", "error": "\(error)"])
            }
        }
    }

    /// Asks every shard to stop gracefully (any thread; used by the signal handlers).
    public func requestStop() {
        handOffLeadership()
        replicaFetchers?.stop()
        mesh.beginShutdown()
        for loop in loops { loop.requestStop() }
    }

    /// Controlled shutdown in cluster mode: leadership of the replicated partitions this broker
    /// leads moves to other in-sync replicas, and this broker leaves the in-sync replicas, before
    /// the shards stop — then waits (3 s at most) until its own view shows it, so that its shards
    /// answer NOT_LEADER_OR_FOLLOWER and clients move at once instead of after a lease.
    private func handOffLeadership() {
        guard let cluster, let topicRecords, !handedOff.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let me = config.broker.nodeId
        do {
            let moved = try topicRecords.handOff(from: me, live: Set(cluster.view.brokers.map(\.nodeId)))
            guard !moved.isEmpty else { return }
            let deadline = Sys.monotonicNs() + 3_000_000_000
            while Sys.monotonicNs() < deadline && cluster.view.topics.values.contains(where: { t in
                t.leaders.indices.contains { p in t.leaders[p] == me && t.partitionReplicas[p].count > 1 }
            }) {
                Sys.sleep(microseconds: 50_000)
            }
            logger.info("handed off partition leadership before stopping", metadata: ["partitions": "\(moved.count)"])
        } catch {
            logger.warning("could not hand off partition leadership; followers take over when the registration goes", metadata: ["error": "\(error)"])
        }
    }

    /// Runs the shards until a stop is requested; each finishes its in-flight requests (up to
    /// the shutdown deadline) and syncs its logs, then the clean-shutdown marker is written.
    public func run() throws {
        try cluster?.start()  // joined before saying so: a refused node.id never listens
        logger.info("listening", metadata: [
            "address": "\(config.listeners[0].host):\(port)",
            "listeners": "\(ports.indices.map { i in "\(listeners[i].name)(\(listeners[i].securityProtocol.rawValue))://\(config.listeners[i].host):\(ports[i]) advertised \(listeners[i].host):\(listeners[i].port)" }.joined(separator: ", "))",
            "dataDir": "\(config.dataDirectory)",
            "ioBackend": "\(backendName)", "network": "\(loops[0].network.name)", "durability": "\(config.broker.log.durability.rawValue)",
            "shards": "\(loops.count)", "cpus": "\(loops.map(\.cpu))",
            "metrics": "\(metricsServer.map { "\(config.metricsListen!.host):\($0.port)" } ?? "off")",
            "pageCacheBudget": "\(pageCacheBudget == 0 ? "none" : "\(pageCacheBudget >> 20) MiB")",
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
        cluster?.stop()
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
                "longestCause": "\(shard.longestCause)",
                "byCause": "\(StallCause.allCases.map { "\($0.rawValue)=\(shard.byCause[$0.rawValue, default: 0])" }.joined(separator: " "))",
            ])
        }
        let exceptions = ShardThreadContract.exceptions
        if !exceptions.isEmpty {
            logger.info("shard threads took declared disk-wait exceptions", metadata: [
                "byReason": "\(exceptions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))",
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

/// The cluster's topic records on etcd, as the broker's ``ClusterMetadataStore``.
struct EtcdTopicStore: ClusterMetadataStore {
    let records: TopicRecords

    init(_ records: TopicRecords) { self.records = records }

    func createTopic(_ name: String, _ topic: ClusterState.Topic) throws -> Bool {
        try records.create(name, TopicRecord(topic))
    }

    func updateTopic(_ name: String, _ change: (inout ClusterState.Topic) -> Bool) throws -> Bool? {
        try records.update(name) { record in
            guard var topic = ClusterState.Topic(record), change(&topic) else { return false }
            record = TopicRecord(topic)
            return true
        }
    }


    func deleteTopic(_ name: String) throws -> Bool { try records.delete(name) }

}

extension ClusterState {
    /// The broker's view of what the cluster agent read from etcd.
    init(_ view: ClusterView) {
        self.init()
        brokers = view.brokers.map { b in
            Broker(nodeId: b.nodeId, listeners: Dictionary(b.listeners.map { ($0.name, Address(host: $0.host, port: $0.port)) }, uniquingKeysWith: { a, _ in a }))
        }
        for (name, record) in view.topics { topics[name] = Topic(record) }
    }
}

extension ClusterState.Topic {
    /// A topic as its record on etcd has it (nil: a record with an unreadable id).
    init?(_ record: TopicRecord) {
        guard let id = KafkaUUID(base64URL: record.id) else { return nil }
        self.init(id: id, replicas: record.partitionReplicas, configs: record.configs)
        leaders = record.leaders
        isr = record.inSyncReplicas
        epochs = record.leaderEpochs
        adding = record.addingReplicas
        removing = record.removingReplicas
    }
}

extension TopicRecord {
    /// The record of a topic (reassignment lists only while a partition has one).
    init(_ topic: ClusterState.Topic) {
        let reassigning = topic.adding.contains { !$0.isEmpty } || topic.removing.contains { !$0.isEmpty }
        self.init(id: topic.id.base64URL, leaders: topic.leaders, configs: topic.configs, replicas: topic.replicas, isr: topic.isr,
                  epochs: topic.epochs, adding: reassigning ? topic.adding : nil, removing: reassigning ? topic.removing : nil)
    }
}
