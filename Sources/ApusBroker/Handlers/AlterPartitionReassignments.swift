import KafkaProtocol
import KafkaWire

extension Broker {
    /// AlterPartitionReassignments v0, with ALTER on the cluster: each partition starts moving to
    /// the replicas given, or (null replicas) its move under way is cancelled
    /// (``ClusterState/Topic/reassign(_:to:live:)``). The brokers added start following the
    /// leader when their views show them; the controller completes the move once they are in
    /// sync (the replicas removed go, the leader moves if it was one of them). A single broker can
    /// only be "moved" onto itself.
    static let alterPartitionReassignments = HandlerEntry(api: .alterPartitionReassignments, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try AlterPartitionReassignmentsRequest.decode(from: &r, version: context.apiVersion)
        var response = AlterPartitionReassignmentsResponse(errorMessage: nil)
        if let denied = broker.denyCluster(.alter, context) {
            response.errorCode = denied.rawValue
            response.errorMessage = "needs ALTER on the cluster"
            return broker.respond(response, context)
        }
        typealias Outcome = [Int32: (ErrorCode, String?)]
        func answer(_ broker: Broker, _ outcomes: [String: Outcome]) {
            response.responses = request.topics.map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { p in
                    let (code, message) = outcomes[topic.name]?[p.partitionIndex] ?? (.unknownTopicOrPartition, "no such partition")
                    return .init(partitionIndex: p.partitionIndex, errorCode: code.rawValue, errorMessage: message)
                })
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        guard let cluster = broker.cluster else {
            let node = broker.config.nodeId
            var outcomes: [String: Outcome] = [:]
            for topic in request.topics {
                let count = broker.topic(topic.name)?.partitionCount ?? 0
                for p in topic.partitions where p.partitionIndex >= 0 && Int(p.partitionIndex) < count {
                    outcomes[topic.name, default: [:]][p.partitionIndex] = p.replicas == nil
                        ? (.noReassignmentInProgress, "no reassignment of this partition is in progress")
                        : p.replicas == [node] ? (.none, nil) : (.invalidReplicaAssignment, "a single broker (node \(node)) holds every partition")
                }
            }
            answer(broker, outcomes)
            return .pending
        }
        let live = Set(cluster.brokers.map(\.nodeId))
        var targets: [String: [(Int32, [Int32]?)]] = [:]
        for topic in request.topics { targets[topic.name, default: []] += topic.partitions.map { ($0.partitionIndex, $0.replicas) } }
        let asked = targets
        broker.updateClusterTopics(Array(asked.keys)) { name, topic -> (write: Bool, outcome: [Int32: (ErrorCode, String?)]) in
            var outcomes: Outcome = [:]
            for (p, target) in asked[name] ?? [] {
                guard topic.leaders.indices.contains(Int(p)) else { continue }
                outcomes[p] = topic.reassign(Int(p), to: target, live: live) ?? (.none, nil)
            }
            return (outcomes.values.contains { $0.0 == .none }, outcomes)
        } then: { broker, results in
            var outcomes: [String: Outcome] = [:]
            for (name, result) in results {
                switch result {
                case .done(let decided):
                    outcomes[name] = decided
                    let started = decided.filter { $0.value.0 == .none }.keys.sorted()
                    if !started.isEmpty { broker.logger.info("partition reassignment", metadata: ["topic": "\(name)", "partitions": "\(started)"]) }
                case .missing:
                    break
                case .failed(let why):
                    outcomes[name] = Dictionary((asked[name] ?? []).map { ($0.0, (ErrorCode.kafkaStorageError, "cluster metadata: \(why)")) }, uniquingKeysWith: { a, _ in a })
                }
            }
            answer(broker, outcomes)
        }
        return .pending
    }
}
