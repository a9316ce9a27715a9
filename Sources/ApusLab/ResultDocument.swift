import ApusClient
import ApusIO
import Foundation
import Histogram

/// Percentiles of one latency histogram in milliseconds, and the histogram itself (nanoseconds,
/// HdrHistogram's compressed V2 encoding in base64, as Java's and Python's HdrHistogram read it).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var mean: Double
    public var max: Double
    public var p50: Double
    public var p90: Double
    public var p95: Double
    public var p99: Double
    public var p999: Double
    public var p9999: Double
    public var histogram: String

    public init(_ h: Histogram<UInt64>) {
        func ms(_ p: Double) -> Double { Double(h.valueAtPercentile(p)) / 1e6 }
        count = h.totalCount
        mean = h.totalCount == 0 ? 0 : h.mean / 1e6
        max = h.totalCount == 0 ? 0 : Double(h.max) / 1e6
        p50 = ms(50)
        p90 = ms(90)
        p95 = ms(95)
        p99 = ms(99)
        p999 = ms(99.9)
        p9999 = ms(99.99)
        histogram = HistogramCodec.encodeBase64Compressed(h)
    }

    /// The value (ms) at one of the stored percentiles, or from the histogram for any other.
    public func milliseconds(atPercentile p: Double) -> Double {
        switch p {
        case 50: return p50
        case 90: return p90
        case 95: return p95
        case 99: return p99
        case 99.9: return p999
        case 99.99: return p9999
        default:
            guard let h = try? HistogramCodec.decodeBase64(histogram) else { return .nan }
            return Double(h.valueAtPercentile(p)) / 1e6
        }
    }
}

/// Records and rate of one side of a run.
public struct RunTotals: Codable, Sendable, Equatable {
    public var records: UInt64
    public var errors: UInt64
    public var seconds: Double
    public var recordsPerSecond: Double
    public var mebibytesPerSecond: Double
}

/// How the host's CPUs were spent during a run (from /proc/stat). On a shared VM, `steal`
/// (time the hypervisor gave to other guests) says how much a result was perturbed.
public struct HostCPU: Codable, Sendable, Equatable {
    public var busyPercent: Double
    public var iowaitPercent: Double
    public var stealPercent: Double

    /// The counters of /proc/stat's CPU lines whose label passes `wanted` (`cpu` for the whole
    /// host, `cpuN` per CPU), in jiffies: user nice system idle iowait irq softirq steal.
    static func counters(_ wanted: (Substring) -> Bool) -> [[UInt64]] {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard let label = fields.first, label.hasPrefix("cpu"), wanted(label) else { return nil }
            let f = fields.dropFirst().compactMap { UInt64($0) }
            return f.count >= 8 ? f : nil
        }
    }

    /// Cumulative jiffies of the `cpu` line: (user+nice+system+irq+softirq, iowait, steal, total).
    public static func sample() -> (busy: UInt64, iowait: UInt64, steal: UInt64, total: UInt64)? {
        guard let f = counters({ $0 == "cpu" }).first else { return nil }
        return (f[0] + f[1] + f[2] + f[5] + f[6], f[4], f[7], f.prefix(8).reduce(0, +))
    }

    /// Cumulative steal of each CPU (`cpuN` lines), in milliseconds.
    public static func stealPerCPU() -> [Double]? {
        let msPerTick = 1000 / Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        let steal = counters { $0 != "cpu" }.map { Double($0[7]) * msPerTick }
        return steal.isEmpty ? nil : steal
    }

    /// The most any one CPU lost to the hypervisor between two ``stealPerCPU()`` samples (ms):
    /// a vCPU taken away for that long stops the threads on it meanwhile.
    public static func longestSteal(from a: [Double]?, to b: [Double]?) -> Double? {
        guard let a, let b, a.count == b.count else { return nil }
        return zip(a, b).map { $1 - $0 }.max()
    }

    public init?(from a: (busy: UInt64, iowait: UInt64, steal: UInt64, total: UInt64)?, to b: (busy: UInt64, iowait: UInt64, steal: UInt64, total: UInt64)?) {
        guard let a, let b, b.total > a.total else { return nil }
        let total = Double(b.total - a.total)
        busyPercent = Double(b.busy - a.busy) / total * 100
        iowaitPercent = Double(b.iowait - a.iowait) / total * 100
        stealPercent = Double(b.steal - a.steal) / total * 100
    }
}

