import ApusStorage

/// What the broker needs to know about itself and its defaults (Kafka's names where they exist).
public struct BrokerConfig: Sendable {
    /// `node.id`: 1 as in Kafka's quick start; some clients (kafka-go) reject a node id of 0.
    public var nodeId: Int32 = 1
    /// The listeners, in `listeners` order, with the address each advertises (Metadata,
    /// FindCoordinator, DescribeCluster answer with the listener the request came in on).
    public var listeners = [AdvertisedListener(name: "PLAINTEXT", securityProtocol: .plaintext, host: "127.0.0.1", port: 9092)]
    public var clusterId = "apus-cluster"
    /// `auto.create.topics.enable`
    public var autoCreateTopics = true
    /// `num.partitions`: partitions of an auto-created topic, or of CreateTopics with -1.
    public var numPartitions: Int32 = 1
    /// `default.replication.factor` (cluster mode): replicas of an auto-created topic, or of
    /// CreateTopics with -1.
    public var defaultReplicationFactor = 1
    /// `replica.lag.time.max.ms` (cluster mode): a follower not caught up for this long leaves
    /// the in-sync replicas.
    public var replicaLagTimeMaxMs: Int64 = 10_000
    /// `offsets.topic.num.partitions` (cluster mode): partitions of the replicated
    /// `__consumer_offsets`; a group is coordinated by the leader of the one its id hashes to.
    public var offsetsTopicPartitions: Int32 = 50
    /// `offsets.topic.replication.factor` (cluster mode): its replicas.
    public var offsetsTopicReplicationFactor = 3
    /// `offsets.commit.timeout.ms` (cluster mode): how long a commit waits for the in-sync replicas.
    public var offsetCommitTimeoutMs: Int64 = 5_000
    /// `message.max.bytes`: the largest record batch accepted.
    public var messageMaxBytes = 1 << 20 + 12 * 1024
    /// `fetch.max.bytes`: the most record data one Fetch response carries (beyond the first batch).
    public var fetchMaxBytes = 55 << 20
    /// Default log settings for new topics (durability included).
    public var log = LogConfig()
    /// Consumer group settings (session timeout bounds, initial rebalance delay).
    public var groups = GroupCoordinatorConfig()
    /// Settings of the consumer group protocol (KIP-848, `group.protocol=consumer`).
    public var consumerGroups = ConsumerProtocolConfig()
    /// `sasl.enabled.mechanisms`: what SASL listeners offer.
    public var saslMechanisms: [SaslMechanism] = [.scramSha256, .scramSha512, .plain]
    /// `connections.max.reauth.ms` (KIP-368): a SASL session must re-authenticate this often;
    /// 0: never.
    public var reauthenticationMs: Int64 = 0
    /// `authorizer`, `super.users`, `allow.everyone.if.no.acl.found`.
    public var authorizer = AuthorizerConfig()

    public init() {}

    /// What clients of listener `index` are told (the first listener for an unknown index).
    public func advertised(_ index: Int) -> AdvertisedListener {
        listeners.indices.contains(index) ? listeners[index] : listeners[0]
    }
}

/// Authorization settings (Kafka's names): off by default, as Kafka without `authorizer.class.name`.
public struct AuthorizerConfig: Sendable {
    /// `authorizer = acl`: every request is checked against the ACLs.
    public var enabled = false
    /// `super.users`: principals allowed everything (`User:admin;User:ops`).
    public var superUsers: Set<String> = []
    /// `allow.everyone.if.no.acl.found`: a resource without any ACL is open to everyone.
    public var allowEveryoneIfNoAclFound = false

    public init() {}
}
