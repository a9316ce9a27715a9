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

/// Kafka error codes the broker returns (Kafka's names: `KafkaErrorNames`). The one enum for
/// every handler and both group coordinators.
public enum ErrorCode: Int16, Sendable {
    case none = 0
    case offsetOutOfRange = 1
    case corruptMessage = 2
    case unknownTopicOrPartition = 3
    case leaderNotAvailable = 5
    case messageTooLarge = 10
    case offsetMetadataTooLarge = 12
    case coordinatorNotAvailable = 15
    case invalidTopic = 17
    case notEnoughReplicas = 19
    case invalidRequiredAcks = 21
    case illegalGeneration = 22
    case inconsistentGroupProtocol = 23
    case invalidGroupId = 24
    case unknownMemberId = 25
    case invalidSessionTimeout = 26
    case rebalanceInProgress = 27
    case unsupportedVersion = 35
    case topicAlreadyExists = 36
    case invalidPartitions = 37
    case invalidReplicationFactor = 38
    case invalidReplicaAssignment = 39
    case invalidConfig = 40
    case invalidRequest = 42
    case unsupportedForMessageFormat = 43
    case outOfOrderSequenceNumber = 45
    case duplicateSequenceNumber = 46
    case invalidProducerEpoch = 47
    case kafkaStorageError = 56
    case nonEmptyGroup = 68
    case groupIdNotFound = 69
    case unknownLeaderEpoch = 75
    case memberIdRequired = 79
    case fencedInstanceId = 82
    case groupSubscribedToTopic = 86
    case unknownTopicId = 100
    case fencedMemberEpoch = 110
    case unsupportedAssignor = 112
    case staleMemberEpoch = 113
    case mismatchedEndpointType = 114
    case invalidRegularExpression = 128
    case unknownServerError = -1
}

/// An error code can travel as a failure (`Result<_, ErrorCode>`) between shards.
extension ErrorCode: Error {}
