@testable import ApusLab
import Foundation
import Testing

@Suite("Sweep plans")
struct SweepPlanTests {
    static let valid = """
    name: quick
    mode: e2e
    repeats: 2
    workload:
      record.size: 200
      partitions: 2
      duration: 1500ms
      warmup: 1s
      rate: 50k
      payload: text:3
      keys: zipf:1000,1.1
    client:
      linger.ms: 2
    broker:
      durability: fsync-on-ack-all
    axes:
      acks: [1, all]
      batch.size: [16384, 1048576]
      io.backend: [posix, uring]
    """

    @Test func parsesEveryPart() throws {
        let plan = try SweepPlan(yaml: Self.valid, path: "quick.yaml")
        #expect(plan.name == "quick")
        #expect(plan.mode == .e2e)
        #expect(plan.repeats == 2)
        #expect(plan.workload.recordSize == 200)
        #expect(plan.workload.partitions == 2)
        #expect(plan.workload.durationSeconds == 1.5)
        #expect(plan.workload.warmupSeconds == 1)
        #expect(plan.workload.rate == 50_000)
        #expect(plan.workload.payload == .text(ratio: 3))
        #expect(plan.workload.keys == .zipf(count: 1000, exponent: 1.1))
        let points = plan.points
        #expect(points.count == 8)
        // The first axis varies slowest; ids are stable and unique.
        #expect(points[0].id == "p0-acks=1,batch.size=16384,io.backend=posix")
        #expect(points[7].id == "p7-acks=all,batch.size=1048576,io.backend=uring")
        #expect(Set(points.map(\.id)).count == 8)
        let last = points[7]
        #expect(last.client.contains { $0.key == "acks" && $0.value == "all" })
        #expect(last.client.contains { $0.key == "linger.ms" && $0.value == "2" })
        #expect(last.broker.contains { $0.key == "io.backend" && $0.value == "uring" })
        #expect(last.broker.contains { $0.key == "durability" && $0.value == "fsync-on-ack-all" })
    }

    @Test func workloadAxesChangeTheWorkload() throws {
        let plan = try SweepPlan(yaml: "name: w\naxes:\n  partitions: [1, 8]\n  record.size: [10, 1000]\n  rate: [max, 1.5M]\n", path: "w.yaml")
        let p = plan.points
        #expect(p.count == 8)
        #expect(p[0].workload.partitions == 1 && p[0].workload.recordSize == 10 && p[0].workload.rate == -1)
        #expect(p[7].workload.partitions == 8 && p[7].workload.recordSize == 1000 && p[7].workload.rate == 1_500_000)
    }

    @Test func aRateCanBeAShareOfTheMaximum() throws {
        let plan = try SweepPlan(yaml: "name: w\naxes:\n  acks: [1, all]\n  rate: [max, 25%, 1M]\n", path: "w.yaml")
        let p = plan.points
        #expect(p.count == 6)
        #expect(p[1].workload.rateOfMax == 0.25 && p[1].workload.rate == 0)
        #expect(SweepPlan.maximumPoint(for: p[1], in: p)?.id == p[0].id)
        #expect(SweepPlan.maximumPoint(for: p[4], in: p)?.id == p[3].id, "the maximum with the same acks")
        #expect(p[2].workload.rateOfMax == nil && p[2].workload.rate == 1_000_000)
    }

    @Test func noAxesIsOnePoint() throws {
        let plan = try SweepPlan(yaml: "name: one\n", path: "one.yaml")
        #expect(plan.points.map(\.id) == ["p0-base"])
        #expect(plan.repeats == 3)
    }

