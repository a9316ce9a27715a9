import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetFetch v0–8 (v8: several groups at once): committed offsets (-1 where none).
    static let offsetFetch = HandlerEntry(api: .offsetFetch, versions: 0...8, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try OffsetFetchRequest.decode(from: &r, version: context.apiVersion)
        let outputs = broker.groups.handleOffsetFetch(request, version: context.apiVersion, token: broker.groupToken(context))
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
