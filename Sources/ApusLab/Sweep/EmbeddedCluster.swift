import ApusClient
import ApusIO
import Foundation
import KafkaProtocol

/// A fresh cluster for one sweep point (`target: cluster`): an etcd and N `apus serve`
/// children on 127.0.0.1 (node ids 1...N, `cluster.metadata` on that etcd), each with the
/// point's broker knobs; logs in the point's folder. The sweep's faults are done to it here.
final class EmbeddedCluster: @unchecked Sendable {
    let etcd: EtcdProcess
    let brokers: [EmbeddedBroker]
    var bootstrap: String { brokers.map(\.bootstrap).joined(separator: ",") }
    private let lock = NSLock()
    /// What faults left down (killed, stopped or paused) and not yet undone.
    private var down: [(target: Down, action: FaultSpec.Action)] = []

    enum Down: Equatable {
        case broker(Int)
        case etcd
    }

    init(binary: String, dataDir: String, count: Int, settings: [SweepPoint.Setting], partitions: Int, logDirectory: String,
         knownKeys: Set<String>) throws {
        try? FileManager.default.removeItem(atPath: dataDir)
        etcd = try EtcdProcess(dataDir: "\(dataDir)/etcd", logPath: "\(logDirectory)/etcd.log")
        var started: [EmbeddedBroker] = []
        do {
            for n in 1...count {
                let extra = [SweepPoint.Setting(key: "cluster.metadata", value: "etcd://\(etcd.endpoint)"),
                             SweepPoint.Setting(key: "node.id", value: String(n))]
                started.append(try EmbeddedBroker(binary: binary, dataDir: "\(dataDir)/b\(n)", settings: settings + extra, partitions: partitions,
                                                  logPath: "\(logDirectory)/broker-\(n).log", knownKeys: knownKeys))
            }
        } catch {
            for b in started { b.kill() }
            etcd.kill()
            throw error
        }
        brokers = started
        try waitForBrokers()
    }

    /// Waits until a broker's Metadata lists every broker (each sees the others on etcd).
    func waitForBrokers(timeoutSeconds: Double = 30) throws {
        let deadline = Sys.monotonicNs() + UInt64(timeoutSeconds * 1e9)
        while Sys.monotonicNs() < deadline {
            if let c = try? KafkaConnection(bootstrap: brokers[0].bootstrap, timeoutMs: 5000),
               let m = try? c.roundTrip(MetadataRequest(), version: 1), m.brokers.count == brokers.count {
                return
            }
            Sys.sleep(microseconds: 100_000)
        }
        throw ClientError("the cluster's brokers did not all register within \(Int(timeoutSeconds)) s; see the broker logs")
    }

    /// The node id of the broker leading `partition` of `topic`, asked of any broker that answers.
    func leader(of topic: String, partition: Int) -> Int? {
        for b in brokers where b.isRunning {
            guard let c = try? KafkaConnection(bootstrap: b.bootstrap, timeoutMs: 2000),
                  let m = try? c.metadata(of: topic, wait: false),
                  let p = m.topic.partitions.first(where: { $0.partitionIndex == Int32(partition) }), p.leaderId > 0 else { continue }
            return Int(p.leaderId)
        }
        return nil
    }

    /// Does `fault` now; returns what was done, e.g. "kill broker 2 (leader of partition 0)".
    func apply(_ fault: FaultSpec, topic: String) -> (done: String, undo: Down?) {
        let target: Down
        var note = ""
        switch fault.target {
        case .etcd: target = .etcd
        case .broker(let n): target = .broker(n)
        case .leader(let p):
            guard let n = leader(of: topic, partition: p) else { return ("\(fault.action.rawValue) leader:\(p): no leader known, nothing done", nil) }
            target = .broker(n)
            note = " (leader of partition \(p))"
        }
        let signal: Int32 = switch fault.action {
        case .kill: SIGKILL
        case .stop: SIGTERM
        case .pause: SIGSTOP
        }
        switch target {
        case .etcd: etcd.signal(signal)
        case .broker(let n): brokers[n - 1].signal(signal)
        }
        lock.withLock { down.append((target, fault.action)) }
        return ("\(fault.action.rawValue) \(Self.name(target))\(note)", target)
    }

    /// Undoes what a fault did to `target`: SIGCONT after a pause, a start after a kill or stop
    /// (waiting until the broker serves). Returns what was done.
    func undo(_ target: Down) -> String {
        guard let index = lock.withLock({ down.firstIndex { $0.target == target } }) else { return "" }
        let action = lock.withLock { down.remove(at: index).action }
        do {
            switch (target, action) {
            case (.etcd, .pause): etcd.signal(SIGCONT)
            case (.etcd, _): try etcd.start()
            case (.broker(let n), .pause): brokers[n - 1].signal(SIGCONT)
            case (.broker(let n), _): try brokers[n - 1].start()
            }
        } catch {
            return "starting \(Self.name(target)) again failed: \(error)"
        }
        return action == .pause ? "resume \(Self.name(target))" : "\(Self.name(target)) serving again"
    }

    /// Undoes every fault still in effect (at the end of a run), then waits until every broker
    /// is registered again; returns what was done.
    func restore() throws -> [String] {
        var done: [String] = []
        while let target = lock.withLock({ down.first?.target }) { done.append(undo(target)) }
        try waitForBrokers(timeoutSeconds: 60)
        return done
    }

    static func name(_ target: Down) -> String {
        switch target {
        case .etcd: "etcd"
        case .broker(let n): "broker \(n)"
        }
    }

    /// SIGTERM to every broker at once (the last ones cannot hand leadership off; nobody waits
    /// for that one by one), then etcd. Returns the first non-zero exit status, or 0.
    func stop() -> Int32 {
        for b in brokers {
            b.signal(SIGCONT)
            b.signal(SIGTERM, wait: false)
        }
        let statuses = brokers.map { $0.stop() }
        etcd.stop()
        return statuses.first { $0 != 0 } ?? 0
    }

    func kill() {
        for b in brokers { b.kill() }
        etcd.kill()
    }
}

/// A single-member etcd on 127.0.0.1 (Debian's etcd-server), on free ports; it can be signalled
/// and started again on the same data directory.
final class EtcdProcess: @unchecked Sendable {
    let process: ChildProcess
    let clientPort: UInt16
    var endpoint: String { "127.0.0.1:\(clientPort)" }

    init(dataDir: String, logPath: String) throws {
        guard let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ClientError("etcd is not installed (tools/setup installs Debian's etcd-server); target: cluster needs it")
        }
        clientPort = try ChildProcess.freePort()
        let peer = "http://127.0.0.1:\(try ChildProcess.freePort())", client = "http://127.0.0.1:\(clientPort)"
        try Sys.makeDirectories(dataDir)
        process = ChildProcess(name: "etcd", executable: binary, arguments: [
            "--name", "lab", "--data-dir", dataDir, "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "lab=\(peer)", "--log-level", "error",
        ], logPath: logPath, logsOutput: true)
        try start()
    }

    /// Starts etcd (again) and waits until it listens on its client port.
    func start() throws {
        try process.start(timeoutSeconds: 20) { (try? ClientSocket(host: "127.0.0.1", port: clientPort)) != nil }
    }

    func signal(_ signal: Int32) { process.signal(signal) }

    func stop() { process.stop() }

    func kill() { process.kill() }
}