    /// Each bad plan fails before anything runs, naming the file, the line and the key.
    @Test(arguments: [
        ("name: x\naxes:\n  acks: [1, 2]\n", "bad.yaml:3: acks: acks=2"),
        ("name: x\naxes:\n  colour: [red]\n", "bad.yaml:3: axes.colour: unknown axis"),
        ("name: x\naxes:\n  batch.size: [16384, lots]\n", "bad.yaml:3: batch.size: batch.size=lots"),
        ("name: x\naxes:\n  io.backend: [posix, turbo]\n", "bad.yaml:3: io.backend:"),
        ("name: x\naxes:\n  acks: []\n", "bad.yaml:3: axes.acks: an axis needs at least one value"),
        ("name: x\naxes:\n  acks: [1, 1]\n", "bad.yaml:3: axes.acks: value '1' appears twice"),
        ("name: x\naxes:\n  acks: 1\n", "bad.yaml:3: axes.acks: expected a list"),
        ("name: x\nworkload:\n  duration: soon\n", "bad.yaml:3: workload.duration: expected a duration"),
        ("name: x\nworkload:\n  partitions: 0\n", "bad.yaml:3: workload.partitions: expected an integer in 1...10000"),
        ("name: x\nworkload:\n  keys: zipf:10\n", "bad.yaml:3: workload.keys:"),
        ("name: x\nworkload:\n  tempo: 3\n", "bad.yaml:3: workload.tempo: unknown workload key"),
        ("name: x\nbroker:\n  data.dir: /tmp\n", "bad.yaml:3: data.dir: set by the sweep itself"),
        ("name: x\nclient:\n  colour: red\n", "bad.yaml:3: client.colour: unknown client knob"),
        ("name: x\nrepeats: 0\n", "bad.yaml:2: repeats: expected an integer in 1...100"),
        ("name: x\nmode: fast\n", "bad.yaml:2: mode: expected produce or e2e"),
        ("name: x\nknee:\n  slo.ms: -1\n", "bad.yaml:3: knee.slo.ms:"),
        ("name: x\nknee:\n  colour: red\n", "bad.yaml:3: knee.colour: unknown key"),
        ("name: x\nextra: 1\n", "bad.yaml:2: extra: unknown key"),
        ("workload:\n  partitions: 2\n", "bad.yaml: name: a plan needs a name"),
        ("name: a/b\n", "bad.yaml:1: name: use letters"),
        ("name: x\nfoo: [\n", "bad.yaml: plan: not valid YAML"),
        // Impossible combinations.
        ("name: x\ntarget: bootstrap:127.0.0.1:9092\naxes:\n  durability: [page-cache, fsync-always]\n", "bad.yaml:4: axes.durability: broker knobs cannot be swept on an external broker"),
        ("name: x\nknee:\n  slo.ms: 5\naxes:\n  rate: [1k, 2k]\n", "bad.yaml:5: axes.rate: knee search chooses the rate itself"),
        ("name: x\naxes:\n  rate: [50%, max]\n", "bad.yaml: rate: a share of the maximum (point p0-rate=50%) needs a rate: max point"),
        ("name: x\nworkload:\n  rate: 50%\n", "bad.yaml: rate: a share of the maximum"),
        ("name: x\naxes:\n  rate: [max, 150%]\n", "bad.yaml:3: axes.rate: expected max, records/s"),
        ("name: x\nmode: e2e\naxes:\n  record.size: [4, 100]\n", "bad.yaml: record.size: e2e needs records of at least 8 bytes"),
        ("name: x\nknee:\n  slo.ms: 5\naxes:\n  acks: [0, 1]\n", "bad.yaml: acks: acks=0 has no produce latency"),
        // Clusters and faults.
        ("name: x\nfaults:\n  - {at: 2s, kill: broker:1}\n", "bad.yaml:3: faults: faults need target: cluster"),
        ("name: x\ncluster:\n  brokers: 3\ntarget: embedded\n", "bad.yaml:3: cluster: needs target: cluster"),
        ("name: x\ntarget: cluster\ncluster:\n  brokers: 2\n  replication.factor: 3\n", "bad.yaml:4: cluster.replication.factor: 3 replicas need at least 3 brokers"),
        ("name: x\ntarget: cluster\nmode: e2e\n", "bad.yaml: mode: e2e reads from one broker"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 2s, kill: broker:4}\n", "bad.yaml:4: faults: broker:4: the cluster has brokers 1...3"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 2s, kill: leader:4}\n", "bad.yaml:4: faults: leader:4: no such partition"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 9s, pause: etcd}\n", "bad.yaml:4: faults: at 9.0 s is after the run's end"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 2s, crash: etcd}\n", "bad.yaml:4: faults.crash: unknown key"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 2s, kill: etcd, stop: broker:1}\n", "bad.yaml:4: faults.stop: one action per fault"),
        ("name: x\ntarget: cluster\nfaults:\n  - {at: 2s, kill: someone}\n", "bad.yaml:4: faults.kill: expected broker:N, leader:P"),
        ("name: x\ntarget: cluster\nfaults:\n  - {kill: etcd}\n", "bad.yaml:4: faults: a fault needs at"),
        ("name: x\naxes:\n  replication.factor: [1, 3]\n", "bad.yaml:3: axes.replication.factor: needs target: cluster"),
        ("name: x\ntarget: cluster\naxes:\n  replication.factor: [1, 4]\n", "bad.yaml:4: axes.replication.factor: 4 replicas need at least 4 brokers"),
        ("name: x\nbroker:\n  node.id: 2\n", "bad.yaml:3: node.id: set by the sweep itself"),
    ])
    func badPlansNameLineAndKey(yaml: String, expected: String) {
        do {
            _ = try SweepPlan(yaml: yaml, path: "bad.yaml")
            Issue.record("accepted a bad plan: \(yaml)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error.description)")
        }
    }

    @Test func aClusterPlanWithFaults() throws {
        let plan = try SweepPlan(yaml: """
            name: fo
            target: cluster
            cluster:
              brokers: 3
              replication.factor: 2
            workload:
              duration: 20s
            topic:
              min.insync.replicas: 2
            faults:
              - at: 12s
                pause: etcd
              - {at: 3s, kill: leader:1, for: 5s}
            axes:
              replication.factor: [1, 3]
            """, path: "fo.yaml")
        #expect(plan.target == .cluster(brokers: 3, replicationFactor: 2))
        // In time order, whatever the file's order.
        #expect(plan.faults == [FaultSpec(atSeconds: 3, action: .kill, target: .leader(partition: 1), forSeconds: 5),
                                FaultSpec(atSeconds: 12, action: .pause, target: .etcd, forSeconds: nil)])
        #expect(plan.topicConfigs == [.init(key: "min.insync.replicas", value: "2")])
        #expect(plan.points.map(\.workload.replicationFactor) == [1, 3])
        #expect(plan.points.allSatisfy { $0.broker.isEmpty })
    }

    @Test func shippedPlansAreValid() throws {
        for name in ["quick", "full", "failover"] {
            let path = "\(packageRoot())/tools/plans/\(name).yaml"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let plan = try SweepPlan(yaml: text, path: path)
            #expect(plan.name == name)
            #expect(!plan.points.isEmpty)
        }
    }
}

