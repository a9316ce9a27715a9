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
    /// `log.format`: text lines, or one JSON object per line.
    public var logJSON = false
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

    public init() {}

    /// Whether `advertised.listeners` was set (otherwise the bound listener is advertised).
    public var advertisedIsExplicit = false
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
