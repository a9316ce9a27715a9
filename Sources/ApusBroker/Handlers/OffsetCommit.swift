import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetCommit v0...7, answered by the group coordinator (parked responses come later);
    /// commits for partitions that do not exist are refused per partition.
    static let offsetCommit = HandlerEntry(api: .offsetCommit, versions: 0...7, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try OffsetCommitRequest.decode(from: &r, version: context.apiVersion)
        let outputs = broker.groups.handleOffsetCommit(request, version: context.apiVersion, token: broker.groupToken(context), nowMs: context.nowMs) { topic, partition in
            guard let entry = broker.topic(topic) else { return false }
            return partition >= 0 && Int(partition) < entry.partitionCount
        }
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
