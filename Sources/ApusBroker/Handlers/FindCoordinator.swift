import KafkaProtocol
import KafkaWire

extension Broker {
    /// FindCoordinator v0–6 (v4+: several keys at once): a single broker coordinates every group;
    /// in cluster mode the leader of the group's `__consumer_offsets` partition does (the topic
    /// is created at the first request; COORDINATOR_NOT_AVAILABLE until it has a live leader).
    /// Transaction and share-group coordinators do not exist here.
    static let findCoordinator = HandlerEntry(api: .findCoordinator, versions: 0...6, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try FindCoordinatorRequest.decode(from: &r, version: context.apiVersion)
        var response = FindCoordinatorResponse()
        let address = broker.config.advertised(context.listener)
        // Cluster mode: the group's coordinator is the same broker whichever broker is asked.
        let cluster = broker.cluster
        if cluster != nil && !broker.createOffsetsTopicIfMissing() && !broker.warnedOffsetsTopicWait {
            broker.warnedOffsetsTopicWait = true  // once: clients ask again every few hundred ms
            broker.logger.warning("FindCoordinator: too few live brokers to create the offsets topic (offsets.topic.replication.factor)",
                              metadata: ["live": "\(cluster?.brokers.count ?? 0)", "needed": "\(broker.config.offsetsTopicReplicationFactor)"])
        }
        func coordinate(_ group: String) -> (Int32, String, Int32)? {
            guard let cluster else { return (broker.config.nodeId, address.host, address.port) }
            guard let chosen = cluster.coordinator(of: group), let at = chosen.listeners[address.name] else { return nil }
            return (chosen.nodeId, at.host, at.port)
        }
        if context.apiVersion >= 4 {
            response.coordinators = request.coordinatorKeys.map { key in
                request.keyType != 0
                    ? .init(key: key, nodeId: -1, host: "", port: -1, errorCode: ErrorCode.invalidRequest.rawValue, errorMessage: "only group coordinators are supported")
                    : !broker.authorizedGroup(.describe, key, context)
                    ? .init(key: key, nodeId: -1, host: "", port: -1, errorCode: ErrorCode.groupAuthorizationFailed.rawValue, errorMessage: "needs DESCRIBE on group \(key)")
                    : coordinate(key).map { .init(key: key, nodeId: $0.0, host: $0.1, port: $0.2, errorCode: 0, errorMessage: nil) }
                    ?? .init(key: key, nodeId: -1, host: "", port: -1, errorCode: ErrorCode.coordinatorNotAvailable.rawValue, errorMessage: "no live broker")
            }
        } else if request.keyType == 0 && !broker.authorizedGroup(.describe, request.key, context) {
            response.errorCode = ErrorCode.groupAuthorizationFailed.rawValue  // DESCRIBE on the group (ACLs)
            response.nodeId = -1
            response.port = -1
        } else if request.keyType != 0 {
            response.errorCode = ErrorCode.invalidRequest.rawValue  // transaction coordinators: not supported
            response.errorMessage = "only group coordinators are supported"
        } else if let (node, host, port) = coordinate(request.key) {
            response.nodeId = node
            response.host = host
            response.port = port
        } else {
            response.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
            response.nodeId = -1
            response.port = -1
        }
        return broker.respond(response, context)
    }
}