/// The page cache's unwritten data (/proc/meminfo `Dirty` and `Writeback`): a run that starts
/// while gigabytes wait for writeback measures the kernel's flushing as much as the broker.
public struct PageCache: Codable, Sendable, Equatable {
    public var dirtyBytes: UInt64
    public var writebackBytes: UInt64
    /// The page cache in all (`Cached`) and the memory nothing uses (`MemFree`); nil in older
    /// bundles. A run that grows the cache writes into memory the machine was not using, which
    /// on a VM whose host takes free memory back (free page reporting) costs several times
    /// what writing into recycled memory does.
    public var cachedBytes: UInt64?
    public var freeBytes: UInt64?

    /// Below this much dirty + writeback data the machine counts as settled.
    public static let settledBytes: UInt64 = 64 << 20

    public static func sample() -> PageCache? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 2, ["Dirty:", "Writeback:", "Cached:", "MemFree:"].contains(f[0]), let kib = UInt64(f[1]) { values[String(f[0])] = kib * 1024 }
        }
        guard let dirty = values["Dirty:"], let writeback = values["Writeback:"] else { return nil }
        return PageCache(dirtyBytes: dirty, writebackBytes: writeback, cachedBytes: values["Cached:"], freeBytes: values["MemFree:"])
    }

    /// `sync`, then waits (up to `timeoutSeconds`) until dirty + writeback data fall below
    /// ``settledBytes``. Returns the seconds it took.
    public static func settle(timeoutSeconds: Double = 120) -> Double {
        let start = Sys.monotonicNs()
        Sys.syncFileSystems()
        while let state = sample(), state.dirtyBytes + state.writebackBytes >= settledBytes,
              Double(Sys.monotonicNs() - start) / 1e9 < timeoutSeconds {
            Sys.sleep(microseconds: 100_000)
        }
        return Double(Sys.monotonicNs() - start) / 1e9
    }
}

/// The page cache around a run, and how long settling before it took.
public struct PageCacheRecord: Codable, Sendable, Equatable {
    public var atStart: PageCache?
    public var atEnd: PageCache?
    /// Seconds spent settling before the run (nil: `settle: none`).
    public var settleSeconds: Double?
    /// The plan's `preload` before the run (after settling): its length and the rate it reached.
    public var preloadSeconds: Double?
    public var preloadRecordsPerSecond: Double?
}

/// What the embedded broker's stall detector saw during a run (from `loop.stall.stats.file`).
public struct BrokerStalls: Codable, Sendable, Equatable {
    /// The broker's `loop.stall.warn.ms`.
    public var warnMs: Int
    /// Shard turns during the run (all shards) and the turns longer than `warnMs`.
    public var turns: UInt64
    public var stalls: Int
    /// The longest stall in the run, its shard and phase (nil when there was none).
    public var longestMs: Double?
    public var longestPhase: String?
    /// Why the longest stall was long, and the run's stalls by cause: `on-cpu` (the shard ran
    /// the whole time), `blocked` (it slept in a call: the disk, a lock, a page fault),
    /// `preempted` (it was runnable and another task had the CPU), `stolen` (no switch: the
    /// hypervisor or interrupts had the vCPU). Nil in older bundles.
    public var longestCause: String?
    public var byCause: [String: Int]?
    /// Calls that may wait on the disk made on shard threads so far (should stay 0).
    public var diskWaitsOnShards: Int
    /// The shard-thread contract's declared exceptions taken during the run, by reason (a roll
    /// without a spare, …; empty: none). Nil in older bundles and from older brokers.
    public var declaredDiskWaits: [String: Int]?
}

/// One reporting interval of a run's latency.
public struct IntervalSummary: Codable, Sendable, Equatable {
    /// Seconds from the start of the run (warm-up included).
    public var startSeconds: Double
    /// The interval's length (nil in bundles from before it was kept: the report interval, 1 s).
    public var lengthSeconds: Double?
    /// Records acknowledged in it.
    public var count: UInt64
    public var p50Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
    /// The most time one CPU of the host lost to the hypervisor (steal) in the interval, ms (in
    /// 10 ms ticks; nil where /proc/stat has no per-CPU steal, and in older bundles).
    public var stealMs: Double?
    /// How far the load generator fell behind its open-loop schedule at worst in the interval,
    /// ms (nil in older bundles): latency that accrued before the producer had the records.
    public var generatorLagMs: Double?

    public init(_ interval: IntervalHistogram) {
        startSeconds = interval.startSeconds
        lengthSeconds = interval.lengthSeconds
        count = interval.histogram.totalCount
        p50Ms = Double(interval.histogram.valueAtPercentile(50)) / 1e6
        p99Ms = Double(interval.histogram.valueAtPercentile(99)) / 1e6
        maxMs = Double(interval.histogram.max) / 1e6
        stealMs = interval.stealMs
        generatorLagMs = interval.generatorLagMs
    }
}

