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
        return broker.authenticate(request.authBytes, context)
    }

    /// The next SASL message of the connection's exchange (a SaslAuthenticate's bytes, or after
    /// SaslHandshake v0 a raw token).
    private func authenticate(_ bytes: [UInt8], _ context: RequestContext) -> HandleOutcome {
        let broker = self
        let session = context.session
        switch session.sasl {
        case .handshaken(.plain):
            switch parsePlain(bytes) {
            case .failure(let failure):
                return broker.saslFailed(failure, context)
            case .success(let (user, password)):
                let stored = broker.mesh.security.credentials(of: user)
                guard let (mechanism, credential) = stored?.max(by: { $0.key < $1.key }) else {
                    return broker.saslFailed(.rejected("authentication failed: invalid credentials"), context)
                }
                session.sasl = .checking
                broker.mesh.afterDiskWork(on: broker.index, worker: .compute, { credential.matches(password: password, mechanism: mechanism) }) { broker, ok in
                    let outcome = ok ? broker.saslSucceeded(user: user, final: [], context)
                                     : broker.saslFailed(.rejected("authentication failed: invalid credentials"), context)
                    switch outcome {
                    case .respond(let frame): broker.answerLater(frame, context)
                    case .close(let reason): broker.closeRequests.append((context.connection, reason))
                    default: break
                    }
                }
                return .pending
            }
        case .handshaken(let mechanism):
            let scram = mechanism.scram!
            let security = broker.mesh.security
            switch ScramServerExchange.start(bytes, mechanism: scram, lookup: { security.credential(user: $0, mechanism: scram) }) {
            case .failure(let failure):
                return broker.saslFailed(failure, context)
            case .success(let (exchange, serverFirst)):
                session.sasl = .scram(exchange)
                return broker.saslAnswer(Array(serverFirst.utf8), context, done: false)
            }
        case .scram(let exchange):
            switch exchange.finish(bytes) {
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
        if config.reauthenticationMs > 0 { session.expiresAtMs = context.nowMs + config.reauthenticationMs }
        return saslAnswer(final, context, done: true)
    }

    /// A successful step's answer: SaslAuthenticate's response (with the session lifetime), or
    /// after SaslHandshake v0 the raw token (its size, then the bytes; ending the raw mode when
    /// the exchange is done).
    private func saslAnswer(_ token: [UInt8], _ context: RequestContext, done: Bool) -> HandleOutcome {
        let session = context.session
        if session.rawTokens {
            if done { session.rawTokens = false }
            return .respond(ResponseFrame(body: token))
        }
        var response = SaslAuthenticateResponse(errorMessage: nil, authBytes: token)
        if done && config.reauthenticationMs > 0 { response.sessionLifetimeMs = config.reauthenticationMs }
        return respond(response, context)
    }

    /// A raw SASL token (after SaslHandshake v0, the whole frame is the mechanism's message).
    func saslRawToken(_ frame: UnsafeRawBufferPointer, connection: ConnectionID, sequence: UInt64, nowMs: Int64, session: ClientSession) -> HandleOutcome {
        switch session.sasl {
        case .handshaken, .scram: break
        default: return .close("a raw SASL token while no exchange expects one")
        }
        counters.noteRequest(SaslAuthenticateRequest.apiKey)
        let context = RequestContext(connection: connection, sequence: sequence, apiKey: SaslAuthenticateRequest.apiKey, apiVersion: 0,
                                     correlationId: 0, clientId: nil, nowMs: nowMs, responseHeaderVersion: 0, session: session)
        return authenticate(Array(frame), context)
    }

    /// Answers SASL_AUTHENTICATION_FAILED (34 for a malformed exchange is what Kafka's SCRAM
    /// server also reports as an authentication failure) and ends the session: any request
    /// after this one closes the connection.
    private func saslFailed(_ failure: SaslFailure, _ context: RequestContext) -> HandleOutcome {
        let session = context.session
        session.sasl = .none
        session.authenticated = false
        session.failed = true
        if session.rawTokens { return .close("SASL authentication failed: \(failure.message)") }  // v0 has no way to say so
        let allowed = saslFailureLog.allow(nowMs: context.nowMs) { count, seconds in
            logger.notice("more SASL authentications failed; not logged one by one", metadata: ["shard": "\(index)", "count": "\(count)", "seconds": "\(seconds)"])
        }
        if allowed {
            logger.notice("SASL authentication failed", metadata: [
                "connection": "\(context.connection)", "host": "\(session.host)", "client": "\(context.clientId ?? "-")", "reason": "\(failure.message)",
            ])
        }
        var response = SaslAuthenticateResponse(errorCode: ErrorCode.saslAuthenticationFailed.rawValue)
        response.errorMessage = failure.message
        return respond(response, context)
    }
}
