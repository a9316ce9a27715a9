import ApusBroker
import ApusIO
import ApusStorage

/// Settings of `apus serve` (config file keys and their defaults are documented in
/// docs/configuration.md).
public struct ServerConfig: Sendable {
    public var listenHost = "127.0.0.1"
    public var listenPort: UInt16 = 9092
    public var dataDirectory = "./apus-data"
    public var ioBackend: IOBackendKind = .auto
    /// `socket.request.max.bytes`: a larger request closes its connection.
    public var requestMaxBytes = 100 << 20
    /// A connection whose unsent responses exceed this stops being read until they drain.
    public var connectionBacklogBytes = 64 << 20
    /// How long SIGTERM/SIGINT wait for in-flight requests before stopping anyway.
    public var shutdownDeadlineMs: Int64 = 10_000
    public var logLevel = "info"
    public var broker = BrokerConfig()

    public init() {}

    /// Whether `advertised.listeners` was set (otherwise the bound listener is advertised).
    public var advertisedIsExplicit = false
}
