import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteGroups v0–2, answered by the group coordinator once the deletions of the groups'
    /// committed offsets are in the offsets log.
    static let deleteGroups = HandlerEntry(api: .deleteGroups, versions: 0...2, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DeleteGroupsRequest.decode(from: &r, version: context.apiVersion)
        let outputs = broker.groups.handleDeleteGroups(request, version: context.apiVersion, token: broker.groupToken(context))
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
