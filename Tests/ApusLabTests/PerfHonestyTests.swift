import ApusClient
import ApusLab
import ApusTestSupport
import Foundation
import Testing

/// `apus perf` must be honest: a stalled broker shows as latency, and what it reports as
/// acknowledged is what the broker holds and what another client reads back.
@Suite("apus perf honesty", .serialized)
struct PerfHonestyTests {
    static func document(_ path: String) throws -> PerfDocument {
        try JSONDecoder().decode(PerfDocument.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// 10 s open loop at a rate far below the maximum; the broker is stopped (SIGSTOP) for 200 ms
    /// in the middle. Latency from the intended send time must show the stall at p99.9, and in
    /// the half-second intervals (`--reporting-interval 500`) one spike where it happened.
    @Test func aStalledBrokerShowsInTheCorrectedHistogram() throws {
        let server = try ApusServerProcess(arguments: ["--num-partitions", "2"])
        defer { server.stop(); server.removeData() }
        let apus = try ApusServerProcess.binary("apus")
        let dir = server.dataDir + "-perf"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let perf = Process()
        perf.executableURL = URL(fileURLWithPath: apus)
        perf.arguments = ["perf", "produce", "--bootstrap", server.bootstrap, "--topic", "stall", "--duration", "10", "--throughput", "20000",
                          "--producer-props", "acks=1", "linger.ms=1", "--json", "\(dir)/run.json", "--hlog", "\(dir)/run.hlog",
                          "--reporting-interval", "500"]
        perf.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try perf.run()
        Thread.sleep(forTimeInterval: 5)
        kill(server.process.processIdentifier, SIGSTOP)
        Thread.sleep(forTimeInterval: 0.2)
        kill(server.process.processIdentifier, SIGCONT)
        perf.waitUntilExit()
        #expect(perf.terminationStatus == 0)

        let result = try Self.document("\(dir)/run.json").run
        let corrected = try #require(result.latency["produce.intended"])
        let raw = try #require(result.latency["produce.send"])
        #expect(result.produced.errors == 0)
        #expect(result.produced.records > 150_000)  // the schedule held: ~200 000 records in 10 s
        #expect(corrected.p999 >= 150, "corrected p99.9 \(corrected.p999) ms, raw p99.9 \(raw.p999) ms")
        #expect(corrected.max >= 180)
        // The .hlog intervals add up to the run and carry the stall.
        let text = try String(contentsOfFile: "\(dir)/run.hlog", encoding: .utf8)
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix("\"") }
        var merged = try HistogramCodec.decodeBase64(String(lines[0].split(separator: ",").last!))
        for line in lines.dropFirst() { merged.add(try HistogramCodec.decodeBase64(String(line.split(separator: ",").last!))) }
        #expect(merged.totalCount == corrected.count)
        #expect(lines.count >= 12 && lines.count <= 22, "\(lines.count) intervals of (at least) 0.5 s in 10 s")
        // The JSON's intervals are the same ones: they add up to the run, and the stall is a
        // spike in the one or two around 5 s, not in the others.
        let overTime = try #require(result.overTime)
        #expect(overTime.count == lines.count)
        #expect(overTime.reduce(0) { $0 + $1.count } == corrected.count)
        let spikes = overTime.filter { $0.maxMs >= 150 }
        #expect(!spikes.isEmpty && spikes.count <= 2 && spikes.allSatisfy { $0.startSeconds > 3 && $0.startSeconds < 7.5 }, "\(overTime.map(\.maxMs))")
        // The same bucket: a percentile in the top bucket is clamped to the exact maximum in the
        // recorded histogram, and to that bucket's highest value in the decoded intervals.
        let p999 = UInt64((corrected.p999 * 1e6).rounded())
        #expect(merged.valuesAreEquivalent(merged.valueAtPercentile(99.9), p999), "\(merged.valueAtPercentile(99.9)) ns vs \(p999) ns")

        // Python's HdrHistogram reads the same log to the same count and p99.9.
        let script = """
        import sys
        from hdrh.log import HistogramLogReader
        from hdrh.histogram import HdrHistogram
        total = HdrHistogram(1, 60000000000, 3)
        reader = HistogramLogReader(sys.argv[1], total)
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            total.add(h)
        print(total.get_total_count(), total.get_value_at_percentile(99.9))
        """
        // The python3 first on PATH: the one tools/setup installed hdrhistogram into.
        let py = try run("/usr/bin/env", ["python3", "-c", script, "\(dir)/run.hlog"])
        #expect(py.status == 0, "python3 with hdrh (pip install hdrhistogram): \(py.err)")
        let fields = py.out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(fields.first.flatMap { UInt64($0) } == corrected.count)
        if let value = fields.last.flatMap({ UInt64($0) }) {
            // hdrh rounds the count at a percentile to the nearest record, HdrHistogram-Swift up:
            // in a sparse tail (the stall) one record can be a different bucket.
            let oneRecord = 100.0 / Double(max(merged.totalCount, 1))
            let candidates = [99.9 - oneRecord, 99.9, 99.9 + oneRecord].map { merged.valueAtPercentile($0) }
            #expect(candidates.contains { merged.valuesAreEquivalent(value, $0) }, "python p99.9 \(value) ns, Swift \(candidates) ns")
        } else {
            Issue.record("python printed \(py.out)")
        }
    }

    /// A generator that stops (SIGSTOP here, as a preempted thread would) falls behind its
    /// open-loop schedule and says how far: latency it adds is not the broker's.
    @Test func aStalledGeneratorSaysHowFarBehindItFell() throws {
        let server = try ApusServerProcess(arguments: ["--num-partitions", "2"])
        defer { server.stop(); server.removeData() }
        let apus = try ApusServerProcess.binary("apus")
        let out = server.dataDir + "-lag.txt"
        #expect(FileManager.default.createFile(atPath: out, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: out) }
        let perf = Process()
        perf.executableURL = URL(fileURLWithPath: apus)
        perf.arguments = ["perf", "produce", "--bootstrap", server.bootstrap, "--topic", "late", "--duration", "4", "--throughput", "20000",
                          "--producer-props", "acks=1", "linger.ms=1"]
        perf.standardOutput = FileHandle(forWritingAtPath: out)
        try perf.run()
        Thread.sleep(forTimeInterval: 2)
        kill(perf.processIdentifier, SIGSTOP)
        Thread.sleep(forTimeInterval: 0.3)
        kill(perf.processIdentifier, SIGCONT)
        perf.waitUntilExit()
        #expect(perf.terminationStatus == 0)
        let text = try String(contentsOfFile: out, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("The load generator fell at most") }, "\(text)")
        let words = line.split(separator: " ")
        #expect(words.count > 6 && (Double(words[6]) ?? 0) >= 250, "\(line)")
    }

