import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteGroups v0–2, answered by the group coordinator once the deletions of the groups'
    /// committed offsets are in the offsets log.
    static let deleteGroups = HandlerEntry(api: .deleteGroups, versions: 0...2, onCoordinator: true) { broker, context, r throws(WireError) in
        var request = try DeleteGroupsRequest.decode(from: &r, version: context.apiVersion)
        // DELETE on each group (ACLs): the others are answered GROUP_AUTHORIZATION_FAILED.
        let denied = request.groupsNames.filter { !broker.authorizedGroup(.delete, $0, context) }
        request.groupsNames.removeAll { denied.contains($0) }
        var outputs = broker.groups.handleDeleteGroups(request, version: context.apiVersion, token: broker.groupToken(context))
        if !denied.isEmpty, case .deleteGroups(var response) = outputs[0].response {
            response.results += denied.map { .init(groupId: $0, errorCode: ErrorCode.groupAuthorizationFailed.rawValue) }
            outputs[0].response = .deleteGroups(response)
        }
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
