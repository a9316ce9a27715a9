import KafkaProtocol
import KafkaWire

extension Broker {
    /// ListPartitionReassignments v0, with DESCRIBE on the cluster: the partitions being moved
    /// (of the topics named, or of all), with their replicas and those being added and removed.
    static let listPartitionReassignments = HandlerEntry(api: .listPartitionReassignments, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try ListPartitionReassignmentsRequest.decode(from: &r, version: context.apiVersion)
        var response = ListPartitionReassignmentsResponse(errorMessage: nil)
        if let denied = broker.denyCluster(.describe, context) {
            response.errorCode = denied.rawValue
            response.errorMessage = "needs DESCRIBE on the cluster"
            return broker.respond(response, context)
        }
        let cluster = broker.cluster ?? ClusterState()  // a single broker moves nothing
        let wanted = request.topics.map { $0.map { ($0.name, $0.partitionIndexes) } } ?? broker.requestedPartitions(nil, cluster: cluster)
        response.topics = wanted.compactMap { name, partitions in
            guard let topic = cluster.topics[name] else { return nil }
            let moving = partitions.filter { p in
                topic.leaders.indices.contains(Int(p)) && (!topic.adding[Int(p)].isEmpty || !topic.removing[Int(p)].isEmpty)
            }
            guard !moving.isEmpty else { return nil }
            return .init(name: name, partitions: moving.map { p in
                .init(partitionIndex: p, replicas: topic.replicas[Int(p)], addingReplicas: topic.adding[Int(p)], removingReplicas: topic.removing[Int(p)])
            })
        }
        return broker.respond(response, context)
    }
}
