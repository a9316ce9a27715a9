import ApusBroker
import ApusIO
import ApusStorage

/// Settings of `apus serve` (config file keys and their defaults are documented in
/// docs/configuration.md).
public struct ServerConfig: Sendable {
    /// `listeners`: where the broker listens, by listener name (the security protocol comes from
    /// `listener.security.protocol.map`).
    public var listeners = [ListenerAddress(name: "PLAINTEXT", host: "127.0.0.1", port: 9092)]
    /// `advertised.listeners`: the address each listener advertises, by listener name (absent:
    /// the bound address).
    public var advertisedListeners: [String: ListenerAddress] = [:]
    /// `listener.security.protocol.map`: listener name → security protocol.
    public var securityProtocolMap: [String: SecurityProtocol] = Dictionary(uniqueKeysWithValues: SecurityProtocol.allCases.map { ($0.rawValue, $0) })
    public var dataDirectory = "./apus-data"
    public var ioBackend: IOBackendKind = .auto
    /// `socket.request.max.bytes`: a larger request closes its connection.
    public var requestMaxBytes = 100 << 20
    /// A connection whose unsent responses exceed this stops being read until they drain.
    public var connectionBacklogBytes = 64 << 20
    /// How long SIGTERM/SIGINT wait for in-flight requests before stopping anyway.
    public var shutdownDeadlineMs: Int64 = 10_000
    public var logLevel = "info"
    /// `log.format`: text lines, or one JSON object per line.
    public var logJSON = false
    /// `page.cache.max.bytes`: what the appends may leave in the page cache, over all shards
    /// (0: no limit; nil: `auto`, a third of the machine's memory).
    public var pageCacheMaxBytes: Int64?
    /// `loop.read.bytes`: what a shard reads from one connection in one turn, at most (about).
    public var turnReadBytes = 1 << 20
    /// `loop.stall.warn.ms`: a shard turn longer than this is a stall (counted and logged).
    public var stallWarnMs = 10
    /// `loop.stall.stats.file`: where the shards' stall counts are written every second (JSON).
    public var stallStatsFile: String?
    /// `metrics.listen`: where the metrics and health endpoint listens (nil: off).
    public var metricsListen: (host: String, port: UInt16)? = ("127.0.0.1", 9644)
    /// `cpus`: which CPUs run a shard (one pinned thread each).
    public var cpus: CPUSelection = .all
    /// `numa`: prefer each shard's memory on its CPU's NUMA node (when there are several).
    public var numa = true
    public var broker = BrokerConfig()
    /// `cluster.metadata`: etcd endpoints (`host:port`) holding the cluster's metadata; empty:
    /// a single broker that needs nothing else.
    public var clusterEtcd: [String] = []
    /// `broker.session.timeout.ms`: the registration lease's TTL (rounded up to whole seconds).
    public var sessionTimeoutMs: Int64 = 6_000
    /// `cluster.prefix`: where this cluster's keys live in etcd.
    public var clusterPrefix = "/apus"
    /// `auto.leader.rebalance.enable` and `leader.imbalance.check.interval.seconds`: the
    /// controller gives leadership back to a partition's preferred replica once it has been in
    /// sync this long.
    public var rebalanceLeaders = true
    public var rebalanceDelaySeconds: Int64 = 300
    /// How long a preferred replica must be in sync before it leads again; nil: never.
    public var preferredLeaderDelaySeconds: Int64? { rebalanceLeaders ? rebalanceDelaySeconds : nil }
    /// The `ssl.*` keys: SSL and SASL_SSL listeners' certificate, trust and protocol settings.
    public var tls = TLSSettings()
    /// `listener.name.<listener>.ssl.*`: per listener (upper-cased name), `ssl.*` key → value.
    public var listenerTLS: [String: [String: String]] = [:]

    public init() {}
}

/// A listener's name and address, as `listeners` and `advertised.listeners` write it
/// (`NAME://host:port`; a bare `host:port` is the PLAINTEXT listener).
public struct ListenerAddress: Sendable, Equatable {
    public var name: String
    public var host: String
    public var port: UInt16

    public init(name: String, host: String, port: UInt16) {
        self.name = name
        self.host = host
        self.port = port
    }

