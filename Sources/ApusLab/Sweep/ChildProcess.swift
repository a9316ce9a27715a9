import ApusClient
import ApusIO
import Foundation

/// A process the sweep starts (an `apus serve`, an etcd), signals and may start again with the
/// same command line, its output appended to a log file in the bundle. Thread-safe: a fault
/// schedule signals it while the runner stops it.
final class ChildProcess: @unchecked Sendable {
    let name: String
    let executable: String
    let arguments: [String]
    let logPath: String
    /// Standard output too goes to the log (else nowhere).
    let logsOutput: Bool
    private let lock = NSLock()
    private var process = Process()

    init(name: String, executable: String, arguments: [String], logPath: String, logsOutput: Bool = false) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.logPath = logPath
        self.logsOutput = logsOutput
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)  // if it cannot be made, the child writes to our stderr
    }

    /// Starts the process (again) and polls `ready` until it says so; an exit or
    /// `timeoutSeconds` first is an error naming the log.
    func start(timeoutSeconds: Double, until ready: () -> Bool) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let log = FileHandle(forWritingAtPath: logPath)
        log?.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = logsOutput ? log : FileHandle.nullDevice
        try p.run()
        lock.withLock { process = p }
        let deadline = Sys.monotonicNs() + UInt64(timeoutSeconds * 1e9)
        while true {
            guard p.isRunning else { throw ClientError("\(name) exited at start-up (status \(p.terminationStatus)); see \(logPath)") }
            if ready() { return }
            if Sys.monotonicNs() > deadline {
                p.terminate()
                throw ClientError("\(name) was not ready within \(Int(timeoutSeconds)) s; see \(logPath)")
            }
            Sys.sleep(microseconds: 50_000)
        }
    }

    var isRunning: Bool { lock.withLock { process.isRunning } }

    /// Sends `signal` to the running process (SIGKILL and SIGTERM: with `wait`, returns once
    /// it has exited).
    func signal(_ signal: Int32, wait: Bool = true) {
        let p = lock.withLock { process }
        guard p.isRunning else { return }
        Sys.signal(p.processIdentifier, signal)
        if wait && (signal == SIGKILL || signal == SIGTERM) { p.waitUntilExit() }
    }

    /// SIGCONT (a paused process cannot stop) and SIGTERM, then SIGKILL after `graceSeconds`;
    /// returns the exit status (0 for a clean stop).
    @discardableResult
    func stop(graceSeconds: Double = 20) -> Int32 {
        let p = lock.withLock { process }
        guard p.isRunning else { return p.terminationStatus }
        Sys.signal(p.processIdentifier, SIGCONT)
        p.terminate()
        let deadline = Sys.monotonicNs() + UInt64(graceSeconds * 1e9)
        while p.isRunning && Sys.monotonicNs() < deadline { Sys.sleep(microseconds: 20_000) }
        kill()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// SIGKILL, at once (an interrupted sweep).
    func kill() { signal(SIGKILL, wait: false) }

    /// A port on 127.0.0.1 free a moment ago, for a child to listen on.
    static func freePort() throws -> UInt16 {
        let (fd, port) = try Net.listen(host: "127.0.0.1", port: 0)
        Net.close(fd)
        return port
    }

    deinit { kill() }
}
