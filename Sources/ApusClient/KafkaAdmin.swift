import KafkaProtocol
import KafkaWire

/// A topic as `apus topic describe` shows it.
public struct TopicInfo: Codable, Sendable, Equatable {
    public struct Partition: Codable, Sendable, Equatable {
        public var partition: Int32
        public var leader: Int32
        public var replicas: [Int32]
        public var isr: [Int32]
        public var startOffset: Int64
        public var endOffset: Int64
    }
    public var name: String
    public var isInternal: Bool
    public var partitions: [Partition]
    /// The topic's configuration (DescribeConfigs), when asked for.
    public var configs: [ConfigValue]?
}

/// One configuration value of a topic, as DescribeConfigs reports it.
public struct ConfigValue: Codable, Sendable, Equatable {
    public var name: String
    public var value: String?
    /// Kafka's config source: DEFAULT_CONFIG, STATIC_BROKER_CONFIG, DYNAMIC_TOPIC_CONFIG, …
    public var source: String
    public var readOnly: Bool
}

/// A group as `apus group list` shows it.
public struct GroupListing: Codable, Sendable, Equatable {
    public var groupId: String
    public var protocolType: String
    /// Empty when the broker does not report states (ListGroups before v4).
    public var state: String
}

/// A group as `apus group describe` shows it: members, what each is assigned, and per
/// partition the committed offset, the log end offset and the lag.
public struct GroupInfo: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var memberId: String
        public var groupInstanceId: String?
        public var clientId: String
        public var host: String
        /// Assigned partitions (decoded from the consumer protocol's assignment).
        public var assignment: [String: [Int32]]
    }
    public struct Offset: Codable, Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var committed: Int64
        public var endOffset: Int64
        public var lag: Int64
        /// The member assigned this partition, if any.
        public var memberId: String?
    }
    public var groupId: String
    public var state: String
    public var protocolType: String
    public var protocolName: String
    public var coordinator: Int32
    public var members: [Member]
    public var offsets: [Offset]
}

/// Admin queries made the way Kafka's own tools make them, so that they work against any
/// Kafka-compatible cluster: topics from Metadata, offsets from each partition's leader, group
/// listings from every broker, a group's description and offsets from its coordinator.
///
/// Not thread-safe: one owner thread.
public final class KafkaAdmin {
    let bootstrap: KafkaConnection
    private var brokers: [Int32: String] = [:]
    private var connections: [Int32: KafkaConnection] = [:]

    public init(bootstrap: String, clientId: String = "apus-admin") throws(ClientError) {
        self.bootstrap = try KafkaConnection(bootstrap: bootstrap, clientId: clientId)
    }

    /// Metadata for `topics` (nil: every topic); learns the brokers' addresses.
    public func metadata(topics: [String]?) throws(ClientError) -> MetadataResponse {
        let version = try bootstrap.version(of: MetadataRequest.self, supported: 1...8)
        var request = MetadataRequest()
        request.topics = topics?.map { MetadataRequest.MetadataRequestTopic(name: $0) }
        request.allowAutoTopicCreation = false
        let response = try bootstrap.roundTrip(request, version: version)
        for b in response.brokers { brokers[b.nodeId] = "\(b.host):\(b.port)" }
        return response
    }

    /// A connection to broker `node` (the bootstrap connection's broker included).
    func connection(to node: Int32) throws(ClientError) -> KafkaConnection {
        if let c = connections[node] { return c }
        if brokers.isEmpty { _ = try metadata(topics: []) }
        guard let address = brokers[node] else { throw ClientError("broker \(node) is not in the cluster's metadata") }
        let c = try KafkaConnection(bootstrap: address, clientId: bootstrap.clientId)
        connections[node] = c
        return c
    }

    /// Every topic's name, sorted (internal ones last).
    public func listTopics(includeInternal: Bool = false) throws(ClientError) -> [String] {
        try metadata(topics: nil).topics.filter { $0.errorCode == 0 && (includeInternal || !$0.isInternal) }.map { $0.name ?? "" }.sorted()
    }

