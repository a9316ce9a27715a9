import ApusIO
import Foundation
import Logging
import Synchronization

/// A broker as the cluster's registry on etcd has it: its id and the address of every listener.
public struct BrokerRegistration: Codable, Sendable, Equatable {
    public struct Listener: Codable, Sendable, Equatable {
        public var name: String
        public var securityProtocol: String
        public var host: String
        public var port: Int32

        public init(name: String, securityProtocol: String, host: String, port: Int32) {
            self.name = name
            self.securityProtocol = securityProtocol
            self.host = host
            self.port = port
        }
    }

    public var nodeId: Int32
    public var listeners: [Listener]
    public var startedAtMs: Int64

    public init(nodeId: Int32, listeners: [Listener], startedAtMs: Int64) {
        self.nodeId = nodeId
        self.listeners = listeners
        self.startedAtMs = startedAtMs
    }
}

/// A topic as the cluster's metadata has it: its id (base64url, as Kafka writes topic ids), the
/// leader of each partition, its configuration overrides, and per partition its replicas, the
/// in-sync ones and the leader epoch (absent in records written before replication: then the
/// leader is the one replica).
public struct TopicRecord: Codable, Sendable, Equatable {
    public var id: String
    public var leaders: [Int32]
    public var configs: [String: String]
    public var replicas: [[Int32]]?
    public var isr: [[Int32]]?
    public var epochs: [Int32]?
    /// Per partition under reassignment, the replicas being added and removed (Kafka's
    /// AlterPartitionReassignments): `replicas` holds both until the added ones are in sync.
    public var adding: [[Int32]]?
    public var removing: [[Int32]]?

    public init(id: String, leaders: [Int32], configs: [String: String], replicas: [[Int32]]? = nil, isr: [[Int32]]? = nil, epochs: [Int32]? = nil,
                adding: [[Int32]]? = nil, removing: [[Int32]]? = nil) {
        self.id = id
        self.leaders = leaders
        self.configs = configs
        self.replicas = replicas
        self.isr = isr
        self.epochs = epochs
        self.adding = adding
        self.removing = removing
    }

    /// Each partition's replicas (a record from before replication: its leader alone).
    public var partitionReplicas: [[Int32]] { replicas.flatMap { $0.count == leaders.count ? $0 : nil } ?? leaders.map { [$0] } }
    /// Each partition's in-sync replicas (all its replicas when the record has none).
    public var inSyncReplicas: [[Int32]] { isr.flatMap { $0.count == leaders.count ? $0 : nil } ?? partitionReplicas }
    /// Each partition's leader epoch (0 when the record has none).
    public var leaderEpochs: [Int32] { epochs.flatMap { $0.count == leaders.count ? $0 : nil } ?? leaders.map { _ in 0 } }
    /// Each partition's replicas being added by a reassignment (none when the record has none).
    public var addingReplicas: [[Int32]] { adding.flatMap { $0.count == leaders.count ? $0 : nil } ?? leaders.map { _ in [] } }
    /// Each partition's replicas being removed by a reassignment.
    public var removingReplicas: [[Int32]] { removing.flatMap { $0.count == leaders.count ? $0 : nil } ?? leaders.map { _ in [] } }
}

/// The cluster as one broker last read it from etcd.
public struct ClusterView: Sendable, Equatable {
    /// Live brokers (their registration's lease is alive), by node id.
    public var brokers: [BrokerRegistration] = []
    /// Every topic, by name.
    public var topics: [String: TopicRecord] = [:]
    /// The broker holding the controller key, if any.
    public var controller: Int32?
    /// The etcd revision this view was read at.
    public var revision: Int64 = 0

    public init() {}
}

/// Where the cluster's keys live under `cluster.prefix`.
public struct ClusterKeys: Sendable {
    public let prefix: String
    public init(prefix: String) { self.prefix = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix }
    public var brokers: String { prefix + "/brokers/" }
    public func broker(_ id: Int32) -> String { brokers + String(id) }
    public var controller: String { prefix + "/controller" }
    public var topics: String { prefix + "/topics/" }
    public func topic(_ name: String) -> String { topics + name }

