import ApusIO
import KafkaWire
import Synchronization

/// The internal topic of committed offsets: one local partition on a single broker, a replicated
/// topic of `offsets.topic.num.partitions` in cluster mode.
public let consumerOffsetsTopic = "__consumer_offsets"

/// The cluster as the broker sees it when its metadata lives on etcd (`cluster.metadata`): the
/// live brokers with their listeners, and every topic's partition leaders. Published by the
/// server's cluster agent (off the shards), read by every shard; changes to topics go through
/// ``ClusterMetadataStore``, whose blocking calls run on ``ClusterMembership/worker``.
public struct ClusterState: Sendable, Equatable {
    public struct Address: Sendable, Equatable {
        public var host: String
        public var port: Int32

        public init(host: String, port: Int32) {
            self.host = host
            self.port = port
        }
    }

    public struct Broker: Sendable, Equatable {
        public var nodeId: Int32
        /// Listener name → advertised address.
        public var listeners: [String: Address]

        public init(nodeId: Int32, listeners: [String: Address]) {
            self.nodeId = nodeId
            self.listeners = listeners
        }
    }

    public struct Topic: Sendable, Equatable {
        public var id: KafkaUUID
        /// The leader's node id, per partition.
        public var leaders: [Int32]
        public var configs: [String: String]
        /// Per partition: every replica (the preferred leader first), the in-sync ones (the
        /// leader among them), the leader epoch.
        public var replicas: [[Int32]]
        public var isr: [[Int32]]
        public var epochs: [Int32]
        /// Per partition under reassignment: the replicas being added (not in sync yet) and
        /// removed; `replicas` holds both until the controller completes it.
        public var adding: [[Int32]]
        public var removing: [[Int32]]

        /// One replica per partition, its leader.
        public init(id: KafkaUUID, leaders: [Int32], configs: [String: String]) {
            self.init(id: id, replicas: leaders.map { [$0] }, configs: configs)
        }

        /// A new topic: each partition led by its first replica, all replicas in sync, epoch 0.
        public init(id: KafkaUUID, replicas: [[Int32]], configs: [String: String]) {
            self.id = id
            leaders = replicas.map { $0.first ?? -1 }
            self.configs = configs
            self.replicas = replicas
            isr = replicas
            epochs = replicas.map { _ in 0 }
            adding = replicas.map { _ in [] }
            removing = adding
        }
    }

    /// Live brokers in node-id order.
    public var brokers: [Broker] = []
    public var topics: [String: Topic] = [:]

    public init() {}

    /// Whether broker `node` is alive.
    public func isLive(_ node: Int32) -> Bool { brokers.contains { $0.nodeId == node } }

    /// Replicas for a new topic's partitions, each on `factor` distinct live brokers: leaders
    /// round-robin over the live brokers from a start chosen by the name (as Kafka spreads
    /// leaders), so topics do not all begin on one broker; each follower the next broker along.
    /// Empty when there are fewer live brokers than `factor`.
    public func placement(_ name: String, partitions: Int32, replicationFactor factor: Int = 1) -> [[Int32]] {
        guard !brokers.isEmpty, factor >= 1, factor <= brokers.count else { return [] }
        let start = Int(fnv1a(name) % UInt64(brokers.count))
        return (0..<Int(partitions)).map { p in (0..<factor).map { brokers[(start + p + $0) % brokers.count].nodeId } }
    }

    /// The `__consumer_offsets` partition that holds `group`'s offsets (the same on every broker).
    public static func offsetsPartition(of group: String, partitions: Int) -> Int32 {
        Int32(fnv1a(group) % UInt64(max(partitions, 1)))
    }

    /// `group`'s `__consumer_offsets` partition with its leader and leader epoch; nil while the
    /// topic does not exist.
    public func offsetsPartition(of group: String) -> (partition: Int32, leader: Int32, epoch: Int32)? {
        guard let offsets = topics[consumerOffsetsTopic], !offsets.leaders.isEmpty else { return nil }
        let p = Self.offsetsPartition(of: group, partitions: offsets.leaders.count)
        return (p, offsets.leaders[Int(p)], offsets.epochs[Int(p)])
    }

    /// The broker coordinating `group`: the live leader of its `__consumer_offsets` partition, so
    /// that the group moves with that partition; nil while the topic does not exist or the
    /// partition has no live leader.
    public func coordinator(of group: String) -> Broker? {
        guard let leader = offsetsPartition(of: group)?.leader else { return nil }
        return brokers.first { $0.nodeId == leader }
    }
}

/// Topic changes written to the cluster's metadata (etcd). Blocking: called on
/// ``ClusterMembership/worker`` only.
public protocol ClusterMetadataStore: Sendable {
    /// Creates the topic unless it exists. Throws a message when the store cannot be reached.
    func createTopic(_ name: String, _ topic: ClusterState.Topic) throws -> Bool
    /// Deletes the topic; false if there was none.
    func deleteTopic(_ name: String) throws -> Bool
    /// Changes a topic's record with a compare-and-swap (read again and `change` called again
    /// when another change came first; `change` returns false to leave it); nil when there is no
    /// such topic, else whether it was written.
    func updateTopic(_ name: String, _ change: (inout ClusterState.Topic) -> Bool) throws -> Bool?
}

/// The cluster as published to the shards, and how to change it.
public final class ClusterMembership: @unchecked Sendable {
    private let state = Mutex<ClusterState>(ClusterState())
    /// Moves at every publication.
    public let version = Atomic<UInt64>(0)
    public let store: any ClusterMetadataStore
    /// Runs the store's blocking calls (never a shard).
    public let worker: DiskWorker

    public init(store: any ClusterMetadataStore, worker: DiskWorker) {
        self.store = store
        self.worker = worker
    }

    public var current: ClusterState { state.withLock { $0 } }

    /// Publishes a new view (the agent's thread) and, when it changed, has shard 0 of `mesh`
    /// bring the local logs in line (``Broker/reconcileWithCluster()``).
    public func publish(_ fresh: ClusterState, to mesh: ShardMesh) {
        guard publish(fresh) else { return }
        for shard in 0..<mesh.count { mesh.post(to: shard) { $0.clusterViewMoved() } }
    }

    /// Publishes a new view; returns whether it changed.
    @discardableResult
    func publish(_ fresh: ClusterState) -> Bool {
        let changed = state.withLock { old in
            guard old != fresh else { return false }
            old = fresh
            return true
        }
        if changed { version.add(1, ordering: .releasing) }
        return changed
    }
}
