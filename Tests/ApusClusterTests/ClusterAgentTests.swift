import ApusCluster
import ApusTestSupport
import Foundation
import Logging
import Testing

/// Membership and controller election on a real etcd: brokers register under leases, one holds
/// the controller key, a clean stop hands it over at once, a crash lets it go with the lease, and
/// a node id held by a live broker is refused — through the agent and through `apus serve`.
@Suite(.serialized) struct ClusterAgentTests {
    static func agent(_ etcd: EtcdServer, _ id: Int32, prefix: String = "/t", lease: Int64 = 2) throws -> ClusterAgent {
        var logger = Logger(label: "cluster.test")
        logger.logLevel = .critical
        let me = BrokerRegistration(nodeId: id, listeners: [.init(name: "PLAINTEXT", securityProtocol: "PLAINTEXT", host: "127.0.0.1", port: 9000 + id)],
                                    startedAtMs: 0)
        return try ClusterAgent(endpoints: [etcd.endpoint], prefix: prefix, registration: me, leaseSeconds: lease, logger: logger)
    }

    /// Waits up to `seconds` for `condition`.
    static func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let until = Date().addingTimeInterval(seconds)
        while Date() < until {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    @Test func brokersRegisterAndOneControls() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let one = try Self.agent(etcd, 1), two = try Self.agent(etcd, 2)
        try one.start()
        try two.start()
        defer { one.stop(); two.stop() }
        #expect(Self.eventually(3) { one.view.brokers.map(\.nodeId) == [1, 2] && two.view.brokers.map(\.nodeId) == [1, 2] })
        #expect(one.view.controller == 1 && two.view.controller == 1)
        #expect(two.view.brokers[0].listeners[0].port == 9001)
        // Another broker with node id 2 is refused while 2 is alive.
        #expect(throws: EtcdError.self) { try Self.agent(etcd, 2).start() }
        // A clean stop revokes the lease: the other broker takes the controller key at once.
        one.stop()
        #expect(Self.eventually(3) { two.view.controller == 2 && two.view.brokers.map(\.nodeId) == [2] })
        // A separate prefix is a separate cluster.
        let other = try Self.agent(etcd, 1, prefix: "/other")
        try other.start()
        defer { other.stop() }
        #expect(other.view.controller == 1)
    }

    @Test func aCrashedBrokerLeavesWithItsLease() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let one = try Self.agent(etcd, 1), two = try Self.agent(etcd, 2)
        try one.start()
        try two.start()
        defer { two.stop() }
        one.abandon()  // no revoke: as if killed
        #expect(two.view.brokers.count == 2)
        #expect(Self.eventually(6) { two.view.controller == 2 && two.view.brokers.map(\.nodeId) == [2] })
        // Its node id is free again.
        let again = try Self.agent(etcd, 1)
        try again.start()
        again.stop()
    }

    /// The controller on a broker's death: partitions it led get a new leader (epoch raised);
    /// partitions it only followed lose it from their in-sync replicas at once, leader and epoch
    /// unchanged, so acks=all does not wait for the lag time.
    @Test func aCrashedBrokerLeavesTheInSyncReplicasOfWhatItFollowed() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let one = try Self.agent(etcd, 1), two = try Self.agent(etcd, 2), three = try Self.agent(etcd, 3)
        try one.start()
        try two.start()
        try three.start()
        defer { one.stop(); two.stop() }
        #expect(Self.eventually(3) { one.view.brokers.count == 3 })
        let record = TopicRecord(id: "t", leaders: [1, 3, 2], configs: [:], replicas: [[1, 2, 3], [3, 1, 2], [2, 1]],
                                 isr: [[1, 2, 3], [3, 1, 2], [2, 1]], epochs: [4, 0, 1])
        #expect(try TopicRecords(endpoints: [etcd.endpoint], prefix: "/t").create("t", record))
        three.abandon()  // killed: its lease runs out
        #expect(Self.eventually(8) { one.view.topics["t"]?.isr == [[1, 2], [1, 2], [2, 1]] }, "\(String(describing: one.view.topics["t"]))")
        let after = try #require(one.view.topics["t"])
        #expect(after.leaders == [1, 1, 2])
        #expect(after.epochs == [4, 1, 1])  // only the partition that lost its leader moved on
    }

    @Test func serveRegistersAndClusterStatusShowsIt() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let metadata = "cluster.metadata=etcd://\(etcd.endpoint)"
        let first = try ApusServerProcess(arguments: ["--set", metadata, "--set", "node.id=1"])
        let second = try ApusServerProcess(arguments: ["--set", metadata, "--set", "node.id=2"])
        defer { _ = second.stop() }
        func status() throws -> [String: Any] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try ApusServerProcess.binary("apus"))
            p.arguments = ["cluster", "status", "--etcd", "etcd://\(etcd.endpoint)", "--json"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        }
        func nodes() throws -> [Int] { (try status()["brokers"] as? [[String: Any]] ?? []).compactMap { $0["nodeId"] as? Int } }
        #expect(try Self.eventually(5) { try nodes() == [1, 2] })
        #expect(try status()["controller"] as? Int == 1)
        let listeners = try (status()["brokers"] as? [[String: Any]])?.first?["listeners"] as? [String]
        #expect(listeners == ["PLAINTEXT://127.0.0.1:\(first.port)"])
        // A third broker claiming node id 2 does not start.
        #expect(throws: (any Error).self) { _ = try ApusServerProcess(arguments: ["--set", metadata, "--set", "node.id=2"]) }
        // SIGKILL: the lease (6 s) expires and broker 2 becomes the controller.
        _ = first.stop(signal: SIGKILL)
        #expect(try Self.eventually(12) { try nodes() == [2] && status()["controller"] as? Int == 2 })
        #expect(second.log.contains("elected controller"))
    }
}
