import Foundation
import Testing

/// A real `apus serve` child process on 127.0.0.1 with its own data directory (shared by the
/// server and client test targets).
public final class ApusServerProcess {
    public let dataDir: String
    public let port: Int
    /// The metrics endpoint's port (127.0.0.1).
    public let metricsPort: Int
    public let process = Process()
    let stderrPath: String
    public var bootstrap: String { "127.0.0.1:\(port)" }

    public static func binary(_ name: String) throws -> String {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw HarnessError("\(name) not found near \(exe); run `swift build` first")
    }

    /// A port that was free a moment ago.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// - Parameter stderrTo: where the broker's standard error goes instead of ``log``'s file
    ///   (e.g. /dev/full: every log write fails).
    public init(dataDir: String? = nil, port: Int? = nil, arguments: [String] = [], stderrTo: String? = nil) throws {
        self.dataDir = dataDir ?? NSTemporaryDirectory() + "apus-server-\(UUID().uuidString.prefix(8))"
        self.port = port ?? Self.freePort()
        stderrPath = self.dataDir + ".stderr.log"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try Self.binary("apus"))
        // Each broker's metrics endpoint on a port of its own (the default one is shared).
        metricsPort = Self.freePort()
        let metrics = arguments.contains { $0.hasPrefix("metrics.listen=") } ? [] : ["--set", "metrics.listen=127.0.0.1:\(metricsPort)"]
        process.arguments = ["serve", "--data-dir", self.dataDir, "--listen", bootstrap] + metrics + arguments
        process.standardError = FileHandle(forWritingAtPath: stderrTo ?? stderrPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try waitUntilListening()
    }

    private func waitUntilListening() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning { throw HarnessError("apus serve exited early:\n\(log)") }
            // Ready once it answers ApiVersions: right after a SIGKILL the previous process's
            // listener can still accept for a moment (its io_uring teardown holds the socket).
            if let fd = connectLoopback(port) {
                let answered = Self.answersApiVersions(fd)
                close(fd)
                if answered { return }
            }
            usleep(50_000)
        }
        throw HarnessError("apus serve did not start listening:\n\(log)")
    }

    /// Sends ApiVersions v0 on `fd` and waits up to 0.5 s for the start of a response.
    private static func answersApiVersions(_ fd: Int32) -> Bool {
        var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request: [UInt8] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF]
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
        var reply = [UInt8](repeating: 0, count: 8)
        return reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_WAITALL)) } == 8
    }

    public var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Sends a signal and waits for the exit; returns the exit status.
    @discardableResult
    public func stop(signal sig: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, sig) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    public func removeData() {
        try? FileManager.default.removeItem(atPath: dataDir)
        try? FileManager.default.removeItem(atPath: stderrPath)
    }
}

/// A blocking TCP socket connected to 127.0.0.1:`port`, or nil (errno says why) if nothing
/// accepted; the caller closes it.
public func connectLoopback(_ port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else {
        let saved = errno
        close(fd)
        errno = saved
        return nil
    }
    return fd
}

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Runs a command with a timeout; returns (status, stdout, stderr).
@discardableResult
public func run(_ path: String, _ arguments: [String], input: String? = nil, timeout: TimeInterval = 30) throws -> (status: Int32, out: String, err: String) {
    let stem = NSTemporaryDirectory() + "apus-run-\(UUID().uuidString.prefix(8))"
    _ = FileManager.default.createFile(atPath: stem + ".out", contents: nil)
    _ = FileManager.default.createFile(atPath: stem + ".err", contents: nil)
    _ = FileManager.default.createFile(atPath: stem + ".in", contents: Data((input ?? "").utf8))
    defer { for ext in [".out", ".err", ".in"] { try? FileManager.default.removeItem(atPath: stem + ext) } }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle(forWritingAtPath: stem + ".out")
    process.standardError = FileHandle(forWritingAtPath: stem + ".err")
    process.standardInput = FileHandle(forReadingAtPath: stem + ".in")
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        process.terminate()
        throw HarnessError("\(path) \(arguments) timed out after \(timeout) s")
    }
    let out = (try? String(contentsOfFile: stem + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: stem + ".err", encoding: .utf8)) ?? ""
    return (process.terminationStatus, out, err)
}

public func which(_ tool: String) -> String? {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
        return "\(dir)/\(tool)"
    }
    return nil
}