    /// Changes topic `name`'s record with a compare-and-swap on its revision, reading it again
    /// when another change came first; `change` returns false to leave it as it is. Returns nil
    /// when there is no such topic, else whether the record was written.
    public func update(_ client: EtcdClient, topic name: String, _ change: (inout TopicRecord) -> Bool) throws(EtcdError) -> Bool? {
        for _ in 0..<16 {
            guard let kv = try client.get(topic(name)) else { return nil }
            var record: TopicRecord
            let bytes: [UInt8]
            do {
                record = try JSONDecoder().decode(TopicRecord.self, from: Data(kv.value))
                guard change(&record) else { return false }
                bytes = Array(try JSONEncoder().encode(record))
            } catch {
                throw EtcdError(description: "topic \(name)'s record: \(error)")
            }
            if try client.compareAndSwap(topic(name), modRevision: kv.modRevision, bytes) { return true }
        }
        throw EtcdError(description: "topic \(name) kept changing; it was not written")
    }

    /// Reads the live brokers, the topics and the controller.
    public func read(_ client: EtcdClient) throws(EtcdError) -> ClusterView {
        var view = ClusterView()
        let (kvs, revision) = try client.range(prefix: brokers)
        view.revision = revision
        view.brokers = kvs.compactMap { try? JSONDecoder().decode(BrokerRegistration.self, from: Data($0.value)) }.sorted { $0.nodeId < $1.nodeId }
        view.controller = try client.get(controller).flatMap { Int32(String(decoding: $0.value, as: UTF8.self)) }
        for kv in try client.range(prefix: topics).kvs {
            guard let record = try? JSONDecoder().decode(TopicRecord.self, from: Data(kv.value)) else { continue }
            view.topics[String(kv.key.dropFirst(topics.count))] = record
        }
        return view
    }
}

/// One broker's membership in a cluster whose metadata is on etcd (`cluster.metadata`): it
/// registers under a lease (so the registration disappears when the broker dies), campaigns for
/// the controller key (held under the same lease: a dead controller's key goes with it and
/// another broker takes it), keeps the lease alive and re-reads the cluster every second, on a
/// thread of its own — never on a shard thread, since every call waits on the network.
///
/// Topics are placed by partition (one leader each, no replicas yet: issue 16); their records
/// are written by ``EtcdTopicStore``-like callers with ``ClusterKeys``.
public final class ClusterAgent: @unchecked Sendable {
    public let keys: ClusterKeys
    let client: EtcdClient
    let registration: BrokerRegistration
    let logger: Logger
    let leaseSeconds: Int64
    private let state = Mutex<ClusterView>(ClusterView())
    private let stopping = Atomic<Bool>(false)
    private var lease: Int64 = 0
    /// Partitions reported offline (logged once until they have a leader again).
    private var offline: Set<String> = []
    let preferredLeaderDelaySeconds: Int64?
    /// Partitions whose preferred replica is in sync but does not lead, since when.
    private var preferredWaiting: [String: Date] = [:]
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    /// Called on the agent's thread with each view that differs from the one before.
    public var onChange: (@Sendable (ClusterView) -> Void)?

    /// - Parameter preferredLeaderDelaySeconds: as controller, give a partition's leadership back
    ///   to its preferred replica once it has been in sync this long (nil: never).
    public init(endpoints: [String], prefix: String, registration: BrokerRegistration, leaseSeconds: Int64 = 6,
                preferredLeaderDelaySeconds: Int64? = nil, logger: Logger) throws(EtcdError) {
        self.preferredLeaderDelaySeconds = preferredLeaderDelaySeconds
        client = try EtcdClient(endpoints: endpoints)
        keys = ClusterKeys(prefix: prefix)
        self.registration = registration
        self.leaseSeconds = leaseSeconds
        self.logger = logger
    }

    /// The cluster as last read (any thread).
    public var view: ClusterView { state.withLock { $0 } }