    /// Parses a comma-separated list; throws naming `key` on a malformed entry or a repeated name.
    static func parseList(_ value: String, key: String) throws(ConfigError) -> [ListenerAddress] {
        var result: [ListenerAddress] = []
        for entry in value.split(separator: ",").map({ $0.trimmingSpaces }) where !entry.isEmpty {
            var name = "PLAINTEXT"
            var address = Substring(entry)
            if let range = entry.range(of: "://") {
                name = entry[..<range.lowerBound].uppercased()
                address = entry[range.upperBound...]
            }
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]),
                  !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
            else { throw ConfigError("\(key): expected NAME://host:port (or host:port) entries separated by commas, got '\(entry)'") }
            // Kafka's `PLAINTEXT://:9092` binds every interface.
            let host = address[..<colon].isEmpty ? "0.0.0.0" : String(address[..<colon])
            guard !result.contains(where: { $0.name == name }) else { throw ConfigError("\(key): listener name \(name) appears twice") }
            result.append(ListenerAddress(name: name, host: host, port: port))
        }
        guard !result.isEmpty else { throw ConfigError("\(key): expected at least one listener") }
        return result
    }
}

extension StringProtocol {
    var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}

extension ServerConfig {
    /// The listeners with their security protocols; throws when a name has no protocol in
    /// `listener.security.protocol.map` or an advertised listener names no listener.
    public func resolvedListeners() throws(ConfigError) -> [(address: ListenerAddress, securityProtocol: SecurityProtocol)] {
        for name in advertisedListeners.keys where !listeners.contains(where: { $0.name == name }) {
            throw ConfigError("advertised.listeners: \(name) is not in listeners")
        }
        return try listeners.map { listener throws(ConfigError) in
            guard let p = securityProtocolMap[listener.name] else {
                throw ConfigError("listeners: \(listener.name) has no security protocol in listener.security.protocol.map")
            }
            return (listener, p)
        }
    }
}

/// The `cpus` setting: the CPUs that each run one shard.
public enum CPUSelection: Sendable, Equatable {
    /// Every CPU the process may run on.
    case all
    /// The first N of them.
    case count(Int)
    /// These CPUs, in this order (shard i on the i-th).
    case list([Int])

    /// Parses `all`, a count, or a list of CPU ids and ranges (`0,2,4-7`).
    init?(_ text: String) {
        if text == "all" {
            self = .all
            return
        }
        if !text.contains(","), !text.contains("-"), let n = Int(text) {
            guard (1...64).contains(n) else { return nil }
            self = .count(n)
            return
        }
        var cpus: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard let low = bounds.first ?? nil, let high = bounds.last ?? nil, bounds.count <= 2, low >= 0, low <= high,
                  high - low < 64 else { return nil }
            cpus += Array(low...high)
        }
        guard !cpus.isEmpty, cpus.count <= 64, Set(cpus).count == cpus.count else { return nil }
        self = .list(cpus)
    }

    /// The CPUs chosen among those the process may run on (at most 64 shards).
    public func resolve(allowed: [Int]) throws(ConfigError) -> [Int] {
        switch self {
        case .all:
            return Array(allowed.prefix(64))
        case .count(let n):
            guard n <= allowed.count else {
                throw ConfigError("cpus: \(n) shards asked for but this process may run on only \(allowed.count) CPUs (\(allowed))")
            }
            return Array(allowed.prefix(n))
        case .list(let cpus):
            if let missing = cpus.first(where: { !allowed.contains($0) }) {
                throw ConfigError("cpus: CPU \(missing) is not one this process may run on (\(allowed))")
            }
            return cpus
        }
    }
}

/// A listener's TLS settings (`ssl.*` keys; PEM files, as Kafka's `ssl.keystore.type=PEM`).
public struct TLSSettings: Sendable, Equatable {
    /// PEM file with the certificate chain and its private key.
    public var keystore: String?
    /// The private key's password, if it is encrypted (never logged).
    public var keyPassword: String?
    /// PEM file of the CAs trusted for client certificates.
    public var truststore: String?
    /// `ssl.client.auth`: none, requested, required.
    public var clientAuth = ClientAuth.none
    /// Lowest protocol enabled: TLSv1.2 or TLSv1.3.
    public var minProtocol = "TLSv1.2"
    /// `ssl.cipher.suites`: OpenSSL names for TLS 1.2, `TLS_*` names for TLS 1.3 (empty: defaults).
    public var cipherSuites: [String] = []

    public enum ClientAuth: String, Sendable { case none, requested, required }

    public init() {}
}
