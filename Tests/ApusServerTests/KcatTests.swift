import ApusIO
import ApusTestSupport
import Foundation
import Testing

/// kcat (Debian's, librdkafka 2.0.2) against a real `apus serve` on 127.0.0.1.
@Suite(.serialized) struct KcatTests {
    let kcat: String

    init() throws {
        kcat = try #require(which("kcat"), "kcat is installed by tools/setup")
    }

    @Test(arguments: ["posix", "uring"]) func produceAndConsumeWithEveryCodecKeepsKeysHeadersAndOffsets(backend: String) throws {
        let server = try ApusServerProcess(arguments: ["--io-backend", backend])
        defer { server.removeData() }
        var expected: [String] = []
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let lines = (0..<5).map { "key-\(codec)-\($0):value \(codec) \($0) \(String(repeating: "x", count: $0 * 50))" }
            let result = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "codecs", "-K:", "-z", codec, "-H", "codec=\(codec)", "-H", "n=1"],
                                 input: lines.joined(separator: "\n") + "\n")
            #expect(result.status == 0, "kcat produce \(codec): \(result.err)")
            expected += lines.map { line in
                let kv = line.split(separator: ":", maxSplits: 1)
                return "\(kv[0])|\(kv[1])|codec=\(codec),n=1"
            }
        }
        let consumed = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "codecs", "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\\n"])
        #expect(consumed.status == 0, "kcat consume: \(consumed.err)")
        let rows = consumed.out.split(separator: "\n").map(String.init)
        #expect(rows.count == 25)
        #expect(rows.map { Int($0.split(separator: "|")[0])! } == Array(0..<25), "offsets are contiguous")
        #expect(rows.map { $0.split(separator: "|", maxSplits: 1)[1] }.map(String.init) == expected)
        #expect(server.stop() == 0, "SIGTERM stops cleanly:\n\(server.log)")
        #expect(FileManager.default.fileExists(atPath: server.dataDir + "/.apus-clean-shutdown"))
    }

    @Test func dataSurvivesGracefulAndKilledRestarts() throws {
        let first = try ApusServerProcess()
        defer { first.removeData() }
        let produce = { (server: ApusServerProcess, from: Int) throws in
            let lines = (from..<(from + 10)).map { "k\($0):v\($0)" }.joined(separator: "\n") + "\n"
            let r = try run(self.kcat, ["-P", "-b", server.bootstrap, "-t", "restart", "-K:", "-X", "acks=all"], input: lines)
            #expect(r.status == 0, "\(r.err)")
        }
        try produce(first, 0)
        #expect(first.stop(signal: SIGTERM) == 0)
        let second = try ApusServerProcess(dataDir: first.dataDir, port: first.port, arguments: ["--durability", "fsync-on-ack-all"])
        try produce(second, 10)
        second.stop(signal: SIGKILL)
        let third = try ApusServerProcess(dataDir: first.dataDir, port: first.port)
        let consumed = try run(kcat, ["-C", "-b", third.bootstrap, "-t", "restart", "-o", "beginning", "-e", "-f", "%o %k %s\\n"])
        let rows = consumed.out.split(separator: "\n").map(String.init)
        #expect(rows == (0..<20).map { "\($0) k\($0) v\($0)" }, "acknowledged records survive SIGTERM and SIGKILL restarts:\n\(third.log)\n\(consumed.err)")
        #expect(third.log.contains("no clean-shutdown marker"), "the SIGKILLed run left no marker, so logs were recovered")
        third.stop()
    }

    /// Two live brokers never share a data directory: the second exits with an error naming
    /// the holder. A restart right after a SIGKILL (writes of the dead process possibly still
    /// in flight on its io_uring rings) waits for them and serves every acknowledged record.
    @Test func oneBrokerPerDataDirectory() throws {
        let first = try ApusServerProcess(arguments: ["--set", "io.backend=uring", "--durability", "fsync-on-ack-all"])
        defer { first.removeData() }
        let apus = try ApusServerProcess.binary("apus")
        let second = try run(apus, ["serve", "--data-dir", first.dataDir, "--listen", "127.0.0.1:\(ApusServerProcess.freePort())"], timeout: 20)
        #expect(second.status != 0)
        #expect(second.err.contains("data directory \(first.dataDir) is in use by another process (pid \(first.process.processIdentifier))"),
                "\(second.err)")
        let lines = (0..<200).map { "k\($0):\(String(repeating: "v", count: 2000))" }.joined(separator: "\n") + "\n"
        let produced = try run(kcat, ["-P", "-b", first.bootstrap, "-t", "locked", "-K:", "-X", "acks=all"], input: lines)
        #expect(produced.status == 0, "\(produced.err)")
        first.stop(signal: SIGKILL)
        let restarted = try ApusServerProcess(dataDir: first.dataDir, port: first.port)
        let consumed = try run(kcat, ["-C", "-b", restarted.bootstrap, "-t", "locked", "-o", "beginning", "-e", "-f", "%o\\n"])
        #expect(consumed.out.split(separator: "\n").count == 200, "\(consumed.err)\n\(restarted.log)")
        restarted.stop()
    }

    @Test func listOffsetsAndMetadataSeeTheLog() throws {
        let server = try ApusServerProcess(arguments: ["--num-partitions", "3"])
        defer { server.removeData() }
        let r = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "meta", "-p", "2"], input: "a\nb\nc\n")
        #expect(r.status == 0, "\(r.err)")
        let metadata = try run(kcat, ["-L", "-b", server.bootstrap, "-t", "meta"])
        #expect(metadata.out.contains("3 partitions"), "\(metadata.out)")
        // -o -1: the last message, found through ListOffsets.
        let last = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "meta", "-p", "2", "-o", "-1", "-e", "-f", "%o %s\\n"])
        #expect(last.out == "2 c\n", "\(last.out) \(last.err)")
        server.stop()
    }

    /// By default one shard per allowed CPU; with `cpus=1` one. Either way kcat's producer and
    /// consumer connections (dealt to the shards in turn) read every partition back in order.
    @Test(arguments: ["all", "1"]) func shardsServeEveryPartitionWhicheverConnectionAsks(cpus: String) throws {
        let server = try ApusServerProcess(arguments: ["--num-partitions", "4", "--set", "cpus=\(cpus)"])
        defer { server.removeData() }
        let shards = cpus == "all" ? Placement.allowedCPUs().count : 1
        #expect(server.log.contains("shards=\(shards) "), "\(server.log)")
        for p in 0..<4 {
            let lines = (0..<50).map { "p\(p)-\($0)" }.joined(separator: "\n") + "\n"
            let r = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "spread", "-p", "\(p)", "-X", "acks=all"], input: lines)
            #expect(r.status == 0, "\(r.err)")
        }
        for p in 0..<4 {
            let consumed = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "spread", "-p", "\(p)", "-o", "beginning", "-e", "-f", "%o %s\\n"])
            #expect(consumed.out == (0..<50).map { "\($0) p\(p)-\($0)\n" }.joined(), "partition \(p): \(consumed.err)")
        }
        #expect(server.stop() == 0, "\(server.log)")
    }
}
