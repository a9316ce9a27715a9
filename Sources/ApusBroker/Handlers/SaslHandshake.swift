import KafkaProtocol
import KafkaWire

extension Broker {
    /// SaslHandshake v0–1: picks the mechanism of the exchange that follows — at the start, or to
    /// re-authenticate (KIP-368). After v1 the messages come in SaslAuthenticate requests; after
    /// v0 (clients older than Kafka 1.0) as raw tokens framed by their size alone.
    static let saslHandshake = HandlerEntry(api: .saslHandshake, versions: 0...1, duringAuthentication: true) { broker, context, r throws(WireError) in
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
        session.rawTokens = context.apiVersion == 0
        return broker.respond(response, context)
    }
}
