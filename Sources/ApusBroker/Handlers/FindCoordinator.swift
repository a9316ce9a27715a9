import KafkaProtocol
import KafkaWire

extension Broker {
    /// FindCoordinator v0–6 (v4+: several keys at once): this (single) broker coordinates every
    /// group; transaction and share-group coordinators do not exist here.
    static let findCoordinator = HandlerEntry(api: .findCoordinator, versions: 0...6) { broker, context, r throws(WireError) in
        let request = try FindCoordinatorRequest.decode(from: &r, version: context.apiVersion)
        var response = FindCoordinatorResponse()
        let address = broker.config.advertised(context.listener)
        if context.apiVersion >= 4 {
            response.coordinators = request.coordinatorKeys.map { key in
                request.keyType != 0
                    ? .init(key: key, nodeId: -1, host: "", port: -1, errorCode: ErrorCode.invalidRequest.rawValue, errorMessage: "only group coordinators are supported")
                    : !broker.authorizedGroup(.describe, key, context)
                    ? .init(key: key, nodeId: -1, host: "", port: -1, errorCode: ErrorCode.groupAuthorizationFailed.rawValue, errorMessage: "needs DESCRIBE on group \(key)")
                    : .init(key: key, nodeId: broker.config.nodeId, host: address.host, port: address.port, errorCode: 0, errorMessage: nil)
            }
        } else if request.keyType == 0 && !broker.authorizedGroup(.describe, request.key, context) {
            response.errorCode = ErrorCode.groupAuthorizationFailed.rawValue  // DESCRIBE on the group (ACLs)
            response.nodeId = -1
            response.port = -1
        } else if request.keyType != 0 {
            response.errorCode = ErrorCode.invalidRequest.rawValue  // transaction coordinators: not supported
            response.errorMessage = "only group coordinators are supported"
        } else {
            response.nodeId = broker.config.nodeId
            response.host = address.host
            response.port = address.port
        }
        return broker.respond(response, context)
    }
}
