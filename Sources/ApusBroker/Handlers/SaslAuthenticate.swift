import ApusIO
import KafkaProtocol
import KafkaWire

extension Broker {
    /// SaslAuthenticate v0–2: the mechanism's messages after SaslHandshake. SCRAM-SHA-256/512
    /// take two round trips checked here (HMACs only); PLAIN's password is checked against the
    /// user's SCRAM credential on the compute worker (a PBKDF2 costs milliseconds, too long for a
    /// shard's turn). A failure answers SASL_AUTHENTICATION_FAILED and the connection is closed
    /// at its next request, as Kafka does. With `connections.max.reauth.ms` the session lifetime
    /// is returned (v1+), and a re-authentication must prove the same principal.
    static let saslAuthenticate = HandlerEntry(api: .saslAuthenticate, versions: 0...2, duringAuthentication: true) { broker, context, r throws(WireError) in
        let request = try SaslAuthenticateRequest.decode(from: &r, version: context.apiVersion)
        let session = context.session
        switch session.sasl {
        case .handshaken(.plain):
            switch parsePlain(request.authBytes) {
            case .failure(let failure):
                return broker.saslFailed(failure, context)
            case .success(let (user, password)):
                let stored = broker.mesh.security.credentials[user]
                guard let (mechanism, credential) = stored?.max(by: { $0.key < $1.key }) else {
                    return broker.saslFailed(.rejected("authentication failed: invalid credentials"), context)
                }
                session.sasl = .checking
                broker.mesh.afterDiskWork(on: broker.index, worker: .compute, { credential.matches(password: password, mechanism: mechanism) }) { broker, ok in
                    let outcome = ok ? broker.saslSucceeded(user: user, final: [], context)
                                     : broker.saslFailed(.rejected("authentication failed: invalid credentials"), context)
                    if case .respond(let frame) = outcome { broker.answerLater(frame, context) }
                }
                return .pending
            }
        case .handshaken(let mechanism):
            let scram = mechanism.scram!
            let security = broker.mesh.security
            switch ScramServerExchange.start(request.authBytes, mechanism: scram, lookup: { security.credential(user: $0, mechanism: scram) }) {
            case .failure(let failure):
                return broker.saslFailed(failure, context)
            case .success(let (exchange, serverFirst)):
                session.sasl = .scram(exchange)
                return broker.respond(SaslAuthenticateResponse(errorMessage: nil, authBytes: Array(serverFirst.utf8)), context)
            }
        case .scram(let exchange):
            switch exchange.finish(request.authBytes) {
            case .failure(let failure):
                return broker.saslFailed(failure, context)
            case .success(let serverFinal):
                return broker.saslSucceeded(user: exchange.user, final: Array(serverFinal.utf8), context)
            }
        case .none, .checking:
            var response = SaslAuthenticateResponse(errorCode: ErrorCode.illegalSaslState.rawValue)
            response.errorMessage = "SaslAuthenticate without a SaslHandshake before it"
            return broker.respond(response, context)
        }
    }

    private func saslSucceeded(user: String, final: [UInt8], _ context: RequestContext) -> HandleOutcome {
        let session = context.session
        let principal = "User:" + user
        if session.authenticated && session.principal != principal {
            return saslFailed(.rejected("re-authentication must be as the same principal"), context)
        }
        if !session.authenticated {
            logger.debug("SASL authenticated", metadata: ["connection": "\(context.connection)", "client": "\(context.clientId ?? "-")", "principal": "\(principal)"])
        }
        session.principal = principal
        session.authenticated = true
        session.sasl = .none
        var response = SaslAuthenticateResponse(errorMessage: nil, authBytes: final)
        if config.reauthenticationMs > 0 {
            session.expiresAtMs = context.nowMs + config.reauthenticationMs
            response.sessionLifetimeMs = config.reauthenticationMs
        }
        return respond(response, context)
    }

    /// Answers SASL_AUTHENTICATION_FAILED (34 for a malformed exchange is what Kafka's SCRAM
    /// server also reports as an authentication failure) and ends the session: any request
    /// after this one closes the connection.
    private func saslFailed(_ failure: SaslFailure, _ context: RequestContext) -> HandleOutcome {
        let session = context.session
        session.sasl = .none
        session.authenticated = false
        session.failed = true
        logger.notice("SASL authentication failed", metadata: ["connection": "\(context.connection)", "client": "\(context.clientId ?? "-")", "reason": "\(failure.message)"])
        var response = SaslAuthenticateResponse(errorCode: ErrorCode.saslAuthenticationFailed.rawValue)
        response.errorMessage = failure.message
        return respond(response, context)
    }
}
