import ApusClient
import ApusIO
import ApusConfig
import Foundation
import Synchronization

/// Runs a plan point by point into a bundle directory; a bundle that already holds some
/// finished points (an interrupted or crashed sweep) resumes with the next one.
public final class SweepRunner: @unchecked Sendable {
    public struct Options: Sendable {
        /// The `apus` executable started for embedded brokers (this one unless `--broker-binary`).
        public var apusBinary: String
        public var bundleDirectory: String
        /// Parent of the embedded brokers' data directories (one per point, removed after it).
        public var dataRoot: String
        /// The command line recorded in the bundle.
        public var command: String
        /// Rewrite the progress line in place (a terminal) or print plain lines.
        public var interactive = false
        /// Progress lines of each run, in seconds (the `.hlog` interval length too).
        public var reportInterval = 1.0

        public init(apusBinary: String, bundleDirectory: String, dataRoot: String, command: String) {
            self.apusBinary = apusBinary
            self.bundleDirectory = bundleDirectory
            self.dataRoot = dataRoot
            self.command = command
        }
    }

    let plan: SweepPlan
    let options: Options
    let out: @Sendable (String) -> Void
    /// Kills what the current point started (for `abort`).
    private let current = Mutex<(@Sendable () -> Void)?>(nil)
    /// The configuration keys the embedded broker's build knows.
    private lazy var brokerKeys = EmbeddedBroker.configKeys(options.apusBinary)

    public init(plan: SweepPlan, options: Options, out: @escaping @Sendable (String) -> Void) {
        self.plan = plan
        self.options = options
        self.out = out
    }

    /// Kills the running embedded broker (for a signal handler: the sweep process is ending).
    public func abort() {
        current.withLock { kill in
            kill?()
        }
    }

    /// Seconds one point should take: the runs, plus about two seconds of broker start and stop.
    func plannedSeconds(_ point: SweepPoint) -> Double {
        let run = point.workload.warmupSeconds + point.workload.durationSeconds + 0.5 + (plan.preloadSeconds ?? 0)
        var total = Double(plan.repeats) * run + 2
        if let knee = plan.knee { total += Double(knee.iterations * knee.repeats) * run }
        return total
    }

    /// Runs every point not yet finished; returns the bundle.
    @discardableResult
    public func run() throws -> SweepBundle {
        let dir = options.bundleDirectory
        let points = plan.points
        try prepareBundle(points: points)
        let planned = points.map(plannedSeconds)
        var done = points.map { Sys.exists("\(SweepBundle.pointDirectory(dir, $0.id))/result.json") }
        let resumed = done.filter { $0 }.count
        if resumed > 0 { out("resuming \(dir): \(resumed) of \(points.count) points already done") }
        var spentPlanned = 0.0
        var spentActual = 0.0
        for (i, point) in points.enumerated() where !done[i] {
            let remainingPlanned = zip(planned, done).filter { !$0.1 }.map(\.0).reduce(0, +)
            let pace = spentPlanned > 0 ? spentActual / spentPlanned : 1
            let eta = remainingPlanned * pace
            let header = "[\(i + 1)/\(points.count)] \(point.id)"
            let started = Sys.monotonicNs()
            let point = try resolvingRate(point, points)
            let result = try runPoint(point) { status in
                self.progress("\(header): \(status) — ETA \(Self.duration(eta))")
            }
            try write(result, to: "\(SweepBundle.pointDirectory(dir, point.id))/result.json")
            let seconds = Double(Sys.monotonicNs() - started) / 1e9
            spentPlanned += planned[i]
            spentActual += seconds
            done[i] = true
            finishProgress("\(header): \(Self.describe(result)) (\(Self.duration(seconds)))")
        }
        let bundle = try SweepBundle(directory: dir)
        try SweepReport.write(bundle)
        out("report: \(dir)/report.md")
        return bundle
    }

