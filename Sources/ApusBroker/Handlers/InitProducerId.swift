import KafkaProtocol
import KafkaWire

extension Broker {
    /// InitProducerId v0–1 for idempotent (non-transactional) producers: a fresh producer id
    /// with epoch 0.
    static let initProducerId = HandlerEntry(api: .initProducerId, versions: 0...1, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try InitProducerIdRequest.decode(from: &r, version: context.apiVersion)
        var response = InitProducerIdResponse()
        if request.transactionalId != nil {
            response.errorCode = ErrorCode.invalidRequest.rawValue  // transactions are not supported
        } else {
            response.producerId = broker.producerIds.allocate()
            response.producerEpoch = 0
        }
        return broker.respond(response, context)
    }
}
