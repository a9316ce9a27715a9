import KafkaProtocol
import KafkaWire

extension Broker {
    /// Metadata v0–12: this broker as the only one, leader of every partition, with topic ids
    /// (v10+; a topic may be asked for by id, UNKNOWN_TOPIC_ID if there is none); topics are
    /// auto-created when asked for by name and `auto.create.topics.enable` allows it.
    static let metadata = HandlerEntry(api: .metadata, versions: 0...12, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try MetadataRequest.decode(from: &r, version: context.apiVersion)
        if let cluster = broker.cluster { return broker.clusterMetadata(request, cluster, context) }
        var response = MetadataResponse()
        let address = broker.config.advertised(context.listener)
        response.brokers = [.init(nodeId: broker.config.nodeId, host: address.host, port: address.port)]
        response.clusterId = broker.config.clusterId
        response.controllerId = broker.config.nodeId
        // v0: an empty list means all topics; v1+: null means all, empty means none.
        let names: [String]
        var unknownIds: [KafkaUUID] = []
        if let topics = request.topics, !(context.apiVersion == 0 && topics.isEmpty) {
            names = topics.compactMap { requested in
                if let name = requested.name { return name }
                if let entry = broker.topics.values.first(where: { $0.id == requested.topicId }) { return entry.name }
                unknownIds.append(requested.topicId)
                return nil
            }
        } else {
            // Every topic the principal may describe; the others stay hidden (ACLs).
            names = broker.topics.keys.sorted().filter { broker.authorizedTopic(.describe, $0, context) }
        }
        let mayCreate = broker.config.autoCreateTopics && (context.apiVersion < 4 || request.allowAutoTopicCreation)
        // Topics to auto-create are created off the shard first; the answer follows.
        var missing: [String] = []
        if mayCreate {
            for name in names where Broker.isValidTopicName(name) && broker.topics[name] == nil && !broker.deleting.contains(name)
                && !broker.creating.contains(name) && !missing.contains(name) && broker.authorizedTopic(.describe, name, context)
                && (broker.denyCluster(.create, context) == nil || broker.authorizedTopic(.create, name, context)) {
                missing.append(name)
            }
        }
        let answer = { (broker: Broker) -> MetadataResponse in
            var response = response
            for name in names {
                response.topics.append(broker.authorizedTopic(.describe, name, context)
                    ? broker.describeTopic(name) : .init(errorCode: ErrorCode.topicAuthorizationFailed.rawValue, name: name))
            }
            for id in unknownIds {
                response.topics.append(.init(errorCode: ErrorCode.unknownTopicId.rawValue, name: nil, topicId: id))
            }
            return response
        }
        guard !missing.isEmpty else { return broker.respond(answer(broker), context) }
        broker.createTopics(missing.map { TopicSpec(name: $0, partitions: broker.config.numPartitions) }) { broker, _ in
            broker.answerLater(broker.frame(answer(broker), context), context)
        }
        return .pending
    }

    func describeTopic(_ name: String) -> MetadataResponse.MetadataResponseTopic {
        var topic = MetadataResponse.MetadataResponseTopic(name: name)
        guard Broker.isValidTopicName(name) else {
            topic.errorCode = ErrorCode.invalidTopic.rawValue
            return topic
        }
        if deleting.contains(name) || creating.contains(name) {
            topic.errorCode = ErrorCode.leaderNotAvailable.rawValue  // retriable: it is coming or going
            return topic
        }
        guard let entry = topics[name] else {
            topic.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
            return topic
        }
        topic.topicId = entry.id
        topic.partitions = (0..<entry.partitionCount).map { p in
            MetadataResponse.MetadataResponsePartition(
                errorCode: 0, partitionIndex: Int32(p), leaderId: config.nodeId, leaderEpoch: Broker.leaderEpoch,
                replicaNodes: [config.nodeId], isrNodes: [config.nodeId], offlineReplicas: [])
        }
        return topic
    }

    /// Metadata in cluster mode: every live broker (at its address for the listener the client
    /// came in on), and each partition's leader from the cluster's metadata — -1 with
    /// LEADER_NOT_AVAILABLE while its broker is down. Topics asked for and unknown are created
    /// in the cluster when allowed, answered LEADER_NOT_AVAILABLE until they appear.
    func clusterMetadata(_ request: MetadataRequest, _ cluster: ClusterState, _ context: RequestContext) -> HandleOutcome {
        let listener = config.advertised(context.listener).name
        var response = MetadataResponse(clusterId: config.clusterId, controllerId: cluster.brokers.first?.nodeId ?? config.nodeId)
        response.brokers = cluster.brokers.compactMap { b in b.listeners[listener].map { .init(nodeId: b.nodeId, host: $0.host, port: $0.port) } }
        let names: [String]
        if let topics = request.topics, !(context.apiVersion == 0 && topics.isEmpty) {
            names = topics.compactMap { requested in requested.name ?? cluster.topics.first(where: { $0.value.id == requested.topicId })?.key }
        } else {
            names = cluster.topics.keys.sorted().filter { authorizedTopic(.describe, $0, context) }
        }
        var missing: [TopicSpec] = []
        for name in names {
            guard authorizedTopic(.describe, name, context) else {
                response.topics.append(.init(errorCode: ErrorCode.topicAuthorizationFailed.rawValue, name: name))
                continue
            }
            guard let topic = cluster.topics[name] else {
                let mayCreate = config.autoCreateTopics && (context.apiVersion < 4 || request.allowAutoTopicCreation) && Broker.isValidTopicName(name)
                    && (denyCluster(.create, context) == nil || authorizedTopic(.create, name, context))
                if mayCreate && !writingToCluster.contains(name) {
                    missing.append(TopicSpec(name: name, partitions: config.numPartitions, replicationFactor: min(config.defaultReplicationFactor, cluster.brokers.count)))
                }
                let code: ErrorCode = !Broker.isValidTopicName(name) ? .invalidTopic : mayCreate ? .leaderNotAvailable : .unknownTopicOrPartition
                response.topics.append(.init(errorCode: code.rawValue, name: name))
                continue
            }
            var out = MetadataResponse.MetadataResponseTopic(name: name, topicId: topic.id, isInternal: name == Broker.offsetsTopic)
            out.partitions = topic.leaders.enumerated().map { p, leader in
                let live = cluster.isLive(leader)
                let replicas = topic.replicas[p]
                return .init(errorCode: live ? 0 : ErrorCode.leaderNotAvailable.rawValue, partitionIndex: Int32(p), leaderId: live ? leader : -1,
                             leaderEpoch: topic.epochs[p], replicaNodes: replicas, isrNodes: topic.isr[p].filter(cluster.isLive),
                             offlineReplicas: replicas.filter { !cluster.isLive($0) })
            }
            response.topics.append(out)
        }
        if !missing.isEmpty {
            createClusterTopics(missing) { broker, failures in
                // Another broker creating it first is expected; anything else is worth a line (the
                // client asks again and the creation is retried then).
                for (name, (code, why)) in failures where code != .topicAlreadyExists {
                    broker.logCreationFailure("could not auto-create a topic in the cluster", ["topic": "\(name)", "error": "\(why)"])
                }
            }
        }
        return respond(response, context)
    }
}
