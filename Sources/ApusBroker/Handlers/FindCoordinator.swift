import KafkaProtocol
import KafkaWire

extension Broker {
    /// FindCoordinator v0–2: this (single) broker coordinates every group.
    static let findCoordinator = HandlerEntry(api: .findCoordinator, versions: 0...2) { broker, context, r throws(WireError) in
        let request = try FindCoordinatorRequest.decode(from: &r, version: context.apiVersion)
        var response = FindCoordinatorResponse()
        if request.keyType != 0 {
            response.errorCode = ErrorCode.invalidRequest.rawValue  // transaction coordinators: not supported
            response.errorMessage = "only group coordinators are supported"
        } else {
            response.nodeId = broker.config.nodeId
            response.host = broker.config.advertisedHost
            response.port = broker.config.advertisedPort
        }
        return broker.respond(response, context)
    }
}