func packageRoot(file: String = #filePath) -> String {
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/ApusLabTests/<file>
    return parts.joined(separator: "/")
}

/// Settling the machine between runs: `sync`, then wait for dirty and writeback data to drain.
@Suite struct SettleTests {
    @Test func settleDrainsDirtyPagesBelowTheThreshold() throws {
        let path = NSTemporaryDirectory() + "apus-settle-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // 96 MiB of dirty page cache, more than the threshold.
        let chunk = Data(repeating: 0x5A, count: 1 << 20)
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        for _ in 0..<96 { handle.write(chunk) }
        try handle.close()
        let before = try #require(PageCache.sample())
        let seconds = PageCache.settle(timeoutSeconds: 60)
        let after = try #require(PageCache.sample())
        #expect(after.dirtyBytes + after.writebackBytes < PageCache.settledBytes,
                "before \(before), after \(after), \(seconds) s")
    }

    @Test func plansChooseHowToSettle() throws {
        let base = "name: s\nworkload:\n  rate: max\n"
        #expect(try SweepPlan(yaml: base, path: "p").settle == .sync)
        #expect(try SweepPlan(yaml: base + "settle: none\n", path: "p").settle == Settle.none)
        #expect(throws: PlanError.self) { try SweepPlan(yaml: base + "settle: sometimes\n", path: "p") }
        #expect(try SweepPlan(yaml: base, path: "p").preloadSeconds == nil)
        #expect(try SweepPlan(yaml: base + "preload: 16s\n", path: "p").preloadSeconds == 16)
        #expect(throws: PlanError.self) { try SweepPlan(yaml: base + "preload: forever\n", path: "p") }
        #expect(throws: PlanError.self) { try SweepPlan(yaml: base + "preload: 0s\n", path: "p") }
    }
}

/// A knee search that does not lie: probes that contradict each other are reported.
@Suite struct KneeReportTests {
    func probe(_ rate: Double, _ ms: Double, confirmation: Bool? = nil) -> KneeProbe {
        KneeProbe(targetRate: rate, recordsPerSecond: rate, latencyMs: ms, p50Ms: 1, p99Ms: ms, p999Ms: ms, withinSLO: ms <= 10,
                  confirmation: confirmation)
    }

    @Test func aLowerRateFailingWhereAHigherPassedIsFlagged() {
        // 418 k/s passed, 237 k/s failed: the machine was not in a steady state.
        let knee = KneeResult(percentile: 99, sloMs: 10, maxRate: 840_000, kneeRate: 418_000,
                              probes: [probe(237_000, 1462), probe(418_000, 3.4), probe(630_000, 249)])
        #expect(knee.contradictions.count == 1)
        #expect(knee.contradictions.first?.failed.targetRate == 237_000 && knee.contradictions.first?.passed.targetRate == 418_000)
        let text = SweepReport.kneeWarnings([("p3", knee)])
        #expect(text.contains("⚠ p3: not in a steady state"))
        #expect(text.contains("237k records/s") && text.contains("418k records/s"), "\(text)")
    }

