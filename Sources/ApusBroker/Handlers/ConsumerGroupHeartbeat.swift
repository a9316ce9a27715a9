import KafkaProtocol
import KafkaWire

extension Broker {
    /// ConsumerGroupHeartbeat v0–1 (KIP-848, `group.protocol=consumer`): joins, heartbeats and
    /// leaves a consumer-protocol group; the coordinator computes the assignment (uniform or
    /// range) and hands each member its partitions as others release them; v1 subscriptions by
    /// regular expression match whole topic names, topics created later included. A group id
    /// used by a classic group with members is refused with INCONSISTENT_GROUP_PROTOCOL.
    static let consumerGroupHeartbeat = HandlerEntry(api: .consumerGroupHeartbeat, versions: 0...1, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try ConsumerGroupHeartbeatRequest.decode(from: &r, version: context.apiVersion)
        var response = ConsumerGroupHeartbeatResponse(heartbeatIntervalMs: broker.config.consumerGroups.heartbeatIntervalMs)
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {  // ACLs, or not the coordinator
            response.errorCode = refusal.rawValue
            response.errorMessage = refusal == .groupAuthorizationFailed ? "needs READ on group \(request.groupId)" : "this broker does not coordinate the group now"
            return broker.respond(response, context)
        }
        if let classic = broker.groups.describeGroup(request.groupId), !classic.members.isEmpty {
            response.errorCode = ErrorCode.inconsistentGroupProtocol.rawValue
            response.errorMessage = "the group is a classic group with members"
            return broker.respond(response, context)
        }
        var owned: Set<GroupPartition>?
        if let partitions = request.topicPartitions {
            var names: Set<GroupPartition> = []
            for tp in partitions {
                guard let topic = broker.topics.values.first(where: { $0.id == tp.topicId }) else { continue }  // deleted since
                for p in tp.partitions { names.insert(GroupPartition(topic.name, p)) }
            }
            owned = names
        }
        let heartbeat = ConsumerHeartbeat(
            groupId: request.groupId, memberId: request.memberId, memberEpoch: request.memberEpoch, instanceId: request.instanceId,
            rackId: request.rackId, rebalanceTimeoutMs: request.rebalanceTimeoutMs, subscribedTopicNames: request.subscribedTopicNames,
            subscribedTopicRegex: request.subscribedTopicRegex,
            serverAssignor: request.serverAssignor, owned: owned, clientId: context.clientId ?? "")
        let result = broker.consumerGroups.heartbeat(heartbeat, nowMs: context.nowMs, catalogVersion: broker.catalogVersion,
                                                     topics: { Array(broker.topics.keys) }) {
            broker.topic($0)?.partitionCount
        }
        response.errorCode = result.error
        response.errorMessage = result.message
        if result.error == ErrorCode.invalidRegularExpression.rawValue {
            broker.logger.info("refused a subscription pattern", metadata: ["group": "\(request.groupId)", "client": "\(context.clientId ?? "")",
                                                                          "reason": "\(result.message ?? "")"])
        }
        response.memberId = result.memberId
        response.memberEpoch = result.memberEpoch
        if let assignment = result.assignment {
            response.assignment = .init(topicPartitions: broker.topicPartitions(assignment))
        }
        return broker.respond(response, context)
    }

    /// Partitions by name as the wire's (topic id, partitions), topics in name order.
    func topicPartitions(_ partitions: Set<GroupPartition>) -> [ConsumerGroupHeartbeatResponse.TopicPartitions] {
        Dictionary(grouping: partitions, by: \.topic).sorted { $0.key < $1.key }.compactMap { name, tps in
            topic(name).map { .init(topicId: $0.id, partitions: tps.map(\.partition).sorted()) }
        }
    }
}
