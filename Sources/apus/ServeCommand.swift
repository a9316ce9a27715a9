import ApusConfig
import ApusClient
import ApusIO
import ApusLab
import ApusServer
import ApusStorage
import ArgumentParser
import Dispatch
import Foundation
import Logging
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the broker in the foreground (logs to stderr).",
        discussion: "Settings come from the defaults, then --config FILE, then the flags, then each --set key=value. Keys: docs/configuration.md."
    )

    @Option(help: "A YAML file of configuration keys.") var config: String?
    @Option(help: "Where partition logs live (data.dir).") var dataDir: String?
    @Option(help: "host:port to listen on (listeners; port 0 picks a free one).") var listen: String?
    @Option(help: "auto, uring or posix (io.backend).") var ioBackend: String?
    @Option(help: "page-cache, fsync-on-ack-all or fsync-always (durability).") var durability: String?
    @Option(help: "Partitions of an auto-created topic (num.partitions).") var numPartitions: String?
    @Option(help: "Log level (log.level).") var logLevel: String?
    @Option(name: .customLong("set"), help: "Any configuration key: --set key=value (repeatable).") var overrides: [String] = []
    @Flag(help: "Print every configuration key with its default and meaning, then exit.") var printConfigKeys = false
    @Flag(help: "Print every metric the metrics endpoint exports (docs/metrics.md's table), then exit.") var printMetrics = false
    @Flag(help: "Print a Grafana dashboard of those metrics (tools/deploy/grafana-dashboard.json), then exit.") var printGrafanaDashboard = false

    func run() throws {
        if printGrafanaDashboard {
            print(Server.grafanaDashboard, terminator: "")
            return
        }
        if printMetrics {
            print(Server.metricsTable, terminator: "")
            return
        }
        if printConfigKeys {
            print("| key | default | meaning |\n|---|---|---|")
            for k in ServerConfig.keys { print("| `\(k.key)` | `\(k.defaultValue)` | \(k.meaning) |") }
            return
        }
        var settings = ServerConfig()
        do {
            if let config {
                let text = try String(contentsOfFile: config, encoding: .utf8)
                try settings.load(yaml: text, path: config)
            }
            let flags: [(String, String?)] = [
                ("data.dir", dataDir), ("listeners", listen), ("io.backend", ioBackend),
                ("durability", durability), ("num.partitions", numPartitions), ("log.level", logLevel),
            ]
            for case let (key, value?) in flags { try settings.set(key, value) }
            for item in overrides {
                guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--set: expected key=value, got '\(item)'") }
                try settings.set(String(item[..<eq]), String(item[item.index(after: eq)...]))
            }
        } catch let error as ConfigError {
            throw ValidationError(error.description)
        }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        let json = settings.logJSON
        LoggingSystem.bootstrap { label in
            if json {
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "apus")
        let server = try Server(config: settings, logger: logger)
        let signals = TerminationSignals({ server.requestStop() }, hangup: { server.reloadTLS() })
        try server.run()
        signals.keep()
    }
}