    /// Records apus perf reports as acknowledged = the broker's offsets = what kcat reads back.
    @Test func acknowledgedRecordsMatchTheBrokerAndKcat() throws {
        let kcat = try #require(which("kcat"), "kcat is installed by tools/setup")
        let server = try ApusServerProcess(arguments: ["--num-partitions", "3"])
        defer { server.stop(); server.removeData() }
        let apus = try ApusServerProcess.binary("apus")
        let json = server.dataDir + "-count.json"
        defer { try? FileManager.default.removeItem(atPath: json) }
        let perf = try run(apus, ["perf", "produce", "--bootstrap", server.bootstrap, "--topic", "count", "--num-records", "123457",
                                  "--record-size", "50", "--keys", "uniform:1000", "--producer-props", "acks=all", "batch.size=16384",
                                  "--json", json], timeout: 120)
        #expect(perf.status == 0, "\(perf.out)\n\(perf.err)")
        let acknowledged = try Self.document(json).run.produced.records
        #expect(acknowledged == 123_457)

        let offsets = try KafkaConnection(bootstrap: server.bootstrap).endOffsets(of: "count", partitions: 3)
        #expect(UInt64(offsets.reduce(0, +)) == acknowledged)
        // Keys spread over every partition (murmur2 with 1000 keys).
        #expect(offsets.allSatisfy { $0 > 10_000 })

        let read = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "count", "-e", "-q", "-f", "%k\n"], timeout: 120)
        #expect(read.status == 0, "\(read.err)")
        let keys = read.out.split(separator: "\n")
        #expect(UInt64(keys.count) == acknowledged)
        #expect(Set(keys).count == 1000)
        #expect(keys.allSatisfy { $0.hasPrefix("key-") })
    }
}

/// Steal per CPU: what the lab puts beside each interval's latency.
@Suite struct StealTests {
    @Test func theLongestStealIsTheMostAnyOneCPULost() throws {
        #expect(HostCPU.longestSteal(from: [100, 200], to: [130, 210]) == 30)
        #expect(HostCPU.longestSteal(from: [100], to: [130, 210]) == nil)  // a CPU came or went
        #expect(HostCPU.longestSteal(from: nil, to: [1]) == nil)
        // This machine's /proc/stat has a line per CPU, steal never decreasing.
        let a = try #require(HostCPU.stealPerCPU())
        let b = try #require(HostCPU.stealPerCPU())
        #expect(!a.isEmpty && a.count == b.count)
        #expect(try #require(HostCPU.longestSteal(from: a, to: b)) >= 0)
    }
}

/// The machine fingerprint names a host that takes back the guest's free memory.
@Suite struct FreePageReportingTests {
    @Test func aBalloonWithTheReportingFeatureIsFound() throws {
        let root = NSTemporaryDirectory() + "apus-virtio-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        func device(_ name: String, type: String, features: String) throws {
            try FileManager.default.createDirectory(atPath: "\(root)/\(name)", withIntermediateDirectories: true)
            try "\(type)\n".write(toFile: "\(root)/\(name)/device", atomically: true, encoding: .utf8)
            try "\(features)\n".write(toFile: "\(root)/\(name)/features", atomically: true, encoding: .utf8)
        }
        #expect(!MachineFingerprint.reportsFreePages(virtioDevices: root), "no devices")
        try device("virtio1", type: "0x0002", features: "00100110")  // a block device with bit 5 set
        try device("virtio0", type: "0x0005", features: "01100001")  // a balloon without reporting
        #expect(!MachineFingerprint.reportsFreePages(virtioDevices: root))
        try device("virtio0", type: "0x0005", features: "01100101")
        #expect(MachineFingerprint.reportsFreePages(virtioDevices: root))
    }
}
