import KafkaProtocol
import KafkaWire

extension Broker {
    /// SyncGroup v0...5, answered by the group coordinator (parked responses come later).
    static let syncGroup = HandlerEntry(api: .syncGroup, versions: 0...5, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try SyncGroupRequest.decode(from: &r, version: context.apiVersion)
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {  // ACLs, or not the coordinator
            return broker.respond(SyncGroupResponse(errorCode: refusal.rawValue), context)
        }
        let outputs = broker.groups.handleSyncGroup(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs)
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