    /// Registers this broker (refusing a node id a live broker holds), campaigns, and starts
    /// the keep-alive thread.
    public func start() throws(EtcdError) {
        try register()
        try refresh()
        let thread = Thread { [self] in
            var turn = 0
            while !stopping.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: 0.25)
                if stopping.load(ordering: .acquiring) { break }
                turn += 1
                tick(keepAlive: turn % 4 == 0)  // the lease every second, the view four times a second
            }
            done.signal()
        }
        thread.name = "apus-cluster"
        thread.start()
        self.thread = thread
    }

    /// Leaves the cluster: the lease is revoked, so the registration (and the controller key,
    /// if held) go at once instead of after the lease's TTL.
    public func stop() {
        guard thread != nil, !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        done.wait()
        do {
            try client.revoke(lease)
            logger.info("left the cluster", metadata: ["nodeId": "\(registration.nodeId)"])
        } catch {
            logger.warning("could not revoke the cluster lease; the registration expires with it", metadata: ["error": "\(error)"])
        }
    }

    /// Stops without revoking, as a crash would (tests): the registration outlives the broker
    /// until its lease expires.
    public func abandon() {
        guard thread != nil, !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        done.wait()
    }

    /// Registers under a new lease. A registration of this node id still alive is waited for
    /// up to a lease's time (a broker restarted right after being killed finds its own), then
    /// refused: another live broker has the id.
    private func register() throws(EtcdError) {
        lease = try client.grantLease(ttlSeconds: leaseSeconds)
        let record: [UInt8]
        do { record = Array(try JSONEncoder().encode(registration)) } catch { throw EtcdError(description: "encoding the registration: \(error)") }
        let deadline = Date().addingTimeInterval(Double(leaseSeconds) + 1)
        var waited = false
        while try !client.create(keys.broker(registration.nodeId), record, lease: lease) {
            if Date() > deadline {
                try? client.revoke(lease)
                throw EtcdError(description: "node.id \(registration.nodeId) is registered by a live broker under \(keys.prefix); each broker needs its own node.id")
            }
            if !waited {
                waited = true
                logger.info("node.id is still registered (a previous run of this broker?); waiting for that lease to expire",
                            metadata: ["nodeId": "\(registration.nodeId)", "leaseSeconds": "\(leaseSeconds)"])
            }
            Thread.sleep(forTimeInterval: 0.25)
            _ = try client.keepAlive(lease)
        }
        logger.info("registered in the cluster", metadata: ["nodeId": "\(registration.nodeId)", "prefix": "\(keys.prefix)", "leaseSeconds": "\(leaseSeconds)"])
    }

    /// Campaigns for the controller key and re-reads the cluster.
    private func refresh() throws(EtcdError) {
        if try client.create(keys.controller, Array(String(registration.nodeId).utf8), lease: lease) {
            logger.info("elected controller", metadata: ["nodeId": "\(registration.nodeId)"])
        }
        var fresh = try keys.read(client)
        if fresh.controller == registration.nodeId, try electLeaders(fresh) { fresh = try keys.read(client) }
        let old = state.withLock { view in
            defer { view = fresh }
            return view
        }
        if old.brokers.map(\.nodeId) != fresh.brokers.map(\.nodeId) || old.controller != fresh.controller {
            logger.info("cluster membership", metadata: ["brokers": "\(fresh.brokers.map(\.nodeId))", "controller": "\(fresh.controller.map(String.init) ?? "none")"])
        }
        if old != fresh { onChange?(fresh) }
    }

    /// The controller's duty when brokers go (Kafka's controller on a broker failure): each
    /// replicated partition whose leader's registration is gone is led next by its first replica
    /// that is alive and in sync, with the leader epoch raised and the in-sync replicas reduced to
    /// the live ones — a compare-and-swap on the topic's record, so a change made meanwhile wins
    /// and the next pass looks again. With no live in-sync replica the partition stays offline
    /// (no unclean election). A partition whose leader lives loses the dead brokers from its
    /// in-sync replicas at once (as Kafka's controller does), so acks=all goes on after the
    /// lease's TTL rather than after `replica.lag.time.max.ms`. Returns whether a record changed.
    private func electLeaders(_ view: ClusterView) throws(EtcdError) -> Bool {
        let live = Set(view.brokers.map(\.nodeId))
        var changed = false
        for name in view.topics.keys.sorted() {
            var elected: [(partition: Int, leader: Int32, epoch: Int32, isr: [Int32])] = []
            var completed: [(partition: Int, replicas: [Int32], leader: Int32)] = []
            var shrunk: [(partition: Int, isr: [Int32])] = []
            let written = try keys.update(client, topic: name) { record in
                var replicas = record.partitionReplicas, adding = record.addingReplicas, removing = record.removingReplicas
                var isr = record.inSyncReplicas, epochs = record.leaderEpochs
                elected = []
                completed = []
                shrunk = []
                // A reassignment is complete once every replica it keeps is live and in sync: the
                // removed ones go, and the leader too if it was one of them (epoch raised).
                for p in record.leaders.indices where !adding[p].isEmpty || !removing[p].isEmpty {
                    let target = replicas[p].filter { !removing[p].contains($0) }
                    guard !target.isEmpty, target.allSatisfy({ isr[p].contains($0) && live.contains($0) }) else { continue }
                    replicas[p] = target
                    isr[p] = isr[p].filter(target.contains)
                    adding[p] = []
                    removing[p] = []
                    if !target.contains(record.leaders[p]) { record.leaders[p] = target[0] }
                    epochs[p] += 1
                    completed.append((p, target, record.leaders[p]))
                }
                for p in record.leaders.indices where replicas[p].count > 1 {
                    let key = "\(name)-\(p)"
                    var next: Int32?
                    if live.contains(record.leaders[p]) {
                        let kept = isr[p].filter(live.contains)
                        if kept.count < isr[p].count && kept.contains(record.leaders[p]) {
                            isr[p] = kept
                            shrunk.append((p, kept))
                        }
                        next = preferredLeader(key, replicas[p], isr[p], leader: record.leaders[p], live: live)
                    } else {
                        isr[p] = isr[p].filter(live.contains)
                        next = replicas[p].first(where: isr[p].contains)
                        if next == nil, offline.insert(key).inserted {
                            logger.warning("partition offline: no live in-sync replica to lead it", metadata: ["topic": "\(name)", "partition": "\(p)", "isr": "\(record.inSyncReplicas[p])"])
                        }
                    }
                    guard let next else { continue }
                    offline.remove(key)
                    record.leaders[p] = next
                    epochs[p] += 1
                    elected.append((p, next, epochs[p], isr[p]))
                }
                record.isr = isr
                record.epochs = epochs
                record.replicas = replicas
                let moving = adding.contains { !$0.isEmpty } || removing.contains { !$0.isEmpty }
                record.adding = moving ? adding : nil
                record.removing = moving ? removing : nil
                return !elected.isEmpty || !completed.isEmpty || !shrunk.isEmpty
            }
            guard written == true else { continue }
            changed = true
            for c in completed {
                logger.info("completed a partition reassignment", metadata: ["topic": "\(name)", "partition": "\(c.partition)", "replicas": "\(c.replicas)", "leader": "\(c.leader)"])
            }
            for s in shrunk {
                logger.info("removed brokers that are gone from the in-sync replicas", metadata: ["topic": "\(name)", "partition": "\(s.partition)", "isr": "\(s.isr)"])
            }
            for e in elected {
                logger.info("elected a partition leader", metadata: ["topic": "\(name)", "partition": "\(e.partition)", "leader": "\(e.leader)", "epoch": "\(e.epoch)", "isr": "\(e.isr)"])
            }
        }
        return changed
    }

    /// Preferred leaders (Kafka's auto.leader.rebalance): a live leader gives way to the
    /// partition's first replica once that one has been in sync for the delay; returns it then.
    private func preferredLeader(_ key: String, _ replicas: [Int32], _ isr: [Int32], leader: Int32, live: Set<Int32>) -> Int32? {
        let preferred = replicas[0]
        guard let delay = preferredLeaderDelaySeconds, leader != preferred, live.contains(preferred), isr.contains(preferred) else {
            preferredWaiting[key] = nil
            return nil
        }
        let since = preferredWaiting[key] ?? Date()
        preferredWaiting[key] = since
        guard Date().timeIntervalSince(since) >= Double(delay) else { return nil }
        preferredWaiting[key] = nil
        return preferred
    }

    private func tick(keepAlive: Bool) {
        do {
            if keepAlive, try client.keepAlive(lease) <= 0 {
                // Expired (etcd was unreachable for longer than the TTL): register again.
                logger.warning("cluster lease expired; registering again", metadata: ["nodeId": "\(registration.nodeId)"])
                try register()
            }
            try refresh()
        } catch {
            logger.warning("cluster metadata unreachable", metadata: ["error": "\(error)"])
        }
    }
}

