import KafkaProtocol
import KafkaWire

extension Broker {
    /// InitProducerId v0–5 for idempotent (non-transactional) producers: a fresh producer id
    /// with epoch 0, or (v3+, KIP-360) the same id with the next epoch for a producer that names
    /// its id and epoch to recover from a sequence error.
    static let initProducerId = HandlerEntry(api: .initProducerId, versions: 0...5, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try InitProducerIdRequest.decode(from: &r, version: context.apiVersion)
        var response = InitProducerIdResponse()
        if request.transactionalId != nil {
            response.errorCode = ErrorCode.invalidRequest.rawValue  // transactions are not supported
        } else if broker.denyCluster(.idempotentWrite, context) != nil && !broker.authorizedAny(.write, .topic, context) {
            // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
            response.errorCode = ErrorCode.clusterAuthorizationFailed.rawValue
        } else if request.producerId >= 0 && request.producerEpoch >= 0 && request.producerEpoch < Int16.max - 1 {
            response.producerId = request.producerId
            response.producerEpoch = request.producerEpoch + 1
        } else {
            response.producerId = broker.producerIds.allocate()
            response.producerEpoch = 0
        }
        return broker.respond(response, context)
    }
}