    /// A `rate: N%` point with its rate: that share of the median rate its maximum point's
    /// repeats reached (read from that point's result, so a resumed sweep finds it too).
    func resolvingRate(_ point: SweepPoint, _ points: [SweepPoint]) throws -> SweepPoint {
        guard let share = point.workload.rateOfMax else { return point }
        guard let max = SweepPlan.maximumPoint(for: point, in: points) else { throw ClientError("\(point.id): no rate: max point to take \(share * 100)% of") }
        let result: PointResult
        do { result = try LabJSON.decode(PointResult.self, from: "\(SweepBundle.pointDirectory(options.bundleDirectory, max.id))/result.json") } catch {
            throw ClientError("\(point.id): reading the maximum of \(max.id): \(error)")
        }
        guard !result.repeats.isEmpty else { throw ClientError("\(point.id): \(max.id) has no runs") }
        var resolved = point
        resolved.workload.rate = (share * median(result.repeats.map(\.produced.recordsPerSecond))).rounded()
        return resolved
    }

    /// Creates the bundle, or checks that an existing one was started from the same plan.
    func prepareBundle(points: [SweepPoint]) throws {
        let dir = options.bundleDirectory
        let planPath = "\(dir)/plan.yaml"
        if Sys.exists("\(dir)/bundle.json") {
            let old = try? String(contentsOfFile: planPath, encoding: .utf8)
            guard old == plan.source else {
                throw ClientError("\(dir) holds a sweep of a different plan; choose another --out or remove it")
            }
            return
        }
        try Sys.makeDirectories("\(dir)/points")
        try plan.source.write(toFile: planPath, atomically: true, encoding: .utf8)
        let manifest = BundleManifest(
            name: plan.name, created: ISO8601DateFormatter().string(from: Date()), revision: gitRevision(),
            machine: .current(dataDir: options.dataRoot), command: options.command, mode: plan.mode, target: plan.target,
            repeats: plan.repeats, workload: plan.workload, knee: plan.knee,
            axes: plan.axes.map { BundleManifest.Axis(key: $0.key, values: $0.values) }, points: points)
        try write(manifest, to: "\(dir)/bundle.json")
    }