    /// Topics with their partitions' leaders, replicas and start/end offsets (nil: every topic).
    public func describeTopics(_ names: [String]?) throws(ClientError) -> [TopicInfo] {
        let response = try metadata(topics: names)
        var out: [TopicInfo] = []
        for t in response.topics.sorted(by: { $0.name ?? "" < $1.name ?? "" }) {
            let name = t.name ?? ""
            if t.errorCode != 0 {
                throw ClientError("topic \(name): \(Self.errorName(t.errorCode))", kafkaErrorCode: t.errorCode)
            }
            var partitions: [TopicInfo.Partition] = t.partitions.sorted { $0.partitionIndex < $1.partitionIndex }.map {
                TopicInfo.Partition(partition: $0.partitionIndex, leader: $0.leaderId, replicas: $0.replicaNodes, isr: $0.isrNodes, startOffset: -1, endOffset: -1)
            }
            let byLeader = Dictionary(grouping: partitions.indices, by: { partitions[$0].leader })
            for (leader, indices) in byLeader where leader >= 0 {
                let ids = indices.map { partitions[$0].partition }
                let start = try offsets(at: leader, topic: name, partitions: ids, timestamp: -2)
                let end = try offsets(at: leader, topic: name, partitions: ids, timestamp: -1)
                for i in indices {
                    partitions[i].startOffset = start[partitions[i].partition] ?? -1
                    partitions[i].endOffset = end[partitions[i].partition] ?? -1
                }
            }
            out.append(TopicInfo(name: name, isInternal: t.isInternal, partitions: partitions))
        }
        return out
    }

    /// ListOffsets on broker `node` for `partitions` of `topic` (-1 latest, -2 earliest).
    func offsets(at node: Int32, topic: String, partitions: [Int32], timestamp: Int64) throws(ClientError) -> [Int32: Int64] {
        let c = try connection(to: node)
        let version = try c.version(of: ListOffsetsRequest.self, supported: 1...7)
        var request = ListOffsetsRequest()
        request.replicaId = -1
        request.topics = [.init(name: topic, partitions: partitions.map { .init(partitionIndex: $0, timestamp: timestamp) })]
        var out: [Int32: Int64] = [:]
        for t in try c.roundTrip(request, version: version).topics {
            for p in t.partitions where p.errorCode == 0 { out[p.partitionIndex] = p.offset }
        }
        return out
    }

    /// Creates a topic with configuration overrides (replication factor 1 on a single broker's
    /// terms: CreateTopics).
    public func createTopic(_ name: String, partitions: Int, configs: [String: String] = [:]) throws(ClientError) {
        try bootstrap.createTopic(name, partitions: partitions, configs: configs)
    }

