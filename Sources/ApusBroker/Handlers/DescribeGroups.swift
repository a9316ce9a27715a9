import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeGroups v0...5, as Kafka answers it: a group it does not know is `Dead` with no
    /// members (error NONE before v6); members' metadata and assignments, and the protocol
    /// name, only once the group is `Stable`.
    static let describeGroups = HandlerEntry(api: .describeGroups, versions: 0...5, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DescribeGroupsRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeGroupsResponse()
        for id in request.groups {
            var described = DescribeGroupsResponse.DescribedGroup(groupId: id, groupState: GroupState.dead.rawValue)
            if let refusal = broker.groupRefusal(.describe, id, context) {  // ACLs, or not the coordinator
                described.errorCode = refusal.rawValue
                described.groupState = ""
                response.groups.append(described)
                continue
            }
            if let group = broker.groups.describeGroup(id) {
                let stable = group.state == .stable
                described.groupState = group.state.rawValue
                described.protocolType = group.protocolType ?? ""
                described.protocolData = stable ? group.protocolName ?? "" : ""
                described.members = group.members.map { m in
                    .init(memberId: m.memberId, groupInstanceId: m.groupInstanceId, clientId: m.clientId, clientHost: "",
                          memberMetadata: stable ? m.metadata : [], memberAssignment: stable ? m.assignment : [])
                }
            }
            response.groups.append(described)
        }
        return broker.respond(response, context)
    }
}
