import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetDelete v0, answered by the group coordinator once the deletions are in the offsets
    /// log; topics the group's members subscribe to keep their offsets.
    static let offsetDelete = HandlerEntry(api: .offsetDelete, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try OffsetDeleteRequest.decode(from: &r, version: context.apiVersion)
        if let refusal = broker.groupRefusal(.delete, request.groupId, context) {  // ACLs, or not the coordinator
            return broker.respond(OffsetDeleteResponse(errorCode: refusal.rawValue), context)
        }
        let outputs = broker.groups.handleOffsetDelete(request, version: context.apiVersion, token: broker.groupToken(context))
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
