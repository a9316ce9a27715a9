import KafkaProtocol
import KafkaWire

extension Broker {
    /// LeaveGroup v0...5, answered by the group coordinator (parked responses come later).
    static let leaveGroup = HandlerEntry(api: .leaveGroup, versions: 0...5, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try LeaveGroupRequest.decode(from: &r, version: context.apiVersion)
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {  // ACLs, or not the coordinator
            return broker.respond(LeaveGroupResponse(errorCode: refusal.rawValue), context)
        }
        let outputs = broker.groups.handleLeaveGroup(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs)
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