    /// Changes a topic's configuration (IncrementalAlterConfigs): overrides `set`, returns the
    /// keys of `delete` to the broker's values, and keeps every other key.
    public func alterTopicConfigs(_ topic: String, set: [String: String], delete: [String]) throws(ClientError) {
        let version = try bootstrap.version(of: IncrementalAlterConfigsRequest.self, supported: 0...1)
        let changes = set.keys.sorted().map { IncrementalAlterConfigsRequest.AlterableConfig(name: $0, configOperation: 0, value: set[$0]) }
            + delete.map { IncrementalAlterConfigsRequest.AlterableConfig(name: $0, configOperation: 1, value: nil) }
        let request = IncrementalAlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: topic, configs: changes)])
        for result in try bootstrap.roundTrip(request, version: version).responses where result.errorCode != 0 {
            throw ClientError("IncrementalAlterConfigs \(topic): \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
    }

    /// Grows a topic to `total` partitions (CreatePartitions).
    public func addPartitions(_ topic: String, total: Int) throws(ClientError) {
        let version = try bootstrap.version(of: CreatePartitionsRequest.self, supported: 0...3)
        let request = CreatePartitionsRequest(topics: [.init(name: topic, count: Int32(total), assignments: nil)], timeoutMs: 30_000)
        for result in try bootstrap.roundTrip(request, version: version).results where result.errorCode != 0 {
            throw ClientError("CreatePartitions \(topic): \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
    }

    /// Deletes topics (DeleteTopics); an error names the first topic that failed.
    public func deleteTopics(_ names: [String]) throws(ClientError) {
        let version = try bootstrap.version(of: DeleteTopicsRequest.self, supported: 0...5)
        var request = DeleteTopicsRequest()
        request.topicNames = names
        request.timeoutMs = 30_000
        for result in try bootstrap.roundTrip(request, version: version).responses where result.errorCode != 0 {
            throw ClientError("DeleteTopics \(result.name ?? "?"): \(Self.errorName(result.errorCode))", kafkaErrorCode: result.errorCode)
        }
    }

    /// Every user's SCRAM mechanisms and iteration counts (DescribeUserScramCredentials; nil: all users).
    public func describeScramUsers(_ users: [String]?) throws(ClientError) -> [(user: String, mechanisms: [(mechanism: Int8, iterations: Int32)])] {
        let version = try bootstrap.version(of: DescribeUserScramCredentialsRequest.self, supported: 0...0)
        let request = DescribeUserScramCredentialsRequest(users: users?.map { .init(name: $0) })
        let response = try bootstrap.roundTrip(request, version: version)
        guard response.errorCode == 0 else {
            throw ClientError("DescribeUserScramCredentials: \(Self.errorName(response.errorCode)) \(response.errorMessage ?? "")", kafkaErrorCode: response.errorCode)
        }
        for result in response.results where result.errorCode != 0 {
            throw ClientError("DescribeUserScramCredentials \(result.user): \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
        return response.results.map { ($0.user, $0.credentialInfos.map { ($0.mechanism, $0.iterations) }) }
    }

    /// Sets (`saltedPassword` given) or deletes (nil) a user's credential for one SCRAM mechanism
    /// (AlterUserScramCredentials: 1 is SCRAM-SHA-256, 2 SCRAM-SHA-512). The password itself
    /// never leaves the caller: it sends the salt and the salted password, as Kafka's tools do.
    public func alterScramUser(_ user: String, mechanism: Int8, salt: [UInt8] = [], saltedPassword: [UInt8]?, iterations: Int32 = 0) throws(ClientError) {
        let version = try bootstrap.version(of: AlterUserScramCredentialsRequest.self, supported: 0...0)
        var request = AlterUserScramCredentialsRequest()
        if let saltedPassword {
            request.upsertions = [.init(name: user, mechanism: mechanism, iterations: iterations, salt: salt, saltedPassword: saltedPassword)]
        } else {
            request.deletions = [.init(name: user, mechanism: mechanism)]
        }
        for result in try bootstrap.roundTrip(request, version: version).results where result.errorCode != 0 {
            throw ClientError("AlterUserScramCredentials \(result.user): \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
    }

    /// One ACL as the ACL APIs carry it (Kafka's numeric codes).
    public struct Acl: Sendable, Equatable {
        public var resourceType: Int8, resourceName: String, patternType: Int8, principal: String, host: String, operation: Int8, permission: Int8
        public init(resourceType: Int8, resourceName: String, patternType: Int8, principal: String, host: String, operation: Int8, permission: Int8) {
            (self.resourceType, self.resourceName, self.patternType, self.principal, self.host, self.operation, self.permission) =
                (resourceType, resourceName, patternType, principal, host, operation, permission)
        }
    }

    /// Creates ACLs (CreateAcls); an error names the first one refused.
    public func createAcls(_ acls: [Acl]) throws(ClientError) {
        let version = try bootstrap.version(of: CreateAclsRequest.self, supported: 1...3)
        let request = CreateAclsRequest(creations: acls.map {
            .init(resourceType: $0.resourceType, resourceName: $0.resourceName, resourcePatternType: $0.patternType, principal: $0.principal,
                  host: $0.host, operation: $0.operation, permissionType: $0.permission)
        })
        for result in try bootstrap.roundTrip(request, version: version).results where result.errorCode != 0 {
            throw ClientError("CreateAcls: \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
    }

    /// The ACLs a filter selects (DescribeAcls; the filter's nil strings match anything, codes 1 are ANY).
    public func describeAcls(_ filter: Acl, anyName: Bool, anyPrincipal: Bool, anyHost: Bool) throws(ClientError) -> [Acl] {
        let version = try bootstrap.version(of: DescribeAclsRequest.self, supported: 1...3)
        let request = DescribeAclsRequest(resourceTypeFilter: filter.resourceType, resourceNameFilter: anyName ? nil : filter.resourceName,
                                          patternTypeFilter: filter.patternType, principalFilter: anyPrincipal ? nil : filter.principal,
                                          hostFilter: anyHost ? nil : filter.host, operation: filter.operation, permissionType: filter.permission)
        let response = try bootstrap.roundTrip(request, version: version)
        guard response.errorCode == 0 else {
            throw ClientError("DescribeAcls: \(Self.errorName(response.errorCode)) \(response.errorMessage ?? "")", kafkaErrorCode: response.errorCode)
        }
        return response.resources.flatMap { r in
            r.acls.map { Acl(resourceType: r.resourceType, resourceName: r.resourceName, patternType: r.patternType, principal: $0.principal,
                             host: $0.host, operation: $0.operation, permission: $0.permissionType) }
        }
    }

    /// Deletes the ACLs a filter selects (DeleteAcls) and returns them.
    public func deleteAcls(_ filter: Acl, anyName: Bool, anyPrincipal: Bool, anyHost: Bool) throws(ClientError) -> [Acl] {
        let version = try bootstrap.version(of: DeleteAclsRequest.self, supported: 1...3)
        let request = DeleteAclsRequest(filters: [.init(resourceTypeFilter: filter.resourceType, resourceNameFilter: anyName ? nil : filter.resourceName,
                                                        patternTypeFilter: filter.patternType, principalFilter: anyPrincipal ? nil : filter.principal,
                                                        hostFilter: anyHost ? nil : filter.host, operation: filter.operation, permissionType: filter.permission)])
        guard let result = try bootstrap.roundTrip(request, version: version).filterResults.first else { throw ClientError("DeleteAcls: no result") }
        guard result.errorCode == 0 else {
            throw ClientError("DeleteAcls: \(Self.errorName(result.errorCode)) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
        return result.matchingAcls.map {
            Acl(resourceType: $0.resourceType, resourceName: $0.resourceName, patternType: $0.patternType, principal: $0.principal,
                host: $0.host, operation: $0.operation, permission: $0.permissionType)
        }
    }

    /// A topic's configuration (DescribeConfigs), sorted by name.
    public func describeConfigs(topic: String) throws(ClientError) -> [ConfigValue] {
        let version = try bootstrap.version(of: DescribeConfigsRequest.self, supported: 1...4)
        let request = DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: topic, configurationKeys: nil)])
        guard let result = try bootstrap.roundTrip(request, version: version).results.first else {
            throw ClientError("DescribeConfigs \(topic): no result")
        }
        guard result.errorCode == 0 else {
            throw ClientError("DescribeConfigs \(topic): \(Self.errorName(result.errorCode))", kafkaErrorCode: result.errorCode)
        }
        let sources: [Int8: String] = [1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
                                       4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG"]
        return result.configs.map { ConfigValue(name: $0.name, value: $0.value, source: sources[$0.configSource] ?? "UNKNOWN", readOnly: $0.readOnly) }
            .sorted { $0.name < $1.name }
    }

    /// Every group of every broker (ListGroups goes to each broker, as Kafka's tools do).
    public func listGroups() throws(ClientError) -> [GroupListing] {
        let nodes = try metadata(topics: []).brokers.map(\.nodeId)
        var out: [GroupListing] = []
        for node in nodes.sorted() {
            let c = try connection(to: node)
            let version = try c.version(of: ListGroupsRequest.self, supported: 0...5)
            let response = try c.roundTrip(ListGroupsRequest(), version: version)
            guard response.errorCode == 0 else {
                throw ClientError("ListGroups on broker \(node): \(Self.errorName(response.errorCode))", kafkaErrorCode: response.errorCode)
            }
            out += response.groups.map { GroupListing(groupId: $0.groupId, protocolType: $0.protocolType, state: $0.groupState) }
        }
        return out.sorted { $0.groupId < $1.groupId }
    }

    /// The group's state, members and assignments, and its committed offsets with the lag.
    public func describeGroup(_ groupId: String) throws(ClientError) -> GroupInfo {
        let coordinator = try findCoordinator(groupId)
        let c = try connection(to: coordinator)
        let version = try c.version(of: DescribeGroupsRequest.self, supported: 0...5)
        guard let g = try c.roundTrip(DescribeGroupsRequest(groups: [groupId]), version: version).groups.first else {
            throw ClientError("DescribeGroups \(groupId): no answer for the group")
        }
        guard g.errorCode == 0 else { throw ClientError("DescribeGroups \(groupId): \(Self.errorName(g.errorCode))", kafkaErrorCode: g.errorCode) }
        let members = g.members.map { m in
            GroupInfo.Member(memberId: m.memberId, groupInstanceId: m.groupInstanceId, clientId: m.clientId, host: m.clientHost,
                             assignment: g.protocolType == "consumer" ? Self.decodeAssignment(m.memberAssignment) : [:])
        }
        var owner: [String: String] = [:]
        for m in members { for (topic, ps) in m.assignment { for p in ps { owner["\(topic)/\(p)"] = m.memberId } } }

        let fetchVersion = try c.version(of: OffsetFetchRequest.self, supported: 2...7)
        var fetch = OffsetFetchRequest()
        fetch.groupId = groupId
        fetch.topics = nil  // every partition with a committed offset
        let committed = try c.roundTrip(fetch, version: fetchVersion)
        guard committed.errorCode == 0 else {
            throw ClientError("OffsetFetch \(groupId): \(Self.errorName(committed.errorCode))", kafkaErrorCode: committed.errorCode)
        }
        var offsets: [GroupInfo.Offset] = []
        let topics = committed.topics.map(\.name)
        let leaders: [String: [Int32: Int32]] = topics.isEmpty ? [:] : Dictionary(uniqueKeysWithValues: try metadata(topics: topics).topics.map { t in
            (t.name ?? "", Dictionary(uniqueKeysWithValues: t.partitions.map { ($0.partitionIndex, $0.leaderId) }))
        })
        for t in committed.topics {
            let parts = t.partitions.filter { $0.errorCode == 0 && $0.committedOffset >= 0 }
            var ends: [Int32: Int64] = [:]
            for (leader, ps) in Dictionary(grouping: parts.map(\.partitionIndex), by: { leaders[t.name]?[$0] ?? -1 }) where leader >= 0 {
                ends.merge(try self.offsets(at: leader, topic: t.name, partitions: ps, timestamp: -1)) { a, _ in a }
            }
            for p in parts {
                let end = ends[p.partitionIndex] ?? -1
                offsets.append(GroupInfo.Offset(topic: t.name, partition: p.partitionIndex, committed: p.committedOffset, endOffset: end,
                                                lag: end >= 0 ? max(0, end - p.committedOffset) : -1, memberId: owner["\(t.name)/\(p.partitionIndex)"]))
            }
        }
        offsets.sort { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        return GroupInfo(groupId: groupId, state: g.groupState, protocolType: g.protocolType, protocolName: g.protocolData,
                         coordinator: coordinator, members: members, offsets: offsets)
    }

    /// Deletes groups with no members and their committed offsets (DeleteGroups); an error
    /// names the first group that could not be deleted.
    public func deleteGroups(_ groupIds: [String]) throws(ClientError) {
        for groupId in groupIds {
            let c = try connection(to: try findCoordinator(groupId))
            let version = try c.version(of: DeleteGroupsRequest.self, supported: 0...2)
            for result in try c.roundTrip(DeleteGroupsRequest(groupsNames: [groupId]), version: version).results where result.errorCode != 0 {
                throw ClientError("DeleteGroups \(result.groupId): \(Self.errorName(result.errorCode))", kafkaErrorCode: result.errorCode)
            }
        }
    }

    /// Where ``resetOffsets(_:topic:to:execute:)`` moves a group's committed offsets.
    public enum OffsetReset: Sendable, Equatable {
        case earliest, latest
        case offset(Int64)
        /// The first record at or after this time (ms since the epoch); the end where none is.
        case timestamp(Int64)
    }

    /// A planned or executed reset of one partition.
    public struct ResetOffset: Codable, Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
    }

    /// Moves `groupId`'s committed offsets for every partition of `topic` (as
    /// kafka-consumer-groups.sh --reset-offsets): computes each new offset (ListOffsets; a given
    /// offset is kept within the log) and, with `execute`, commits them as a memberless client —
    /// which the coordinator allows only while the group has no members.
    public func resetOffsets(_ groupId: String, topic: String, to target: OffsetReset, execute: Bool) throws(ClientError) -> [ResetOffset] {
        guard let info = try describeTopics([topic]).first else { throw ClientError("no topic \(topic)") }
        var plan: [ResetOffset] = []
        for p in info.partitions {
            let offset: Int64
            switch target {
            case .earliest: offset = p.startOffset
            case .latest: offset = p.endOffset
            case .offset(let n): offset = min(max(n, p.startOffset), p.endOffset)
            case .timestamp(let ms):
                let found = try offsets(at: p.leader, topic: topic, partitions: [p.partition], timestamp: ms)[p.partition] ?? -1
                offset = found >= 0 ? found : p.endOffset
            }
            plan.append(ResetOffset(topic: topic, partition: p.partition, offset: offset))
        }
        guard execute else { return plan }
        let c = try connection(to: try findCoordinator(groupId))
        let version = try c.version(of: OffsetCommitRequest.self, supported: 2...7)
        var request = OffsetCommitRequest()
        request.groupId = groupId
        request.generationIdOrMemberEpoch = -1
        request.memberId = ""
        request.topics = [.init(name: topic, partitions: plan.map { .init(partitionIndex: $0.partition, committedOffset: $0.offset) })]
        for t in try c.roundTrip(request, version: version).topics {
            for p in t.partitions where p.errorCode != 0 {
                let hint = p.errorCode == ErrorCode.unknownMemberId.rawValue ? " (the group has members: stop its consumers first)" : ""
                throw ClientError("OffsetCommit \(groupId) \(t.name)-\(p.partitionIndex): \(Self.errorName(p.errorCode))\(hint)", kafkaErrorCode: p.errorCode)
            }
        }
        return plan
    }

    /// The group's coordinator (FindCoordinator), whose address joins the known brokers.
    func findCoordinator(_ groupId: String) throws(ClientError) -> Int32 {
        let version = try bootstrap.version(of: FindCoordinatorRequest.self, supported: 0...3)
        let response = try bootstrap.roundTrip(FindCoordinatorRequest(key: groupId, keyType: 0), version: version)
        guard response.errorCode == 0 else {
            throw ClientError("FindCoordinator \(groupId): \(Self.errorName(response.errorCode))", kafkaErrorCode: response.errorCode)
        }
        brokers[response.nodeId] = "\(response.host):\(response.port)"
        return response.nodeId
    }

    /// The consumer protocol's assignment (ConsumerProtocolAssignment v0–3): topic → partitions.
    /// Bytes that do not parse give an empty assignment.
    public static func decodeAssignment(_ bytes: [UInt8]) -> [String: [Int32]] {
        guard !bytes.isEmpty else { return [:] }
        return bytes.withUnsafeBytes { raw -> [String: [Int32]] in
            var r = WireReader(raw)
            var out: [String: [Int32]] = [:]
            do {
                _ = try r.readInt16()  // version
                let topics = try r.readInt32()
                guard topics >= 0 && topics < 100_000 else { return [:] }
                for _ in 0..<topics {
                    let topic = try r.readString(compact: false)
                    let count = try r.readInt32()
                    guard count >= 0 && count < 1_000_000 else { return [:] }
                    var partitions: [Int32] = []
                    for _ in 0..<count { partitions.append(try r.readInt32()) }
                    out[topic, default: []] += partitions.sorted()
                }
            } catch {
                return [:]
            }
            return out
        }
    }

    /// Kafka's name for an error code, for messages.
    static func errorName(_ code: Int16) -> String {
        KafkaErrorNames.name(code) + " (\(code))"
    }
}