/// One thing a sweep did to its cluster during a run.
public struct FaultEvent: Codable, Sendable, Equatable {
    /// Seconds from the start of the run (warm-up included); for an undo, when it was done
    /// (a restarted broker: when it accepted connections again).
    public var atSeconds: Double
    /// e.g. "kill broker 2 (leader of partition 0)", "broker 2 serving again".
    public var event: String
}

/// One measured run: what `apus perf` prints at the end, as data.
public struct RunRecord: Codable, Sendable, Equatable {
    /// Records/s the open-loop schedule aimed at; -1 for as fast as possible.
    public var targetRate: Double
    public var produced: RunTotals
    public var consumed: RunTotals?
    /// Failed records by Kafka error code (-1: the request failed as a whole).
    public var errorsByCode: [String: UInt64]
    /// `produce.intended` (coordinated-omission corrected), `produce.send`, and for e2e runs `e2e`.
    public var latency: [String: LatencySummary]
    /// The host's CPU use over the run, when measured.
    public var hostCPU: HostCPU?
    /// The producers' metrics (`--print-metrics` names).
    public var producerMetrics: [String: String]?
    /// Dirty and writeback page-cache data at the start and end (sweeps).
    public var pageCache: PageCacheRecord?
    /// The embedded broker's stalls during the run (sweeps).
    public var brokerStalls: BrokerStalls?
    /// The embedded broker's own view of the run (its metrics endpoint, scraped at start and end).
    public var broker: BrokerView?
    /// Produce latency (intended) per reporting interval, so that a periodic stall shows as
    /// spikes rather than averaged into a percentile (sweeps; `apus perf produce/e2e --json`, at
    /// its `--reporting-interval`).
    public var overTime: [IntervalSummary]?
    /// What the plan's faults did during the run (target: cluster), in time order.
    public var faults: [FaultEvent]?

    public init(_ r: ProducePerfResult, targetRate: Double) {
        self.targetRate = targetRate
        produced = RunTotals(records: r.records, errors: r.errors, seconds: Double(r.elapsedNanos) / 1e9,
                             recordsPerSecond: r.recordsPerSecond, mebibytesPerSecond: r.mebibytesPerSecond)
        consumed = nil
        errorsByCode = Dictionary(uniqueKeysWithValues: r.errorsByCode.map { (String($0.key), $0.value) })
        latency = ["produce.intended": LatencySummary(r.intendedLatency), "produce.send": LatencySummary(r.sendLatency)]
        producerMetrics = Dictionary(r.metrics.lines, uniquingKeysWith: { $1 })
    }

    public init(_ r: EndToEndPerfResult, targetRate: Double) {
        self.init(r.produced, targetRate: targetRate)
        consumed = RunTotals(records: r.consumedRecords, errors: 0, seconds: Double(r.consumeElapsedNanos) / 1e9,
                             recordsPerSecond: r.consumedRecordsPerSecond, mebibytesPerSecond: r.consumedMebibytesPerSecond)
        latency["e2e"] = LatencySummary(r.latency)
    }
}

/// What machine and which code produced a result.
public struct MachineFingerprint: Codable, Sendable, Equatable {
    public var cpuModel: String
    public var cores: Int
    public var memoryBytes: UInt64
    public var kernel: String
    /// File system type, device and mount point of the data directory.
    public var dataDirFilesystem: String
    public var hostname: String
    /// Whether a virtio balloon reports the guest's free memory to the host (feature
    /// VIRTIO_BALLOON_F_REPORTING): memory freed for a few seconds goes back to the host, and
    /// its next first touch faults on the host — on this project's VM a write into such page
    /// cache takes ~10× the CPU of one into pages just freed. Nil in older bundles.
    public var freePageReporting: Bool?

