import ApusClient
import ApusIO
import Foundation

/// A fresh `apus serve` child process for one sweep point: its own data directory, its own
/// port on 127.0.0.1, the point's broker knobs, stderr kept in the bundle.
final class EmbeddedBroker: @unchecked Sendable {
    let process = Process()
    let port: UInt16
    let dataDir: String
    var bootstrap: String { "127.0.0.1:\(port)" }

    init(binary: String, dataDir: String, settings: [SweepPoint.Setting], partitions: Int, logPath: String) throws {
        self.dataDir = dataDir
        try? FileManager.default.removeItem(atPath: dataDir)
        try Sys.makeDirectories(dataDir)
        let (fd, port) = try Net.listen(host: "127.0.0.1", port: 0)
        Net.close(fd)
        self.port = port
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:\(port)", "--num-partitions", String(partitions)]
            + settings.flatMap { ["--set", "\($0.key)=\($0.value)"] }
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Sys.monotonicNs() + 30_000_000_000
        while true {
            if !process.isRunning {
                throw ClientError("apus serve exited at start-up (status \(process.terminationStatus)); see \(logPath)")
            }
            if (try? KafkaConnection(bootstrap: bootstrap)) != nil { return }
            if Sys.monotonicNs() > deadline {
                process.terminate()
                throw ClientError("apus serve did not accept connections within 30 s; see \(logPath)")
            }
            Sys.sleep(microseconds: 50_000)
        }
    }

    /// SIGTERM, then SIGKILL after `graceSeconds`; returns the exit status (0 for a clean stop).
    @discardableResult
    func stop(graceSeconds: Double = 20) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        let deadline = Sys.monotonicNs() + UInt64(graceSeconds * 1e9)
        while process.isRunning && Sys.monotonicNs() < deadline { Sys.sleep(microseconds: 20_000) }
        kill()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL, at once (an interrupted sweep).
    func kill() {
        if process.isRunning { Sys.signal(process.processIdentifier, SIGKILL) }
    }

    deinit { kill() }
}
