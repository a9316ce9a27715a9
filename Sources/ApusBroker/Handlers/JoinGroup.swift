import KafkaProtocol
import KafkaWire

extension Broker {
    /// JoinGroup v0...9, answered by the group coordinator (parked responses come later).
    static let joinGroup = HandlerEntry(api: .joinGroup, versions: 0...9, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try JoinGroupRequest.decode(from: &r, version: context.apiVersion)
        if let refusal = broker.groupRefusal(.read, request.groupId, context) {  // ACLs, or not the coordinator
            return broker.respond(JoinGroupResponse(errorCode: refusal.rawValue, generationId: -1,
                                                    protocolName: context.apiVersion >= 7 ? nil : "", leader: "", memberId: request.memberId), context)
        }
        if broker.consumerGroups.groups[request.groupId] != nil {
            // The group id belongs to a consumer-protocol group (KIP-848) with members.
            return broker.respond(JoinGroupResponse(errorCode: ErrorCode.inconsistentGroupProtocol.rawValue, generationId: -1, protocolName: context.apiVersion >= 7 ? nil : "",
                                                    leader: "", memberId: request.memberId), context)
        }
        let outputs = broker.groups.handleJoinGroup(request, version: context.apiVersion, clientId: context.clientId ?? "", token: broker.groupToken(context), nowMs: context.nowMs)
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
