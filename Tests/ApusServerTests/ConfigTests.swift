import ApusBroker
import ApusConfig
import ApusTestSupport
import ApusServer
import ApusStorage
import Foundation
import Testing

/// The configuration schema: one table of keys, errors that name the key, and docs that match.
@Suite struct ConfigTests {
    @Test func everyDocumentedDefaultIsAcceptedAndTheDocsListEveryKey() throws {
        let docs = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        for (key, value, meaning) in ServerConfig.keys {
            #expect(docs.contains("| `\(key)` | `\(value)` | \(meaning) |"), "docs/configuration.md is out of date for \(key): regenerate it with --print-config-keys")
            guard !value.hasPrefix("(") else { continue }
            var config = ServerConfig()
            #expect(throws: Never.self, "default of \(key)") { try config.set(key, value) }
        }
    }

    @Test func theDeployedConfigFileLoads() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/deploy/apus.yaml").path
        var config = ServerConfig()
        try config.load(yaml: try String(contentsOfFile: path, encoding: .utf8), path: path)
        #expect(config.dataDirectory == "/var/lib/apus")
        #expect(config.metricsListen?.host == "0.0.0.0" && config.metricsListen?.port == 9644)
        #expect(config.broker.log.durability == .fsyncOnAckAll)
    }

    @Test func unknownKeysAndBadValuesNameTheKey() {
        var config = ServerConfig()
        #expect(throws: ConfigError.self) { try config.set("retention.hours", "1") }
        do {
            try config.set("num.partitions", "zero")
            Issue.record("a bad value must be refused")
        } catch {
            #expect(error.description.hasPrefix("num.partitions:"))
        }
        do {
            try config.set("durability", "sometimes")
            Issue.record("a bad value must be refused")
        } catch {
            #expect(error.description.contains("durability"))
        }
    }

    @Test func listenersTakeKafkasSyntax() throws {
        var config = ServerConfig()
        try config.set("listeners", "PLAINTEXT://127.0.0.1:9092, sasl_ssl://:9094,INTERNAL://10.0.0.1:0")
        try config.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:SASL_PLAINTEXT")
        try config.set("advertised.listeners", "SASL_SSL://broker1.example.com:19094")
        let resolved = try config.resolvedListeners()
        #expect(resolved.map(\.address.name) == ["PLAINTEXT", "SASL_SSL", "INTERNAL"])
        #expect(resolved.map(\.securityProtocol) == [.plaintext, .saslSsl, .saslPlaintext])
        #expect(resolved[1].address.host == "0.0.0.0")  // an empty host binds every interface
        #expect(config.advertisedListeners["SASL_SSL"] == ListenerAddress(name: "SASL_SSL", host: "broker1.example.com", port: 19094))
        // A bare host:port advertises the first listener.
        try config.set("advertised.listeners", "public.example.com:9092")
        #expect(config.advertisedListeners["PLAINTEXT"]?.host == "public.example.com")
        for (key, bad) in [("listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2"), ("listeners", "PLAINTEXT://nohost"), ("listeners", ""),
                           ("listener.security.protocol.map", "X:TLS")] {
            #expect(throws: ConfigError.self) { try config.set(key, bad) }
        }
        // listener.name.<l>.ssl.*: that listener's own TLS settings over the ssl.* ones.
        try config.set("ssl.keystore.location", "/etc/apus/external.pem")
        try config.set("ssl.client.auth", "requested")
        try config.set("listener.name.internal.ssl.keystore.location", "/etc/apus/internal.pem")
        #expect(config.tlsSettings(forListener: "INTERNAL").keystore == "/etc/apus/internal.pem")
        #expect(config.tlsSettings(forListener: "INTERNAL").clientAuth == .requested)
        #expect(config.tlsSettings(forListener: "SASL_SSL").keystore == "/etc/apus/external.pem")
        for bad in ["listener.name.internal.keystore", "listener.name..ssl.keystore.location", "listener.name.x.ssl.nonsense"] {
            #expect(throws: ConfigError.self) { try config.set(bad, "x") }
        }
        #expect(throws: ConfigError.self) { try config.set("listener.name.x.ssl.client.auth", "maybe") }
        try config.set("listeners", "CLIENT://127.0.0.1:0")
        #expect(throws: ConfigError.self) { try config.resolvedListeners() }  // CLIENT has no protocol in the map
    }

    @Test func yamlFilesApplyKeysAndReportTheLine() throws {
        var config = ServerConfig()
        try config.load(yaml: "listeners: 127.0.0.1:19999\ndurability: fsync-always\nretention.bytes: 1048576\n", path: "apus.yaml")
        #expect(config.listeners == [ListenerAddress(name: "PLAINTEXT", host: "127.0.0.1", port: 19999)])
        #expect(config.broker.log.durability == .fsyncAlways)
        #expect(config.broker.log.retentionBytes == 1_048_576)
        do {
            try config.load(yaml: "data.dir: /tmp/x\n\nsegment.byts: 10\n", path: "apus.yaml")
            Issue.record("an unknown key must be refused")
        } catch {
            #expect(error.description.hasPrefix("apus.yaml:3:"))
            #expect(error.description.contains("segment.byts"))
        }
    }

    @Test func cpusSelectShardsAmongTheAllowedCPUs() throws {
        var config = ServerConfig()
        let allowed = [0, 1, 2, 3, 6]
        #expect(try config.cpus.resolve(allowed: allowed) == allowed, "all by default")
        try config.set("cpus", "2")
        #expect(try config.cpus.resolve(allowed: allowed) == [0, 1])
        try config.set("cpus", "6,1-3")
        #expect(try config.cpus.resolve(allowed: allowed) == [6, 1, 2, 3], "listed order is shard order")
        try config.set("cpus", "4")
        #expect(throws: ConfigError.self, "CPU 4 is not allowed") { try config.cpus.resolve(allowed: [0, 1]) }
        try config.set("cpus", "5,7")
        #expect(throws: ConfigError.self, "5 is not allowed") { try config.cpus.resolve(allowed: allowed) }
        for bad in ["0", "65", "1-", "3-1", "a", "1,1", "", "-1", "0-99999999999"] {
            #expect(throws: ConfigError.self, "cpus=\(bad)") { try config.set("cpus", bad) }
        }
        try config.set("numa", "off")
        #expect(!config.numa)
        #expect(throws: ConfigError.self) { try config.set("numa", "on") }
    }

    @Test func serveRefusesABadSettingBeforeStarting() throws {
        let result = try run(ApusServerProcess.binary("apus"), ["serve", "--set", "flush.ms=soon", "--data-dir", NSTemporaryDirectory() + "apus-never"])
        #expect(result.status != 0)
        #expect(result.err.contains("flush.ms"))
    }
}