/// Creates and deletes topic records (its own connection: the agent's thread keeps the other).
/// Thread-safe through a lock; the broker calls it from one worker thread.
public final class TopicRecords: @unchecked Sendable {
    private let client: Mutex<EtcdClient>
    public let keys: ClusterKeys

    public init(endpoints: [String], prefix: String) throws(EtcdError) {
        client = Mutex(try EtcdClient(endpoints: endpoints))
        keys = ClusterKeys(prefix: prefix)
    }

    /// Writes the record unless the topic exists; true if this call created it.
    public func create(_ name: String, _ record: TopicRecord) throws -> Bool {
        let bytes = Array(try JSONEncoder().encode(record))
        return try client.withLock { client in try client.create(keys.topic(name), bytes) }
    }

    /// Controlled shutdown (Kafka's): broker `node` is leaving, so each replicated partition it
    /// leads goes to its first other in-sync replica that is alive (epoch raised), and it leaves
    /// the in-sync replicas of every partition, so that acks=all does not wait for it. Returns the
    /// partitions whose leadership moved; those without another live in-sync replica stay.
    public func handOff(from node: Int32, live: Set<Int32>) throws -> [String] {
        try client.withLock { client in
            var moved: [String] = []
            for kv in try client.range(prefix: keys.topics).kvs {
                let name = String(kv.key.dropFirst(keys.topics.count))
                var movedHere: [String] = []
                let written = try keys.update(client, topic: name) { record in
                    let replicas = record.partitionReplicas
                    var isr = record.inSyncReplicas, epochs = record.leaderEpochs
                    movedHere = []
                    for p in record.leaders.indices where replicas[p].count > 1 && isr[p].contains(node) {
                        let others = isr[p].filter { $0 != node }
                        if record.leaders[p] == node {
                            guard let next = replicas[p].first(where: { $0 != node && others.contains($0) && live.contains($0) }) else { continue }
                            record.leaders[p] = next
                            epochs[p] += 1
                            movedHere.append("\(name)-\(p)")
                        }
                        isr[p] = others
                    }
                    guard isr != record.inSyncReplicas || !movedHere.isEmpty else { return false }
                    record.isr = isr
                    record.epochs = epochs
                    return true
                }
                if written == true { moved += movedHere }
            }
            return moved
        }
    }

    /// Changes the record with a compare-and-swap (``ClusterKeys/update(_:topic:_:)``): nil when
    /// there is no such topic, else whether it was written.
    public func update(_ name: String, _ change: (inout TopicRecord) -> Bool) throws -> Bool? {
        try withoutActuallyEscaping(change) { change in
            nonisolated(unsafe) let change = change  // called on this thread, under the lock
            let sendable: @Sendable (inout TopicRecord) -> Bool = { change(&$0) }
            return try client.withLock { client in try keys.update(client, topic: name, sendable) }
        }
    }

    /// Deletes the record; false if there was none.
    public func delete(_ name: String) throws -> Bool {
        try client.withLock { client in try client.delete(keys.topic(name)) } > 0
    }
}
