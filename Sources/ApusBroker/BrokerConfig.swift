import ApusStorage

/// What the broker needs to know about itself and its defaults (Kafka's names where they exist).
public struct BrokerConfig: Sendable {
    /// `node.id`: 1 as in Kafka's quick start; some clients (kafka-go) reject a node id of 0.
    public var nodeId: Int32 = 1
    /// The host and port clients are told to connect to (Metadata, FindCoordinator).
    public var advertisedHost = "127.0.0.1"
    public var advertisedPort: Int32 = 9092
    public var clusterId = "apus-cluster"
    /// `auto.create.topics.enable`
    public var autoCreateTopics = true
    /// `num.partitions`: partitions of an auto-created topic, or of CreateTopics with -1.
    public var numPartitions: Int32 = 1
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

    public init() {}
}