    @Test func aFailedConfirmationIsFlaggedAndAMonotonicSearchIsNot() {
        let clean = KneeResult(percentile: 99, sloMs: 10, maxRate: 1e6, kneeRate: 500_000,
                               probes: [probe(500_000, 4), probe(500_000, 5, confirmation: true), probe(750_000, 40)])
        #expect(clean.contradictions.isEmpty)
        #expect(SweepReport.kneeWarnings([("p0", clean)]).isEmpty)
        let shaky = KneeResult(percentile: 99, sloMs: 10, maxRate: 1e6, kneeRate: nil,
                               probes: [probe(500_000, 4), probe(500_000, 30, confirmation: true), probe(750_000, 40)])
        #expect(shaky.contradictions.count == 1)
        #expect(SweepReport.kneeWarnings([("p0", shaky)]).contains("(the confirmation)"))
    }
}

/// Reading the broker's metrics: the exposition parsed, histogram quantiles as Prometheus
/// computes them, and the difference between two scrapes.
@Suite struct BrokerViewTests {
    static let before = """
    # TYPE apus_request_duration_seconds histogram
    apus_request_duration_seconds_bucket{request="Produce",le="0.001"} 10
    apus_request_duration_seconds_bucket{request="Produce",le="0.01"} 10
    apus_request_duration_seconds_bucket{request="Produce",le="+Inf"} 10
    apus_request_duration_seconds_sum{request="Produce"} 0.005
    apus_request_duration_seconds_count{request="Produce"} 10
    apus_shard_busy_seconds_total{shard="0"} 1
    apus_shard_busy_seconds_total{shard="1"} 2
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.001"} 100
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.005"} 100
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.01"} 100
    apus_shard_turn_duration_seconds_bucket{shard="0",le="+Inf"} 100
    """
    static let after = """
    apus_request_duration_seconds_bucket{request="Produce",le="0.001"} 60
    apus_request_duration_seconds_bucket{request="Produce",le="0.01"} 110
    apus_request_duration_seconds_bucket{request="Produce",le="+Inf"} 110
    apus_request_duration_seconds_sum{request="Produce"} 0.305
    apus_request_duration_seconds_count{request="Produce"} 110
    apus_request_duration_seconds_bucket{request="Fetch",le="+Inf"} 7
    apus_shard_busy_seconds_total{shard="0"} 2
    apus_shard_busy_seconds_total{shard="1"} 2.5
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.001"} 880
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.005"} 995
    apus_shard_turn_duration_seconds_bucket{shard="0",le="0.01"} 999
    apus_shard_turn_duration_seconds_bucket{shard="0",le="+Inf"} 1100
    apus_shard_turn_duration_seconds_bucket{shard="1",le="0.001"} 100
    apus_shard_turn_duration_seconds_bucket{shard="1",le="0.005"} 100
    apus_shard_turn_duration_seconds_bucket{shard="1",le="0.01"} 100
    apus_shard_turn_duration_seconds_bucket{shard="1",le="+Inf"} 100
    apus_shard_job_delay_seconds_bucket{shard="0",le="0.001"} 40
    apus_shard_job_delay_seconds_bucket{shard="0",le="0.005"} 48
    apus_shard_job_delay_seconds_bucket{shard="0",le="+Inf"} 50
    """

    @Test func twoScrapesGiveTheRunsFigures() throws {
        let a = MetricsScrape.parse(Self.before)
        let b = MetricsScrape.parse(Self.after)
        #expect(a["apus_shard_busy_seconds_total{shard=\"1\"}"] == 2)
        let view = MetricsScrape.view(from: a, to: b, seconds: 2)
        #expect(view.produceRequests == 100)
        #expect(abs((view.produceMeanMs ?? 0) - 3.0) < 1e-9, "0.3 s over 100 requests")
        // 50 under 1 ms, 50 between 1 and 10 ms: the 99th is 98% of the way into the second bucket.
        #expect(abs((view.produceP99Ms ?? 0) - (1 + 9 * 0.98)) < 1e-9)
        #expect(view.shardBusy == [0.5, 0.25])
        #expect(view.writes == 0 && view.writeP99Ms == nil)
        // 1100 turns in the run (shard 0's 1000, shard 1's 100): 105 over 5 ms, 101 over 10 ms.
        #expect(view.turnsOver5Ms == 105)
        #expect(view.turnP99Ms == 10, "the 99th of 1100 is the 1089th turn: past the 10 ms bound, clamped to it")
        // Jobs between shards: 50, 2 of them waited over 5 ms; the 99th is past the last bound.
        #expect(view.jobDelaysOver5Ms == 2 && view.jobDelayP99Ms == 5)
        // No turn between two scrapes: none over 5 ms, no p99.
        let idle = MetricsScrape.view(from: a, to: a, seconds: 1)
        #expect(idle.turnP99Ms == nil && idle.turnsOver5Ms == 0)
        // Scrapes without the histogram (an older build) leave both unknown.
        let none = MetricsScrape.view(from: [:], to: [:], seconds: 1)
        #expect(none.turnP99Ms == nil && none.turnsOver5Ms == nil)
    }
}
