import ApusIO
import ApusTestSupport
@testable import ApusServer
import Foundation
import Testing

/// The stall detector: turns longer than `loop.stall.warn.ms` are counted, attributed to the
/// phase that took longest, logged at most once per second, and reported to the lab.
@Suite struct StallTests {
    @Test func aSlowPhaseIsAStallAttributedToIt() {
        var clock = TurnClock(shard: 1, warnMs: 10)
        let ms: UInt64 = 1_000_000
        let t0: UInt64 = 5_000 * ms
        // A quick turn: not a stall.
        clock.begin(t0)
        clock.mark(.jobs, t0 + ms / 10)
        clock.mark(.read, t0 + 2 * ms)
        clock.mark(.commit, t0 + 3 * ms)
        #expect(clock.end(t0 + 4 * ms) == nil)
        // An injected slow commit (a sync on the shard): 25 ms of a 27 ms turn.
        let t1 = t0 + 10 * ms
        clock.begin(t1)
        clock.mark(.read, t1 + 1 * ms)
        clock.mark(.commit, t1 + 26 * ms)
        clock.mark(.send, t1 + 27 * ms)
        let first = clock.end(t1 + 27 * ms)
        #expect(first?.stall.ms == 27 && first?.stall.phase == "commit+completions" && first?.stall.shard == 1)
        #expect(first?.log == true, "the first stall is logged")
        // Another within the same second: counted, not logged; the next logged line says so.
        let t2 = t1 + 100 * ms
        clock.begin(t2)
        clock.mark(.maintenance, t2 + 40 * ms)
        let second = clock.end(t2 + 40 * ms)
        #expect(second?.stall.phase == "maintenance" && second?.log == false)
        let t3 = t2 + 2_000 * ms
        clock.begin(t3)
        clock.mark(.send, t3 + 12 * ms)
        let third = clock.end(t3 + 12 * ms)
        #expect(third?.log == true && third?.unlogged == 1)
        #expect(clock.turns == 4)

        let report = StallReport(shards: 2, warnMs: 10)
        for found in [first, second, third].compactMap({ $0 }) { report.record(found.stall) }
        let snapshot = report.snapshot
        #expect(snapshot.shards[1].stalls == 3 && snapshot.shards[1].longestMs == 40 && snapshot.shards[1].longestPhase == "maintenance")
        #expect(snapshot.shards[0].stalls == 0)
        #expect(snapshot.recent.map(\.ms) == [27, 40, 12])
    }

    /// A real `apus serve` writes its stall statistics file every second and at shutdown,
    /// and logs the per-shard summary and no breach of the shard-thread contract.
    @Test func serveWritesStallStatisticsAndASummary() throws {
        let stats = NSTemporaryDirectory() + "apus-stalls-\(UUID().uuidString.prefix(8)).json"
        defer { try? FileManager.default.removeItem(atPath: stats) }
        let server = try ApusServerProcess(arguments: ["--set", "loop.stall.stats.file=\(stats)", "--set", "loop.stall.warn.ms=1",
                                                       "--set", "segment.bytes=65536", "--set", "retention.bytes=262144"])
        defer { server.removeData() }
        let kcat = try #require(which("kcat"))
        let lines = (0..<2000).map { "k\($0):" + String(repeating: "v", count: 500) }.joined(separator: "\n") + "\n"
        let produced = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "stalls", "-K:", "-X", "acks=all"], input: lines)
        #expect(produced.status == 0, "\(produced.err)")
        Sys.sleep(microseconds: 1_500_000)
        #expect(server.stop() == 0)
        let data = try #require(FileManager.default.contents(atPath: stats))
        let snapshot = try JSONDecoder().decode(StallReport.Snapshot.self, from: data)
        #expect(snapshot.warnMs == 1)
        #expect(!snapshot.shards.isEmpty && snapshot.shards.allSatisfy { $0.turns > 0 })
        #expect(snapshot.diskWaitsOnShards == 0, "\(server.log)")
        #expect(server.log.contains("shard turns"))
        #expect(!server.log.contains("may wait on the disk"), "\(server.log)")
    }
}
