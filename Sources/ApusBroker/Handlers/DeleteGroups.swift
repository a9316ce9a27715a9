import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteGroups v0–2, answered by the group coordinator once the deletions of the groups'
    /// committed offsets are in the offsets log.
    static let deleteGroups = HandlerEntry(api: .deleteGroups, versions: 0...2, onCoordinator: true) { broker, context, r throws(WireError) in
        var request = try DeleteGroupsRequest.decode(from: &r, version: context.apiVersion)
        // DELETE on each group (ACLs), coordinated here: the others are answered with why not.
        let denied = request.groupsNames.compactMap { id in broker.groupRefusal(.delete, id, context).map { (id, $0) } }
        request.groupsNames.removeAll { id in denied.contains { $0.0 == id } }
        var outputs = broker.groups.handleDeleteGroups(request, version: context.apiVersion, token: broker.groupToken(context))
        if !denied.isEmpty, case .deleteGroups(var response) = outputs[0].response {
            response.results += denied.map { .init(groupId: $0.0, errorCode: $0.1.rawValue) }
            outputs[0].response = .deleteGroups(response)
        }
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
