import KafkaProtocol
import KafkaWire

extension Broker {
    /// CreateTopics v0–7: validates names, partition counts, replication factor (one replica
    /// on a single broker), manual assignments (each partition's one replica must be this
    /// broker) and configuration overrides (Kafka's topic-level keys, stored with the topic);
    /// v5+ answers with the topic's configuration, v7+ with its id.
    static let createTopics = HandlerEntry(api: .createTopics, versions: 0...7, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try CreateTopicsRequest.decode(from: &r, version: context.apiVersion)
        var response = CreateTopicsResponse()
        var toCreate: [TopicSpec] = []
        for topic in request.topics {
            var result = CreateTopicsResponse.CreatableTopicResult(name: topic.name)
            let partitions = !topic.assignments.isEmpty ? Int32(topic.assignments.count)
                : topic.numPartitions == -1 ? broker.config.numPartitions : topic.numPartitions
            var overrides: [String: String] = [:]
            // Cluster mode: replicas on distinct live brokers; a single broker holds one.
            let liveBrokers = broker.cluster?.brokers.count
            let factor = topic.replicationFactor == -1 ? (liveBrokers == nil ? 1 : broker.config.defaultReplicationFactor) : Int(topic.replicationFactor)
            func refuse(_ code: ErrorCode, _ message: String) {
                result.errorCode = code.rawValue
                result.errorMessage = message
            }
            if broker.denyCluster(.create, context) != nil && !broker.authorizedTopic(.create, topic.name, context) {
                refuse(.topicAuthorizationFailed, "needs CREATE on the cluster or on topic \(topic.name)")
            } else if !Broker.isValidTopicName(topic.name) {
                refuse(.invalidTopic, "topic names are 1–249 characters of [a-zA-Z0-9._-]")
            } else if broker.deleting.contains(topic.name) || broker.creating.contains(topic.name) || broker.writingToCluster.contains(topic.name)
                        || toCreate.contains(where: { $0.name == topic.name }) {
                refuse(.topicAlreadyExists, broker.deleting.contains(topic.name) ? "topic '\(topic.name)' is marked for deletion" : "topic '\(topic.name)' is being created")
            } else if broker.topics[topic.name] != nil || broker.cluster?.topics[topic.name] != nil {
                refuse(.topicAlreadyExists, "topic '\(topic.name)' already exists")
            } else if !topic.assignments.isEmpty && (topic.numPartitions != -1 || topic.replicationFactor != -1) {
                refuse(.invalidRequest, "a manual replica assignment comes with numPartitions and replicationFactor -1")
            } else if let problem = broker.assignmentProblem(topic.assignments.map { ($0.partitionIndex, $0.brokerIds) }, firstPartition: 0) {
                refuse(.invalidReplicaAssignment, problem)
            } else if partitions <= 0 || partitions > 10_000 {
                refuse(.invalidPartitions, "number of partitions must be between 1 and 10000")
            } else if topic.assignments.isEmpty && liveBrokers == nil && factor != 1 {
                refuse(.invalidReplicationFactor, "replication factor must be 1 on a single broker (replication needs cluster.metadata)")
            } else if topic.assignments.isEmpty, let live = liveBrokers, factor < 1 || factor > live {
                refuse(.invalidReplicationFactor, "replication factor \(factor) is not between 1 and the \(live) live brokers")
            } else {
                for config in topic.configs {
                    guard let value = config.value else {
                        refuse(.invalidConfig, "null value for topic config \(config.name)")
                        break
                    }
                    overrides[config.name] = value
                }
                if result.errorCode == 0, let (name, problem) = TopicConfig.problem(in: overrides) {
                    refuse(.invalidConfig, "\(name): \(problem)")
                }
            }
            if result.errorCode == 0 {
                result.numPartitions = partitions
                result.replicationFactor = Int16(topic.assignments.first?.brokerIds.count ?? factor)
                result.configs = TopicConfig.entries(overrides, broker: broker.config).map {
                    .init(name: $0.name, value: $0.value, readOnly: $0.readOnly, configSource: $0.source, isSensitive: false)
                }
                if !request.validateOnly {
                    var spec = TopicSpec(name: topic.name, partitions: partitions, overrides: overrides, replicationFactor: factor)
                    if !topic.assignments.isEmpty {
                        spec.assignment = topic.assignments.sorted { $0.partitionIndex < $1.partitionIndex }.map(\.brokerIds)
                    }
                    result.topicId = spec.id
                    toCreate.append(spec)
                }
            }
            response.topics.append(result)
        }
        guard !toCreate.isEmpty else { return broker.respond(response, context) }
        if broker.cluster != nil {
            broker.createClusterTopics(toCreate) { broker, failures in
                for (name, (code, message)) in failures {
                    guard let i = response.topics.firstIndex(where: { $0.name == name }) else { continue }
                    response.topics[i] = .init(name: name, errorCode: code.rawValue, errorMessage: message)
                }
                broker.answerLater(broker.frame(response, context), context)
            }
            return .pending
        }
        broker.createTopics(toCreate) { broker, failures in
            for (name, error) in failures {
                guard let i = response.topics.firstIndex(where: { $0.name == name }) else { continue }
                response.topics[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                response.topics[i].errorMessage = "\(error)"
                response.topics[i].numPartitions = -1
                response.topics[i].replicationFactor = -1
                response.topics[i].configs = []
                response.topics[i].topicId = .zero
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        return .pending
    }

    /// Why a manual assignment of partitions `firstPartition...` is refused, or nil: the
    /// partitions are consecutive from `firstPartition` and each has distinct replicas — this
    /// broker alone on a single broker, live brokers in cluster mode (INVALID_REPLICA_ASSIGNMENT
    /// otherwise, as Kafka answers).
    func assignmentProblem(_ assignments: [(partition: Int32, brokers: [Int32])], firstPartition: Int32) -> String? {
        guard !assignments.isEmpty else { return nil }
        let indexes = assignments.map(\.partition).sorted()
        guard indexes == Array(firstPartition..<(firstPartition + Int32(indexes.count))) else {
            return "the assigned partitions must be consecutive from \(firstPartition)"
        }
        for (partition, brokers) in assignments {
            if brokers.isEmpty { return "partition \(partition) has no replica" }
            if Set(brokers).count != brokers.count { return "partition \(partition) names a broker twice" }
            if let cluster {
                if let unknown = brokers.first(where: { !cluster.isLive($0) }) { return "broker \(unknown) is not a live broker of the cluster" }
            } else if let unknown = brokers.first(where: { $0 != config.nodeId }) {
                return "broker \(unknown) is not registered (this cluster is broker \(config.nodeId))"
            }
        }
        return nil
    }
}
