/// A listener's security protocol, by Kafka's names (`listener.security.protocol.map`).
public enum SecurityProtocol: String, Sendable, CaseIterable {
    case plaintext = "PLAINTEXT"
    case ssl = "SSL"
    case saslPlaintext = "SASL_PLAINTEXT"
    case saslSsl = "SASL_SSL"

    /// Connections are encrypted with TLS.
    public var usesTLS: Bool { self == .ssl || self == .saslSsl }
    /// Clients must authenticate with SASL before any request but ApiVersions and the SASL ones.
    public var usesSASL: Bool { self == .saslPlaintext || self == .saslSsl }
}

/// One listener as clients see it: what Metadata, FindCoordinator and DescribeCluster answer a
/// client that came in on it (Kafka answers each client with its own listener's addresses).
public struct AdvertisedListener: Sendable, Equatable {
    public var name: String
    public var securityProtocol: SecurityProtocol
    public var host: String
    public var port: Int32

    public init(name: String, securityProtocol: SecurityProtocol, host: String, port: Int32) {
        self.name = name
        self.securityProtocol = securityProtocol
        self.host = host
        self.port = port
    }
}
