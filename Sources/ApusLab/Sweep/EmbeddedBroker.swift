import ApusClient
import ApusIO
import Foundation

/// A fresh `apus serve` child process for one sweep point: its own data directory, its own
/// port on 127.0.0.1, the point's broker knobs, stderr kept in the bundle. A cluster's broker
/// can be signalled and started again (same port, data and log).
final class EmbeddedBroker: @unchecked Sendable {
    let process: ChildProcess
    let port: UInt16
    let dataDir: String
    var bootstrap: String { "127.0.0.1:\(port)" }

    /// Where the broker writes its stall statistics every second.
    let stallsPath: String
    /// The broker's metrics endpoint (nil for a build without one).
    let metricsPort: UInt16?

    init(binary: String, dataDir: String, settings: [SweepPoint.Setting], partitions: Int, logPath: String, knownKeys: Set<String>) throws {
        self.dataDir = dataDir
        stallsPath = logPath + ".stalls.json"
        try? FileManager.default.removeItem(atPath: dataDir)
        try Sys.makeDirectories(dataDir)
        port = try ChildProcess.freePort()
        let metricsPort = try ChildProcess.freePort()
        self.metricsPort = knownKeys.contains("metrics.listen") ? metricsPort : nil
        let arguments = ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:\(port)", "--num-partitions", String(partitions)]
            + settings.flatMap { ["--set", "\($0.key)=\($0.value)"] }
            + (knownKeys.contains("loop.stall.stats.file") ? ["--set", "loop.stall.stats.file=\(stallsPath)"] : [])
            + (self.metricsPort.map { ["--set", "metrics.listen=127.0.0.1:\($0)"] } ?? [])
        process = ChildProcess(name: "apus serve", executable: binary, arguments: arguments, logPath: logPath)
        try start()
    }

    /// Starts the broker (again) and waits until it accepts connections. A cluster broker
    /// restarted after SIGKILL first waits out its old registration's lease.
    func start() throws {
        try process.start(timeoutSeconds: 30) { (try? KafkaConnection(bootstrap: bootstrap, timeoutMs: 5000)) != nil }
    }

    var isRunning: Bool { process.isRunning }

    func signal(_ signal: Int32, wait: Bool = true) { process.signal(signal, wait: wait) }

    /// The configuration keys `binary`'s `apus serve` knows: a build from before a key existed
    /// (an older broker given to `apus sweep --broker-binary`) refuses to start with it.
    static func configKeys(_ binary: String) -> Set<String> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--print-config-keys"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return [] }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // Table rows: | `key` | `default` | meaning |
        return Set(text.split(separator: "\n").compactMap { line in
            line.hasPrefix("| `") ? line.dropFirst(3).split(separator: "`").first.map(String.init) : nil
        })
    }

    /// The broker's stall statistics as last written (`loop.stall.stats.file`, every second).
    struct StallStats: Decodable {
        struct Shard: Decodable { var turns: UInt64; var stalls: Int; var byCause: [String: Int]? }
        struct Stall: Decodable { var atMs: Int64; var ms: Double; var phase: String; var cause: String? }
        var warnMs: Int
        var shards: [Shard]
        var recent: [Stall]
        var diskWaitsOnShards: Int
        var declaredDiskWaits: [String: Int]?
    }

    func stallStats() -> StallStats? {
        guard let data = FileManager.default.contents(atPath: stallsPath) else { return nil }
        return try? JSONDecoder().decode(StallStats.self, from: data)
    }

    /// What the stall detector saw between two snapshots (`fromMs`...`toMs` wall clock).
    static func stalls(from before: StallStats?, to after: StallStats, fromMs: Int64, toMs: Int64) -> BrokerStalls {
        let turns = after.shards.reduce(UInt64(0)) { $0 + $1.turns } - (before?.shards.reduce(UInt64(0)) { $0 + $1.turns } ?? 0)
        let count = after.shards.reduce(0) { $0 + $1.stalls } - (before?.shards.reduce(0) { $0 + $1.stalls } ?? 0)
        let longest = after.recent.filter { $0.atMs >= fromMs && $0.atMs <= toMs }.max { $0.ms < $1.ms }
        func causes(_ s: StallStats?) -> [String: Int] {
            (s?.shards ?? []).reduce(into: [:]) { sum, shard in sum.merge(shard.byCause ?? [:], uniquingKeysWith: +) }
        }
        /// What each count grew by between the snapshots (counts that did not grow left out).
        func growth(_ after: [String: Int], _ before: [String: Int]) -> [String: Int] {
            after.merging(before.mapValues { -$0 }, uniquingKeysWith: +).filter { $0.value > 0 }
        }
        return BrokerStalls(warnMs: after.warnMs, turns: turns, stalls: count, longestMs: longest?.ms, longestPhase: longest?.phase,
                            longestCause: longest?.cause, byCause: growth(causes(after), causes(before)), diskWaitsOnShards: after.diskWaitsOnShards,
                            declaredDiskWaits: after.declaredDiskWaits.map { growth($0, before?.declaredDiskWaits ?? [:]) })
    }

    /// SIGTERM, then SIGKILL after `graceSeconds`; returns the exit status (0 for a clean stop).
    @discardableResult
    func stop(graceSeconds: Double = 20) -> Int32 { process.stop(graceSeconds: graceSeconds) }

    /// SIGKILL, at once (an interrupted sweep).
    func kill() { process.kill() }
}
