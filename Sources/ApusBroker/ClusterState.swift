import ApusIO
import KafkaWire
import Synchronization

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

        public init(id: KafkaUUID, leaders: [Int32], configs: [String: String]) {
            self.id = id
            self.leaders = leaders
            self.configs = configs
        }
    }

    /// Live brokers in node-id order.
    public var brokers: [Broker] = []
    public var topics: [String: Topic] = [:]

    public init() {}

    /// Whether broker `node` is alive.
    func isLive(_ node: Int32) -> Bool { brokers.contains { $0.nodeId == node } }

    /// Partition leaders for a new topic: round-robin over the live brokers from a start chosen
    /// by the name (as Kafka spreads leaders), so topics do not all begin on one broker.
    public func placement(_ name: String, partitions: Int32) -> [Int32] {
        guard !brokers.isEmpty else { return [] }
        let start = Int(fnv1a(name) % UInt64(brokers.count))
        return (0..<Int(partitions)).map { brokers[(start + $0) % brokers.count].nodeId }
    }

    /// The broker coordinating `group`: the same answer on every broker with the same view.
    public func coordinator(of group: String) -> Broker? {
        guard !brokers.isEmpty else { return nil }
        return brokers[Int(fnv1a(group) % UInt64(brokers.count))]
    }
}

/// Topic changes written to the cluster's metadata (etcd). Blocking: called on
/// ``ClusterMembership/worker`` only.
public protocol ClusterMetadataStore: Sendable {
    /// Creates the topic unless it exists. Throws a message when the store cannot be reached.
    func createTopic(_ name: String, _ topic: ClusterState.Topic) throws -> Bool
    /// Deletes the topic; false if there was none.
    func deleteTopic(_ name: String) throws -> Bool
    /// Replaces the topic's configuration overrides (a compare-and-swap on its record, retried
    /// when another change came first); false if there is no such topic.
    func setTopicConfigs(_ name: String, _ configs: [String: String]) throws -> Bool
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
        if publish(fresh) { mesh.post(to: 0) { $0.reconcileWithCluster() } }
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
