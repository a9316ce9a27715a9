import KafkaProtocol
import KafkaWire

extension Broker {
    /// Heartbeat v0...4, answered by the group coordinator (parked responses come later).
    static let heartbeat = HandlerEntry(api: .heartbeat, versions: 0...4, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try HeartbeatRequest.decode(from: &r, version: context.apiVersion)
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {  // ACLs, or not the coordinator
            return broker.respond(HeartbeatResponse(errorCode: refusal.rawValue), context)
        }
        let outputs = broker.groups.handleHeartbeat(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs)
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
