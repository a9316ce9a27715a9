import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetCommit v0...9, answered by the group coordinator (parked responses come later);
    /// commits for partitions that do not exist are refused per partition.
    static let offsetCommit = HandlerEntry(api: .offsetCommit, versions: 0...9, onCoordinator: true) { broker, context, r throws(WireError) in
        var request = try OffsetCommitRequest.decode(from: &r, version: context.apiVersion)
        // READ on the group (ACLs) and its coordinator here, else every partition is refused.
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {
            return broker.respond(OffsetCommitResponse(topics: request.topics.map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: refusal.rawValue) })
            }), context)
        }
        if broker.consumerGroups.groups[request.groupId] != nil {
            // A consumer-protocol group: the member and its epoch are checked there; the offsets
            // go to the same store as a simple (memberless) commit.
            if let refusal = broker.consumerGroups.commitRefusal(groupId: request.groupId, memberId: request.memberId, epoch: request.generationIdOrMemberEpoch) {
                let refused = OffsetCommitResponse(topics: request.topics.map { topic in
                    .init(name: topic.name, partitions: topic.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: refusal) })
                })
                return broker.respond(refused, context)
            }
            request.memberId = ""
            request.generationIdOrMemberEpoch = -1
            request.groupInstanceId = nil
        }
        let outputs = broker.groups.handleOffsetCommit(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs) { topic, partition in
            guard broker.authorizedTopic(.read, topic, context) else { return .topicAuthorizationFailed }
            guard let entry = broker.topic(topic), partition >= 0, Int(partition) < entry.partitionCount else { return .unknownTopicOrPartition }
            return .none
        }
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
