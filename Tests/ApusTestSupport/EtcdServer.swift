import Foundation

/// A real etcd (Debian's `etcd-server`) on 127.0.0.1 with its own data directory, for the
/// cluster tests; stopped and removed by ``stop()`` (and on deinit).
public final class EtcdServer {
    public let clientPort: Int
    public let dataDir: String
    let process = Process()
    public var endpoint: String { "127.0.0.1:\(clientPort)" }

    public init() throws {
        clientPort = ApusServerProcess.freePort()
        let peerPort = ApusServerProcess.freePort()
        dataDir = NSTemporaryDirectory() + "apus-etcd-\(UUID().uuidString.prefix(8))"
        guard let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw HarnessError("etcd not found: install etcd-server (tools/setup)")
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--name", "apus-test", "--data-dir", dataDir,
            "--listen-client-urls", "http://127.0.0.1:\(clientPort)", "--advertise-client-urls", "http://127.0.0.1:\(clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-cluster", "apus-test=http://127.0.0.1:\(peerPort)", "--log-level", "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning { throw HarnessError("etcd exited at start-up") }
            if Self.healthy(endpoint) { return }
            usleep(100_000)
        }
        throw HarnessError("etcd did not become healthy")
    }

    /// `etcdctl endpoint health` (Debian's etcd-client) succeeds: the member has a leader.
    static func healthy(_ endpoint: String) -> Bool {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        check.arguments = ["--endpoints=\(endpoint)", "--dial-timeout=1s", "--command-timeout=1s", "endpoint", "health"]
        check.environment = ["ETCDCTL_API": "3"]
        check.standardOutput = FileHandle.nullDevice
        check.standardError = FileHandle.nullDevice
        guard (try? check.run()) != nil else { return false }
        check.waitUntilExit()
        return check.terminationStatus == 0
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    deinit { stop() }
}
