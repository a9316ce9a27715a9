import ApusClient
import ApusTestSupport
import Foundation
import Testing

/// Running out of descriptors is a clean error with nothing left behind, and the broker starts
/// again on the same data directory.
@Suite struct ExhaustionTests {
    /// `apus serve` under a hard open-files limit of 512 (soft and hard: it cannot raise it).
    static func serve(dataDir: String, port: Int) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "ulimit -n 512 && exec \"$0\" serve --data-dir \"$1\" --listen 127.0.0.1:\"$2\" --set metrics.listen=off 2>\"$1.log\"",
                             try ApusServerProcess.binary("apus"), dataDir, String(port)]
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if (try? KafkaConnection(bootstrap: "127.0.0.1:\(port)")) != nil { return process }
            if !process.isRunning { break }
            usleep(50_000)
        }
        let log = (try? String(contentsOfFile: dataDir + ".log", encoding: .utf8)) ?? ""
        throw HarnessError("apus serve did not start: \(log)")
    }

    static func descriptors(of pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// The broker grows its descriptor table before any shard runs (to its open-files limit, at
    /// most 131,072), so that a shard's accept or dup never waits for the kernel to grow a
    /// table the threads share (`synchronize_rcu`).
    @Test func theDescriptorTableIsGrownAtStart() throws {
        let server = try ApusServerProcess(arguments: [])
        defer { server.stop(); server.removeData() }
        let pid = server.process.processIdentifier
        func field(_ file: String, _ prefix: String) throws -> Int {
            let text = try String(contentsOfFile: "/proc/\(pid)/\(file)", encoding: .utf8)
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(prefix) }, "\(prefix) in /proc/\(pid)/\(file)")
            return try #require(line.dropFirst(prefix.count).split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }, "\(line)")
        }
        let limit = try field("limits", "Max open files")
        let slots = try field("status", "FDSize:")
        #expect(slots >= min(limit, 131_072), "FDSize \(slots), open-files limit \(limit)")
        #expect(Self.descriptors(of: pid) < 200, "reserved slots, not open descriptors")
    }

    @Test func aCreationThatRunsOutOfDescriptorsLeavesNothingBehind() throws {
        let dataDir = NSTemporaryDirectory() + "apus-exhaust-\(UUID().uuidString.prefix(8))"
        defer {
            try? FileManager.default.removeItem(atPath: dataDir)
            try? FileManager.default.removeItem(atPath: dataDir + ".log")
        }
        let port = ApusServerProcess.freePort()
        var server = try Self.serve(dataDir: dataDir, port: port)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let connection = try KafkaConnection(bootstrap: "127.0.0.1:\(port)")
        try connection.createTopic("small", partitions: 4)
        let baseline = Self.descriptors(of: server.processIdentifier)

        // 400 partitions need 1,200 descriptors: far over the limit.
        var failure: ClientError?
        do { try connection.createTopic("huge", partitions: 400) } catch { failure = error }
        #expect(failure?.kafkaErrorCode == 56, "KAFKA_STORAGE_ERROR, got \(String(describing: failure))")
        let left = try FileManager.default.contentsOfDirectory(atPath: dataDir).filter { $0.hasPrefix("huge-") }
        #expect(left.isEmpty, "partition directories left behind: \(left.count)")
        #expect(Self.descriptors(of: server.processIdentifier) <= baseline + 4, "descriptors left open")
        // The broker still serves, and creates what fits.
        try connection.createTopic("after", partitions: 8)

        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
        server = try Self.serve(dataDir: dataDir, port: port)
        let again = try KafkaConnection(bootstrap: "127.0.0.1:\(port)")
        #expect(try again.endOffsets(of: "after", partitions: 8) == Array(repeating: 0, count: 8))
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }

    /// A data directory with more partitions than the limit allows: start-up fails with an
    /// error that names the limit and what to raise, not a bare errno.
    @Test func startUpOverTheLimitSaysWhatToRaise() throws {
        let first = try ApusServerProcess()
        defer { first.removeData() }
        try KafkaConnection(bootstrap: first.bootstrap).createTopic("many", partitions: 200)
        #expect(first.stop() == 0)
        let result = try run("/bin/bash", ["-c", "ulimit -n 512 && exec \"$0\" serve --data-dir \"$1\" --listen 127.0.0.1:0 --set metrics.listen=off",
                                           try ApusServerProcess.binary("apus"), first.dataDir], timeout: 30)
        #expect(result.status != 0)
        #expect(result.err.contains("the open-files limit is 512; raise it"), "\(result.err)")
    }
}
