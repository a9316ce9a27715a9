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

    /// GET /health answers `"health":"true"` once the member has a leader (a plain socket, so
    /// that waiting spawns no process).
    static func healthy(_ endpoint: String) -> Bool {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { return false }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr(String(parts[0]))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let request = Array("GET /health HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return false }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            answer += chunk[..<n]
        }
        let text = String(decoding: answer, as: UTF8.self)
        return text.hasPrefix("HTTP/1.1 200") && text.contains("\"health\":\"true\"")
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
