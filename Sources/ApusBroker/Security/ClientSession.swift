/// What the broker knows about one client connection's identity: the listener it came in on,
/// its principal, and where its SASL exchange stands. Owned by the connection's shard (the
/// server creates one per connection); requests forwarded to shard 0 carry a copy.
public final class ClientSession {
    /// The listener's index in `BrokerConfig.listeners`.
    public let listener: Int
    public let securityProtocol: SecurityProtocol
    /// Kafka's principal: `User:<name>` after SASL, `User:<certificate subject>` for a TLS
    /// client certificate, `User:ANONYMOUS` otherwise.
    public internal(set) var principal: String
    /// The client's address (ACL host matching).
    public let host: String
    /// Requests other than ApiVersions and the SASL ones are served (no SASL on this
    /// listener, or the client has authenticated).
    public internal(set) var authenticated: Bool
    /// The SASL exchange under way, if any.
    var sasl: SaslExchange = .none
    /// SaslHandshake v0 was used: the exchange's messages come as raw tokens, without Kafka's
    /// request header, until it completes.
    var rawTokens = false
    /// An authentication failed: the next request closes the connection.
    var failed = false
    /// When the authentication expires (KIP-368 `connections.max.reauth.ms`); nil: never.
    var expiresAtMs: Int64?

    public static let anonymous = "User:ANONYMOUS"

    public init(listener: Int = 0, securityProtocol: SecurityProtocol = .plaintext, host: String = "", principal: String = ClientSession.anonymous) {
        self.listener = listener
        self.securityProtocol = securityProtocol
        self.host = host
        self.principal = principal
        self.authenticated = !securityProtocol.usesSASL
    }

    /// Sets the principal a TLS client certificate proves (before any request).
    public func setCertificatePrincipal(_ subject: String) {
        if !securityProtocol.usesSASL { principal = "User:" + subject }
    }

    /// An authenticated copy (for a request forwarded to another shard).
    func forwarded() -> ClientSession {
        let copy = ClientSession(listener: listener, securityProtocol: securityProtocol, host: host, principal: principal)
        copy.authenticated = true
        return copy
    }
}

/// Where a connection's SASL exchange stands.
enum SaslExchange {
    case none
    /// SaslHandshake chose this mechanism; SaslAuthenticate comes next.
    case handshaken(SaslMechanism)
    /// A SCRAM exchange waiting for the client's final message.
    case scram(ScramServerExchange)
    /// A PLAIN check under way off the shard (its answer comes later).
    case checking
}
