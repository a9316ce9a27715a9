import ApusIO
import ApusTestSupport
@testable import ApusServer
import Foundation
import Synchronization
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
        #expect(snapshot.shards[1].byCause.values.reduce(0, +) == 3)
        #expect(snapshot.shards[0].stalls == 0)
        #expect(snapshot.recent.map(\.ms) == [27, 40, 12])
    }

    /// A stall's cause comes from the thread's CPU time and switches in the turn.
    @Test func aStallSaysWhetherTheShardRanSleptOrWaitedForTheCPU() {
        let ms: UInt64 = 1_000_000
        func stall(cpuMs: UInt64, sleeps: Int, preemptions: Int) -> Stall? {
            var clock = TurnClock(shard: 0, warnMs: 10)
            let start = ThreadUsage(cpuNs: 7 * ms, voluntarySwitches: 100, involuntarySwitches: 50)
            clock.begin(1_000 * ms, usage: start)
            clock.mark(.commit, 1_030 * ms)
            return clock.end(1_030 * ms, usage: ThreadUsage(cpuNs: start.cpuNs + cpuMs * ms, voluntarySwitches: 100 + sleeps,
                                                            involuntarySwitches: 50 + preemptions))?.stall
        }
        let ran = stall(cpuMs: 28, sleeps: 0, preemptions: 1)
        #expect(ran?.cause == .onCPU && ran?.onCPUMs == 28 && ran?.preemptions == 1)
        let slept = stall(cpuMs: 3, sleeps: 1, preemptions: 2)
        #expect(slept?.cause == .blocked && slept?.sleeps == 1)
        let waited = stall(cpuMs: 3, sleeps: 0, preemptions: 4)
        #expect(waited?.cause == .preempted && waited?.preemptions == 4)
        let stolen = stall(cpuMs: 3, sleeps: 0, preemptions: 0)
        #expect(stolen?.cause == .stolen)
        // Quick turns do not read the usage at their end at all.
        var clock = TurnClock(shard: 0, warnMs: 10)
        clock.begin(0, usage: ThreadUsage())
        #expect(clock.end(ms, usage: { Issue.record("read the usage of a quick turn"); return ThreadUsage() }()) == nil)
    }

    /// The same on real threads: a sleep in the turn, a spin, and a spin on a CPU shared with
    /// two other spinning threads (this test's threads pinned to one CPU).
    @Test func realTurnsAreAttributedFromTheThreadsOwnCounters() throws {
        let cpu = Placement.allowedCPUs()[0]
        let results = Mutex<[Stall?]>([])
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? Placement.pinCurrentThread(to: cpu)
            var found = [Self.turn { Sys.sleep(microseconds: 40_000) }, Self.turn { Self.spin(ms: 40) }]
            let stop = Atomic<Bool>(false)
            let rivals = DispatchGroup()
            for _ in 0..<2 {
                rivals.enter()
                Thread.detachNewThread {
                    try? Placement.pinCurrentThread(to: cpu)
                    while !stop.load(ordering: .relaxed) {}
                    rivals.leave()
                }
            }
            Sys.sleep(microseconds: 20_000)  // the rivals are running
            found.append(Self.turn { Self.spin(ms: 60) })
            stop.store(true, ordering: .relaxed)
            rivals.wait()
            results.withLock { $0 = found }
            done.signal()
        }
        done.wait()
        let found = results.withLock { $0 }
        #expect(found[0]?.cause == .blocked, "\(String(describing: found[0]))")
        // Alone it ran, unless the machine took the CPU meanwhile (other tests run in parallel):
        // then the counters must show it.
        #expect(found[1]?.cause == .onCPU || (found[1]?.cause == .preempted && found[1]!.preemptions > 0), "\(String(describing: found[1]))")
        #expect(found[2]?.cause == .preempted && found[2]!.preemptions > 0, "\(String(describing: found[2]))")
    }

    private static func turn(_ body: () -> Void) -> Stall? {
        var clock = TurnClock(shard: 0, warnMs: 10)
        clock.begin()
        body()
        clock.mark(.read)
        return clock.end()?.stall
    }

    private static func spin(ms: UInt64) {
        let until = Sys.monotonicNs() + ms * 1_000_000
        while Sys.monotonicNs() < until {}
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
        // Declared exceptions (64 KiB segments may roll before their spare is made) are in the
        // file and logged at shutdown exactly when some were taken.
        #expect(snapshot.declaredDiskWaits.isEmpty != server.log.contains("declared disk-wait exceptions"), "\(snapshot.declaredDiskWaits)")
        #expect(server.log.contains("shard turns"))
        #expect(!server.log.contains("may wait on the disk"), "\(server.log)")
    }
}
