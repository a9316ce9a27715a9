import ApusTestSupport
import Foundation
import Testing

import ApusServer

/// The files an operator deploys with.
@Suite struct DeployTests {
    @Test func theGrafanaDashboardIsGeneratedFromTheMetrics() throws {
        let committed = try String(contentsOf: Self.root.appendingPathComponent("tools/deploy/grafana-dashboard.json"), encoding: .utf8)
        #expect(committed == Server.grafanaDashboard, "regenerate it: apus serve --print-grafana-dashboard > tools/deploy/grafana-dashboard.json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(committed.utf8)) as? [String: Any])
        let panels = try #require(json["panels"] as? [[String: Any]])
        #expect(panels.count == Server.metricsTable.split(separator: "\n").count - 2, "one panel per metric family")
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `systemd-analyze verify` on the unit, its ExecStart pointed at the built binary (the unit
    /// names /usr/local/bin/apus, which a test machine does not have).
    @Test func theSystemdUnitVerifies() throws {
        let analyze = try #require(which("systemd-analyze"), "systemd is installed by tools/setup")
        let unit = try String(contentsOf: Self.root.appendingPathComponent("tools/deploy/apus.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/apus serve --config /etc/apus/apus.yaml"))
        let path = NSTemporaryDirectory() + "apus-\(UUID().uuidString.prefix(8)).service"
        try unit.replacingOccurrences(of: "/usr/local/bin/apus", with: try ApusServerProcess.binary("apus"))
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try run(analyze, ["verify", path], timeout: 60)
        #expect(result.status == 0, "systemd-analyze verify: \(result.out)\(result.err)")
        #expect(!result.err.contains(URL(fileURLWithPath: path).lastPathComponent), "no warning about the unit: \(result.err)")
    }
}
