import KafkaProtocol
import KafkaWire

extension Broker {
    /// ElectLeaders v0–2 (v0 preferred only; v1+ `electionType` 0 preferred, 1 unclean), with
    /// ALTER on the cluster. In cluster mode each partition's new leader is written to its topic's
    /// record with the epoch raised (``ClusterState/Topic/elect(_:unclean:live:)``), and brokers
    /// follow when their views show it. Null partitions: every partition, answering only those
    /// where an election was needed (as Kafka does). A single broker leads everything already.
    static let electLeaders = HandlerEntry(api: .electLeaders, versions: 0...2, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try ElectLeadersRequest.decode(from: &r, version: context.apiVersion)
        var response = ElectLeadersResponse()
        if let denied = broker.denyCluster(.alter, context) {
            response.errorCode = denied.rawValue
            return broker.respond(response, context)
        }
        let unclean = context.apiVersion >= 1 && request.electionType == 1
        guard context.apiVersion == 0 || request.electionType <= 1 else {
            response.errorCode = ErrorCode.invalidRequest.rawValue
            return broker.respond(response, context)
        }
        let cluster = broker.cluster
        let everything = request.topicPartitions == nil
        let wanted = broker.requestedPartitions(request.topicPartitions?.map { ($0.topic, $0.partitions) }, cluster: cluster)
        func answer(_ broker: Broker, _ codes: [String: [Int32: ErrorCode]]) {
            response.replicaElectionResults = wanted.compactMap { name, partitions in
                let results = partitions.compactMap { p -> ElectLeadersResponse.PartitionResult? in
                    let code = codes[name]?[p] ?? .unknownTopicOrPartition
                    if everything && code == .electionNotNeeded { return nil }
                    return .init(partitionId: p, errorCode: code.rawValue, errorMessage: code == .none ? nil : code.name)
                }
                return results.isEmpty ? nil : .init(topic: name, partitionResult: results)
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        guard let cluster else {
            answer(broker, Dictionary(wanted.map { name, partitions in
                let count = broker.topic(name)?.partitionCount ?? 0
                return (name, Dictionary(partitions.map { ($0, $0 >= 0 && Int($0) < count ? ErrorCode.electionNotNeeded : .unknownTopicOrPartition) },
                                         uniquingKeysWith: { a, _ in a }))
            }, uniquingKeysWith: { a, b in a.merging(b) { x, _ in x } }))
            return .pending
        }
        let live = Set(cluster.brokers.map(\.nodeId))
        let asked = Dictionary(wanted, uniquingKeysWith: +)
        broker.updateClusterTopics(Array(asked.keys)) { name, topic -> (write: Bool, outcome: [Int32: ErrorCode]) in
            var codes: [Int32: ErrorCode] = [:]
            for p in asked[name] ?? [] {
                codes[p] = topic.leaders.indices.contains(Int(p)) ? topic.elect(Int(p), unclean: unclean, live: live) ?? .none : .unknownTopicOrPartition
            }
            return (codes.values.contains(.none), codes)
        } then: { broker, results in
            answer(broker, Dictionary(uniqueKeysWithValues: results.map { name, result in
                switch result {
                case .done(let codes): return (name, codes)
                case .missing: return (name, [:])
                case .failed(let why):
                    broker.logger.warning("ElectLeaders: cluster metadata unreachable", metadata: ["error": "\(why)"])
                    return (name, Dictionary((asked[name] ?? []).map { ($0, ErrorCode.kafkaStorageError) }, uniquingKeysWith: { a, _ in a }))
                }
            }))
        }
        return .pending
    }

    /// The partitions a request names (`nil`: every partition of every topic), per topic in
    /// request order.
    func requestedPartitions(_ named: [(String, [Int32])]?, cluster: ClusterState?) -> [(String, [Int32])] {
        if let named { return named }
        if let cluster {
            return cluster.topics.keys.sorted().map { name in (name, (0..<Int32(cluster.topics[name]!.leaders.count)).map { $0 }) }
        }
        refreshTopics()
        return topics.keys.sorted().map { name in (name, (0..<Int32(topics[name]!.partitionCount)).map { $0 }) }
    }
}