    func runPoint(_ point: SweepPoint, status: (String) -> Void) throws -> PointResult {
        let pointDir = SweepBundle.pointDirectory(options.bundleDirectory, point.id)
        try? FileManager.default.removeItem(atPath: pointDir)
        try Sys.makeDirectories(pointDir)
        let started = Sys.monotonicNs()
        var broker: EmbeddedBroker?
        var cluster: EmbeddedCluster?
        var replicationFactor: Int16 = 1
        let bootstrap: String
        var brokerConfig: [SweepPoint.Setting]?
        let dataDir = "\(options.dataRoot)/\(point.id)"
        switch plan.target {
        case .external(let address):
            bootstrap = address
        case .embedded:
            status("starting apus serve")
            let b = try EmbeddedBroker(binary: options.apusBinary, dataDir: dataDir, settings: point.broker,
                                       partitions: point.workload.partitions, logPath: "\(pointDir)/broker.log", knownKeys: brokerKeys)
            current.withLock { $0 = { b.kill() } }
            broker = b
            bootstrap = b.bootstrap
        case .cluster(let count, let rf):
            status("starting etcd and \(count) brokers")
            let c = try EmbeddedCluster(binary: options.apusBinary, dataDir: dataDir, count: count, settings: point.broker,
                                        partitions: point.workload.partitions, logDirectory: pointDir, knownKeys: brokerKeys)
            current.withLock { $0 = { c.kill() } }
            cluster = c
            bootstrap = c.bootstrap
            replicationFactor = Int16(point.workload.replicationFactor ?? rf)
        }
        /// The sweep started the brokers (it sets their keys, and deletes topics and data after).
        let ownsBrokers = broker != nil || cluster != nil
        if ownsBrokers {
            brokerConfig = effectiveBrokerConfig(point)
            try write(brokerConfig!, to: "\(pointDir)/broker-config.json")
        }
        defer {
            if ownsBrokers {
                _ = broker?.stop() ?? cluster?.stop()  // nothing to do if already stopped
                current.withLock { $0 = nil }
                try? FileManager.default.removeItem(atPath: dataDir)
            }
        }
        var pconfig = ProducerConfig(bootstrap: bootstrap)
        pconfig.partitioner = point.workload.keys == .none ? .sticky : .murmur2
        for s in point.client { try pconfig.set(s.key, s.value) }
        var cconfig = ConsumerConfig(bootstrap: bootstrap)
        cconfig.receiveThread = true
        for s in plan.consumer { try cconfig.set(s.key, s.value) }

        var runNumber = 0
        let topicConfigs = Dictionary(plan.topicConfigs.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        func measure(rate: Double, label: String) throws -> RunRecord {
            runNumber += 1
            let topic = "sweep-\(runNumber)", preloadTopic = "preload-\(runNumber)"
            try KafkaConnection(bootstrap: bootstrap).createTopic(topic, partitions: point.workload.partitions, replicationFactor: replicationFactor,
                                                                configs: topicConfigs)
            // On the sweep's own broker the run's topics go once it is measured: a preload leaves
            // ~1 GB a second, and kept for every repeat of a point that filled this machine's disk
            // (68 GB in one tail-plan point). An external broker keeps them.
            defer {
                if ownsBrokers { try? KafkaAdmin(bootstrap: bootstrap).deleteTopics(plan.preloadSeconds == nil ? [topic] : [topic, preloadTopic]) }
            }
            status("\(label) at \(rate > 0 ? Self.rate(rate) + "/s" : "max rate")")
            let logPath = "\(pointDir)/run-\(runNumber).txt"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = FileHandle(forWritingAtPath: logPath)!
            defer { try? log.close() }
            let sink: @Sendable (String) -> Void = { line in log.write(Data((line + "\n").utf8)) }
            let w = point.workload
            var record: RunRecord
            var pageCache = PageCacheRecord()
            if plan.settle == .sync {
                status("\(label): settling the page cache")
                pageCache.settleSeconds = PageCache.settle()
            }
            if let seconds = plan.preloadSeconds {
                status("\(label): preloading at the maximum rate for \(Self.duration(seconds))")
                pageCache.preloadSeconds = seconds
                pageCache.preloadRecordsPerSecond = try preload(bootstrap: bootstrap, topic: preloadTopic, seconds: seconds, workload: point.workload,
                                                                replicationFactor: replicationFactor)
                // The broker rewrites its stall statistics every second: the snapshot the run
                // starts from must not leave the preload's last second to the run.
                if broker != nil { Sys.sleep(microseconds: 1_100_000) }
            }
            pageCache.atStart = PageCache.sample()
            let stallsBefore = broker?.stallStats()
            let scrapeBefore = broker?.metricsPort.flatMap { MetricsScrape.fetch(port: $0) }
            let scrapeStarted = Sys.monotonicNs()
            let startedMs = Int64(Date().timeIntervalSince1970 * 1000)
            let cpuBefore = HostCPU.sample()
            let intervals: [IntervalHistogram]
            var workload = ProducePerfWorkload(topic: topic)
            workload.durationSeconds = w.warmupSeconds + w.durationSeconds
            workload.warmupSeconds = w.warmupSeconds
            workload.recordSize = w.recordSize
            workload.throughput = rate
            workload.producers = w.producers
            workload.payload = w.payload
            workload.keys = w.keys
            let schedule = cluster.flatMap { c in
                plan.faults.isEmpty ? nil : FaultSchedule(plan.faults, on: c, topic: topic, runSeconds: w.warmupSeconds + w.durationSeconds)
            }
            defer { schedule?.cancel() }  // a run that failed: no more faults on a cluster being stopped
            switch plan.mode {
            case .produce:
                let r = try ProducePerf.run(workload: workload, config: pconfig, reportInterval: options.reportInterval, log: sink)
                sink(ProducePerf.summary(r))
                record = RunRecord(r, targetRate: rate)
                intervals = r.intervals
            case .e2e:
                let r = try EndToEndPerf.run(workload: EndToEndPerfWorkload(produce: workload), producerConfig: pconfig,
                                             consumerConfig: cconfig, reportInterval: options.reportInterval, log: sink)
                sink(EndToEndPerf.summary(r))
                record = RunRecord(r, targetRate: rate)
                intervals = r.produced.intervals
            }
            record.hostCPU = HostCPU(from: cpuBefore, to: HostCPU.sample())
            pageCache.atEnd = PageCache.sample()
            record.pageCache = pageCache
            record.overTime = intervals.map(IntervalSummary.init)
            if let schedule {
                var events = schedule.finish()
                status("\(label): undoing the faults")
                let end = Double(Sys.monotonicNs() - schedule.start) / 1e9
                events += try cluster!.restore().map { FaultEvent(atSeconds: end, event: "after the run: \($0)") }
                record.faults = events
                for e in events { sink(String(format: "fault at %.2f s: ", e.atSeconds) + e.event) }
            }
            if let broker {
                // The broker rewrites its statistics every second: wait for a fresh copy.
                let endedMs = Int64(Date().timeIntervalSince1970 * 1000)
                Sys.sleep(microseconds: 1_100_000)
                if let after = broker.stallStats() {
                    record.brokerStalls = EmbeddedBroker.stalls(from: stallsBefore, to: after, fromMs: startedMs, toMs: endedMs)
                }
                if let before = scrapeBefore, let port = broker.metricsPort, let after = MetricsScrape.fetch(port: port) {
                    record.broker = MetricsScrape.view(from: before, to: after, seconds: Double(Sys.monotonicNs() - scrapeStarted) / 1e9)
                }
            }
            var hlog = HistogramLogWriter(startTimeEpochSeconds: Date().timeIntervalSince1970 - w.warmupSeconds - w.durationSeconds)
            for i in intervals { hlog.append(start: i.startSeconds, length: i.lengthSeconds, histogram: i.histogram, tag: "produce.intended") }
            try hlog.text.write(toFile: "\(pointDir)/run-\(runNumber).hlog", atomically: true, encoding: .utf8)
            return record
        }

        var repeats: [RunRecord] = []
        for r in 1...plan.repeats {
            repeats.append(try measure(rate: point.workload.rate, label: "repeat \(r)/\(plan.repeats)"))
        }
        var knee: KneeResult?
        if let spec = plan.knee {
            knee = try searchKnee(spec, repeats: repeats) { rate, step in
                try (1...spec.repeats).map { _ in try measure(rate: rate, label: "knee step \(step)/\(spec.iterations)") }
            }
        }
        let exitStatus = broker?.stop() ?? cluster?.stop()
        return PointResult(
            point: point, brokerConfig: brokerConfig, producerConfig: PerfDocument.describe(pconfig),
            consumerConfig: plan.mode == .e2e ? PerfDocument.describe(cconfig) : nil, repeats: repeats, knee: knee,
            brokerExitStatus: exitStatus, seconds: Double(Sys.monotonicNs() - started) / 1e9)
    }

    /// The plan's `preload`: maximum-rate produce with 1 MiB batches and acks=1 into a topic of
    /// its own, as the heavy run before a probe would; returns the records/s it reached.
    func preload(bootstrap: String, topic: String, seconds: Double, workload w: SweepWorkload, replicationFactor: Int16) throws -> Double {
        try KafkaConnection(bootstrap: bootstrap).createTopic(topic, partitions: w.partitions, replicationFactor: replicationFactor)
        var config = ProducerConfig(bootstrap: bootstrap)
        for (key, value) in [("acks", "1"), ("batch.size", "1048576"), ("linger.ms", "5")] { try config.set(key, value) }
        var workload = ProducePerfWorkload(topic: topic)
        workload.durationSeconds = seconds
        workload.recordSize = w.recordSize
        workload.payload = w.payload
        let r = try ProducePerf.run(workload: workload, config: config, reportInterval: options.reportInterval, log: { _ in })
        return r.elapsedNanos > 0 ? Double(r.records) / (Double(r.elapsedNanos) / 1e9) : 0
    }

    /// Bisection between 0 and the maximum rate measured by the repeats: the highest open-loop
    /// rate whose percentile of produce latency from the intended send time (coordinated-omission
    /// corrected) stays within the SLO. The maximum-rate runs only set the top of the search: run
    /// as fast as possible, each batch is "intended" when it can be sent, so their latency is a
    /// closed-loop figure and not comparable.
    func searchKnee(_ spec: KneeSpec, repeats: [RunRecord], probe: (Double, Int) throws -> [RunRecord]) throws -> KneeResult {
        func summarize(_ runs: [RunRecord], target: Double) -> KneeProbe {
            let lat = runs.compactMap { $0.latency["produce.intended"] }
            let value = median(lat.map { $0.milliseconds(atPercentile: spec.percentile) })
            return KneeProbe(targetRate: target, recordsPerSecond: median(runs.map(\.produced.recordsPerSecond)), latencyMs: value,
                             p50Ms: median(lat.map(\.p50)), p99Ms: median(lat.map(\.p99)), p999Ms: median(lat.map(\.p999)),
                             withinSLO: value <= spec.sloMs && runs.allSatisfy { $0.produced.errors == 0 })
        }
        let top = median(repeats.map(\.produced.recordsPerSecond))
        var lo = 0.0
        var hi = top
        var probes: [KneeProbe] = []
        for step in 1...spec.iterations {
            let rate = ((lo + hi) / 2).rounded()
            guard rate >= 1 else { break }
            let p = summarize(try probe(rate, step), target: rate)
            probes.append(p)
            if p.withinSLO { lo = rate } else { hi = rate }
        }
        // Confirm the knee with a second probe at its rate: bisection trusts every probe once.
        var knee = probes.filter(\.withinSLO).map(\.targetRate).max()
        if let rate = knee {
            var confirmation = summarize(try probe(rate, spec.iterations + 1), target: rate)
            confirmation.confirmation = true
            probes.append(confirmation)
            if !confirmation.withinSLO {
                // The highest passing rate below it that nothing contradicts, if any.
                knee = probes.filter { $0.withinSLO && $0.targetRate < rate }.map(\.targetRate).max()
            }
        }
        probes.sort { ($0.targetRate, $0.confirmation ?? false ? 1 : 0) < ($1.targetRate, $1.confirmation ?? false ? 1 : 0) }
        return KneeResult(percentile: spec.percentile, sloMs: spec.sloMs, maxRate: top, kneeRate: knee, probes: probes)
    }

    /// Every `apus serve` key with the value this point runs with.
    func effectiveBrokerConfig(_ point: SweepPoint) -> [SweepPoint.Setting] {
        var set = Dictionary(point.broker.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        set["num.partitions"] = String(point.workload.partitions)
        if case .cluster = plan.target {
            set["cluster.metadata"] = "etcd://127.0.0.1:(a free port; one etcd per point)"
            set["node.id"] = "1...N"
        }
        set["listeners"] = "127.0.0.1:(a free port)"
        set["data.dir"] = "(a fresh directory per point)"
        return ServerConfig.keys.map { SweepPoint.Setting(key: $0.key, value: set[$0.key] ?? $0.defaultValue) }
    }

    func write<T: Encodable>(_ value: T, to path: String) throws {
        try LabJSON.encode(value).write(toFile: path, atomically: true, encoding: .utf8)
    }

    private var progressShown = false

    /// On a terminal: one line rewritten in place; otherwise a plain line per step.
    func progress(_ line: String) {
        if options.interactive {
            Sys.writeText(1, "\r\u{1B}[2K" + line)
            progressShown = true
        } else {
            out(line)
        }
    }

    func finishProgress(_ line: String) {
        if options.interactive && progressShown { Sys.writeText(1, "\r\u{1B}[2K") }
        out(line)
        progressShown = false
    }

    static func describe(_ r: PointResult) -> String {
        let rates = r.repeats.map(\.produced.recordsPerSecond)
        let p99 = r.repeats.compactMap { $0.latency["produce.intended"]?.p99 }
        var s = "\(rate(median(rates)))/s produced, p99 \(String(format: "%.2f", median(p99))) ms"
        let consumed = r.repeats.compactMap(\.consumed).map(\.recordsPerSecond)
        if !consumed.isEmpty { s += ", \(rate(median(consumed)))/s consumed" }
        if let k = r.knee { s += ", knee " + (k.kneeRate.map { rate($0) + "/s" } ?? "none") }
        let errors = r.repeats.reduce(0) { $0 + $1.produced.errors }
        if errors > 0 { s += ", \(errors) errors" }
        let steal = r.repeats.compactMap { $0.hostCPU?.stealPercent }
        if !steal.isEmpty { s += String(format: ", CPU steal %.0f%%", median(steal)) }
        return s
    }

    static func rate(_ v: Double) -> String {
        v >= 1e6 ? String(format: "%.2f M", v / 1e6) : v >= 1e3 ? String(format: "%.1f k", v / 1e3) : String(format: "%.0f", v)
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// The median (mean of the middle two for an even count); NaN for no values.
public func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The plan's faults done to a cluster during one run, on a thread of their own: each at its
/// time from the start of the run, undone `for` seconds later (undos due after the run are
/// left to `EmbeddedCluster.restore`).
final class FaultSchedule: @unchecked Sendable {
    let start = Sys.monotonicNs()
    private let events = Mutex<[FaultEvent]>([])
    private let cancelled = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(_ faults: [FaultSpec], on cluster: EmbeddedCluster, topic: String, runSeconds: Double) {
        Thread.detachNewThread { [self] in
            var steps: [(at: Double, fault: FaultSpec?, undo: EmbeddedCluster.Down?)] = faults.map { ($0.atSeconds, $0, nil) }
            while !steps.isEmpty {
                steps.sort { $0.at < $1.at }
                let step = steps.removeFirst()
                guard step.at < runSeconds else { break }
                let due = start + UInt64(step.at * 1e9)
                let now = Sys.monotonicNs()
                if due > now { Thread.sleep(forTimeInterval: Double(due - now) / 1e9) }
                if cancelled.load(ordering: .relaxed) { break }
                let at = seconds()
                if let fault = step.fault {
                    let (what, undo) = cluster.apply(fault, topic: topic)
                    record(at, what)
                    if let undo, let duration = fault.forSeconds { steps.append((step.at + duration, nil, undo)) }
                } else if let undo = step.undo {
                    let what = cluster.undo(undo)
                    record(seconds(), what)
                }
            }
            done.signal()
        }
    }

    func seconds() -> Double { Double(Sys.monotonicNs() - start) / 1e9 }

    /// Nothing more is done after the step under way.
    func cancel() { cancelled.store(true, ordering: .relaxed) }

    func record(_ at: Double, _ event: String) {
        events.withLock { $0.append(FaultEvent(atSeconds: at, event: event)) }
    }

    /// Waits until the schedule is through; what it did, in time order.
    func finish() -> [FaultEvent] {
        done.wait()
        return events.withLock { $0 }.sorted { $0.atSeconds < $1.atSeconds }
    }
}
