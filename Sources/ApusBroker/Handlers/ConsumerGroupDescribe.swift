import KafkaProtocol
import KafkaWire

extension Broker {
    /// ConsumerGroupDescribe v0: consumer-protocol groups with their epochs, assignor and each
    /// member's current and target assignment. A group id that is not such a group gets
    /// GROUP_ID_NOT_FOUND (69).
    static let consumerGroupDescribe = HandlerEntry(api: .consumerGroupDescribe, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try ConsumerGroupDescribeRequest.decode(from: &r, version: context.apiVersion)
        var response = ConsumerGroupDescribeResponse()
        func partitions(_ set: Set<GroupPartition>) -> ConsumerGroupDescribeResponse.Assignment {
            .init(topicPartitions: Dictionary(grouping: set, by: \.topic).sorted { $0.key < $1.key }.map { name, tps in
                .init(topicId: broker.topic(name)?.id ?? .zero, topicName: name, partitions: tps.map(\.partition).sorted())
            })
        }
        for id in request.groupIds {
            if let refusal = broker.groupRefusal(.describe, id, context) {  // ACLs, or not the coordinator
                response.groups.append(.init(errorCode: refusal.rawValue, errorMessage: refusal == .groupAuthorizationFailed ? "needs DESCRIBE on group \(id)" : nil, groupId: id))
                continue
            }
            guard let group = broker.consumerGroups.groups[id] else {
                response.groups.append(.init(errorCode: ErrorCode.groupIdNotFound.rawValue, errorMessage: "no consumer-protocol group \(id)", groupId: id))
                continue
            }
            var described = ConsumerGroupDescribeResponse.DescribedGroup(
                groupId: id, groupState: group.state, groupEpoch: group.groupEpoch, assignmentEpoch: group.assignmentEpoch, assignorName: group.assignor)
            described.members = group.members.values.sorted { $0.memberId < $1.memberId }.map { m in
                .init(memberId: m.memberId, instanceId: m.instanceId, rackId: m.rackId, memberEpoch: m.epoch, clientId: m.clientId,
                      clientHost: "", subscribedTopicNames: m.subscribed, subscribedTopicRegex: m.regex,
                      assignment: partitions(m.assigned), targetAssignment: partitions(group.target[m.memberId] ?? []))
            }
            response.groups.append(described)
        }
        return broker.respond(response, context)
    }
}
