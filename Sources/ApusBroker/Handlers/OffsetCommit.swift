import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetCommit v0...7, answered by the group coordinator (parked responses come later).
    static let offsetCommit = HandlerEntry(api: .offsetCommit, versions: 0...7, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try OffsetCommitRequest.decode(from: &r, version: context.apiVersion)
        let outputs = broker.groups.handleOffsetCommit(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs)
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
