import KafkaProtocol
import KafkaWire

extension Broker {
    /// ListGroups v0...5: every group the coordinators know — consumer-protocol groups (type
    /// `consumer`) and classic ones (with members or committed offsets) — filtered by state
    /// (v4+) and type (v5+).
    static let listGroups = HandlerEntry(api: .listGroups, versions: 0...5, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try ListGroupsRequest.decode(from: &r, version: context.apiVersion)
        let states = Set(request.statesFilter.map { $0.lowercased() })
        let types = Set(request.typesFilter.map { $0.lowercased() })
        var response = ListGroupsResponse()
        if types.isEmpty || types.contains("consumer") {
            for (id, group) in broker.consumerGroups.groups.sorted(by: { $0.key < $1.key }) {
                if !states.isEmpty && !states.contains(group.state.lowercased()) { continue }
                response.groups.append(.init(groupId: id, protocolType: "consumer", groupState: group.state, groupType: "consumer"))
            }
        }
        if types.isEmpty || types.contains("classic") {
            for id in broker.groups.groupIds where broker.consumerGroups.groups[id] == nil {  // its offsets, listed above
                guard let group = broker.groups.describeGroup(id) else { continue }
                if !states.isEmpty && !states.contains(group.state.rawValue.lowercased()) { continue }
                response.groups.append(.init(groupId: id, protocolType: group.protocolType ?? "", groupState: group.state.rawValue, groupType: "classic"))
            }
        }
        // DESCRIBE on the cluster shows every group; otherwise only those the principal may describe.
        if broker.denyCluster(.describe, context) != nil {
            response.groups.removeAll { !broker.authorizedGroup(.describe, $0.groupId, context) }
        }
        return broker.respond(response, context)
    }
}