    /// Reads /proc; `dataDir` need not exist yet (its nearest existing parent is used).
    public static func current(dataDir: String) -> MachineFingerprint {
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let cpu = read("/proc/cpuinfo").split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var dir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        while !FileManager.default.fileExists(atPath: dir) && dir != "/" { dir = (dir as NSString).deletingLastPathComponent }
        let real = (try? FileManager.default.destinationOfSymbolicLink(atPath: dir)).map { $0.hasPrefix("/") ? $0 : dir } ?? dir
        var best = (mount: "", text: "unknown")
        for line in read("/proc/self/mounts").split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            let mount = String(f[1])
            let inside = real == mount || real.hasPrefix(mount == "/" ? "/" : mount + "/")
            if inside && mount.count >= best.mount.count { best = (mount, "\(f[2]) on \(f[0]) at \(mount)") }
        }
        return MachineFingerprint(
            cpuModel: cpu, cores: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: ProcessInfo.processInfo.physicalMemory,
            kernel: read("/proc/sys/kernel/osrelease").trimmingCharacters(in: .whitespacesAndNewlines),
            dataDirFilesystem: best.text, hostname: ProcessInfo.processInfo.hostName, freePageReporting: reportsFreePages())
    }

    /// A virtio device of type 5 (balloon) with feature bit 5 (free page reporting) set; sysfs
    /// lists feature bits as a string of 0/1, bit 0 first.
    public static func reportsFreePages(virtioDevices: String = "/sys/bus/virtio/devices") -> Bool {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: virtioDevices)) ?? []
        return devices.contains { name in
            let dir = virtioDevices + "/" + name
            let type = (try? String(contentsOfFile: dir + "/device", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            let features = Array((try? String(contentsOfFile: dir + "/features", encoding: .utf8)) ?? "")
            return type == "0x0005" && features.count > 5 && features[5] == "1"
        }
    }

    public var summary: String {
        "\(cpuModel), \(cores) cores, \(memoryBytes >> 30) GiB, Linux \(kernel), data on \(dataDirFilesystem)"
            + (freePageReporting == true ? ", free page reporting to the host" : "")
    }
}

/// The git revision of the checkout holding the running executable (it is built into the
/// checkout's .build), else of the current directory; `unknown` outside a checkout, `-dirty`
/// when tracked files have uncommitted changes. It is the checkout's state at run time.
public func gitRevision() -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { ($0 as NSString).deletingLastPathComponent }
    for directory in [exe, FileManager.default.currentDirectoryPath].compactMap({ $0 }) {
        let revision = gitRevision(directory: directory)
        if revision != "unknown" { return revision }
    }
    return "unknown"
}

func gitRevision(directory: String) -> String {
    func git(_ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "-C", directory] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    guard let head = git(["rev-parse", "HEAD"]), !head.isEmpty else { return "unknown" }
    let dirty = git(["status", "--porcelain", "--untracked-files=no"]).map { !$0.isEmpty } ?? false
    return head + (dirty ? "-dirty" : "")
}

/// The document `apus perf … --json FILE` writes.
public struct PerfDocument: Codable, Sendable {
    public var tool: String
    public var date: String
    public var revision: String
    public var machine: MachineFingerprint
    /// The produce side's workload (for e2e runs too).
    public var workload: ProducePerfWorkload
    public var producerConfig: [String: String]
    public var consumerConfig: [String: String]?
    public var run: RunRecord

    public init(tool: String, workload: ProducePerfWorkload, producerConfig: ProducerConfig?, consumerConfig: ConsumerConfig?, run: RunRecord) {
        self.tool = tool
        date = ISO8601DateFormatter().string(from: Date())
        revision = gitRevision()
        machine = .current(dataDir: FileManager.default.currentDirectoryPath)
        self.workload = workload
        self.producerConfig = producerConfig.map(Self.describe) ?? [:]
        self.consumerConfig = consumerConfig.map(Self.describe)
        self.run = run
    }

    public static func describe(_ c: ProducerConfig) -> [String: String] {
        [
            "bootstrap": c.bootstrap, "acks": c.acks == -1 ? "all" : String(c.acks), "batch.size": String(c.batchSize),
            "linger.ms": String(c.lingerMs), "compression.type": "\(c.compression)",
            "max.in.flight.requests.per.connection": String(c.maxInFlight), "max.request.size": String(c.maxRequestSize),
            "partitioner": c.partitioner.rawValue,
            "request.timeout.ms": String(c.requestTimeoutMs),
        ]
    }

    public static func describe(_ c: ConsumerConfig) -> [String: String] {
        [
            "bootstrap": c.bootstrap, "fetch.min.bytes": String(c.fetchMinBytes), "fetch.max.wait.ms": String(c.fetchMaxWaitMs),
            "max.partition.fetch.bytes": String(c.maxPartitionFetchBytes), "fetch.max.bytes": String(c.fetchMaxBytes),
            "auto.offset.reset": c.autoOffsetReset.rawValue, "check.crcs": String(c.checkCRCs),
            "fetches.in.flight": String(c.fetchesInFlight),
        ]
    }

    public func json() throws -> String { try LabJSON.encode(self) }
}

enum LabJSON {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }

    static func decode<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        try JSONDecoder().decode(type, from: try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
