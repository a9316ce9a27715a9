import KafkaProtocol
import KafkaWire

extension Broker {
    /// SaslHandshake v1 (v0, whose tokens travel without Kafka framing, is not served: every
    /// client that asks ApiVersions first uses v1): picks the mechanism of the SaslAuthenticate
    /// exchange that follows — at the start, or to re-authenticate (KIP-368).
    static let saslHandshake = HandlerEntry(api: .saslHandshake, versions: 1...1, duringAuthentication: true) { broker, context, r throws(WireError) in
        let request = try SaslHandshakeRequest.decode(from: &r, version: context.apiVersion)
        let session = context.session
        var response = SaslHandshakeResponse(mechanisms: broker.config.saslMechanisms.map(\.rawValue))
        guard session.securityProtocol.usesSASL, case .none = session.sasl else {
            response.errorCode = ErrorCode.illegalSaslState.rawValue
            if !session.securityProtocol.usesSASL { response.mechanisms = [] }
            return broker.respond(response, context)
        }
        guard let mechanism = SaslMechanism(rawValue: request.mechanism), broker.config.saslMechanisms.contains(mechanism) else {
            response.errorCode = ErrorCode.unsupportedSaslMechanism.rawValue
            return broker.respond(response, context)
        }
        session.sasl = .handshaken(mechanism)
        return broker.respond(response, context)
    }
}
