import ApusClient
import ApusConfig
import Yams

/// A plan that cannot run, with the place in the plan file that says why.
public struct PlanError: Error, CustomStringConvertible, Equatable {
    public var description: String
    init(_ path: String, _ line: Int?, _ key: String, _ reason: String) {
        description = "\(path)\(line.map { ":\($0)" } ?? ""): \(key): \(reason)"
    }
}

/// How each point's load is measured.
public enum SweepMode: String, Sendable, Codable {
    /// `apus perf produce`: throughput and produce-ack latency.
    case produce
    /// `apus perf e2e`: produce and consume at once; end-to-end latency beside produce-ack.
    case e2e
}

/// Where the load goes.
public enum SweepTarget: Sendable, Equatable, Codable {
    /// A fresh `apus serve` child per point, with its own data directory and broker knobs.
    case embedded
    /// An already running Kafka-compatible broker; broker knobs cannot be swept.
    case external(bootstrap: String)
    /// A fresh cluster per point: etcd and `brokers` `apus serve` children on 127.0.0.1
    /// (cluster.metadata), the point's broker knobs on each, its topics created with
    /// `replicationFactor` replicas; the plan's faults happen during every run.
    case cluster(brokers: Int, replicationFactor: Int)
}

/// `faults:` — something done to the cluster at a time in each run (kill, stop or pause a
/// broker, the leader of a partition, or etcd), undone `forSeconds` later if given.
public struct FaultSpec: Sendable, Codable, Equatable {
    public enum Action: String, Sendable, Codable {
        /// SIGKILL: a crash. Undone by starting it again.
        case kill
        /// SIGTERM: a controlled shutdown (a broker hands its leadership off first). Undone by starting it again.
        case stop
        /// SIGSTOP: a process that stops answering but keeps its sockets. Undone by SIGCONT.
        case pause
    }

    public enum Target: Sendable, Codable, Equatable, CustomStringConvertible {
        /// Broker `node.id` N (1...brokers).
        case broker(Int)
        /// Whichever broker leads this partition of the run's topic at that moment.
        case leader(partition: Int)
        case etcd

        public var description: String {
            switch self {
            case .broker(let n): "broker:\(n)"
            case .leader(let p): "leader:\(p)"
            case .etcd: "etcd"
            }
        }

        static func parse(_ s: String) -> Target? {
            if s == "etcd" { return .etcd }
            if s.hasPrefix("broker:"), let n = Int(s.dropFirst(7)) { return .broker(n) }
            if s.hasPrefix("leader:"), let p = Int(s.dropFirst(7)) { return .leader(partition: p) }
            return nil
        }
    }

    /// Seconds from the start of the run (warm-up included).
    public var atSeconds: Double
    public var action: Action
    public var target: Target
    /// Start (kill, stop) or resume (pause) it again this long after; nil: at the end of the run.
    public var forSeconds: Double?
}

/// The load of one point, apart from client and broker knobs.
public struct SweepWorkload: Sendable, Equatable, Codable {
    public var recordSize = 100
    public var partitions = 4
    public var producers = 1
    public var durationSeconds = 5.0
    public var warmupSeconds = 1.0
    /// Target records/s over all producers; -1 for the maximum.
    public var rate = -1.0
    /// `rate: 50%`: this share of the maximum that the point with `rate: max` and otherwise the
    /// same settings measured earlier in the sweep (the median of its repeats); `rate` is set
    /// from it when the point runs.
    public var rateOfMax: Double?
    public var payload = PayloadSpec.random
    public var keys = KeySpec.none
    /// Replicas of each partition of the run's topics (target: cluster; nil: the cluster's).
    public var replicationFactor: Int?
}

/// Knee search: the highest open-loop rate whose percentile stays under the SLO.
public struct KneeSpec: Sendable, Equatable, Codable {
    public var percentile = 99.0
    public var sloMs = 10.0
    /// Bisection steps after the maximum-rate runs.
    public var iterations = 5
    /// Runs per probed rate (the median percentile decides).
    public var repeats = 1
}

/// One combination of the axes' values, with everything resolved.
public struct SweepPoint: Sendable, Codable, Equatable {
    public var index: Int
    /// Stable name built from the axis values, e.g. `p02-acks=all,batch.size=16384`.
    public var id: String
    /// The axis values of this point, in the plan's axis order.
    public var settings: [Setting]
    public var workload: SweepWorkload
    /// Producer properties (Java names) for `ProducerConfig.set`.
    public var client: [Setting]
    /// `apus serve` keys for an embedded broker.
    public var broker: [Setting]

    public struct Setting: Sendable, Codable, Equatable {
        public var key: String
        public var value: String
    }
}

/// `apus sweep PLAN.yaml`: the workload, the fixed knobs and the axes to sweep.
public struct SweepPlan: Sendable {
    public var name: String
    public var mode = SweepMode.produce
    public var target = SweepTarget.embedded
    public var repeats = 3
    public var workload = SweepWorkload()
    public var client: [SweepPoint.Setting] = []
    public var broker: [SweepPoint.Setting] = []
    public var consumer: [SweepPoint.Setting] = []
    /// `topic`: configurations given to CreateTopics for each run's topic (e.g. min.insync.replicas).
    public var topicConfigs: [SweepPoint.Setting] = []
    public var axes: [(key: String, values: [String])] = []
    public var knee: KneeSpec?
    /// `settle`: before each run, `sync` and wait until the page cache's dirty and writeback
    /// data fall below ``PageCache/settledBytes`` (default), or `none`.
    public var settle = Settle.sync
    /// `preload`: seconds of maximum-rate produce (1 MiB batches, acks=1, into a topic of its
    /// own, not measured) before each run, after settling: the run then starts on the page
    /// cache a heavy run leaves behind. nil: none.
    public var preloadSeconds: Double?
    /// `faults`, in time order (target: cluster only).
    public var faults: [FaultSpec] = []
    /// The plan file's text, kept in the bundle.
    public var source: String

    public static let workloadKeys = ["record.size", "partitions", "producers", "rate"]
    public static let clientKeys = ["acks", "batch.size", "linger.ms", "compression.type", "max.in.flight.requests.per.connection", "max.request.size", "partitioner",
                                    "enable.idempotence", "request.timeout.ms", "delivery.timeout.ms", "retry.backoff.ms", "send.waits"]
    /// Broker keys a plan must not set: the sweep owns them.
    static let reservedBrokerKeys = ["listeners", "advertised.listeners", "data.dir", "num.partitions", "auto.create.topics.enable", "loop.stall.stats.file",
                                     "cluster.metadata", "node.id"]

    /// Every combination of the axes' values, in order (the first axis varies slowest).
    public var points: [SweepPoint] {
        var combos: [[SweepPoint.Setting]] = [[]]
        for axis in axes {
            combos = combos.flatMap { prefix in axis.values.map { prefix + [SweepPoint.Setting(key: axis.key, value: $0)] } }
        }
        let width = String(combos.count - 1).count
        return combos.enumerated().map { index, settings in
            var workload = self.workload
            var client = self.client
            var broker = self.broker
            for s in settings {
                switch s.key {
                case "record.size": workload.recordSize = Int(s.value)!
                case "partitions": workload.partitions = Int(s.value)!
                case "producers": workload.producers = Int(s.value)!
                case "rate": Self.setRate(s.value, in: &workload)
                case "replication.factor": workload.replicationFactor = Int(s.value)!
                case let k where Self.clientKeys.contains(k): client.removeAll { $0.key == k }; client.append(s)
                default: broker.removeAll { $0.key == s.key }; broker.append(s)
                }
            }
            let number = String(repeating: "0", count: width - String(index).count) + String(index)
            let name = settings.isEmpty ? "base" : settings.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return SweepPoint(index: index, id: "p\(number)-\(name)", settings: settings, workload: workload, client: client, broker: broker)
        }
    }

    /// Parses and validates a plan; every error names the file, line and key.
    public init(yaml text: String, path: String) throws(PlanError) {
        source = text
        name = ""
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PlanError(path, nil, "plan", "not valid YAML: \(error)")
        }
        guard let root, root.mapping != nil else { throw PlanError(path, nil, "plan", "expected a mapping (name, workload, axes, …)") }
        func line(_ n: Node) -> Int? { n.mark?.line }
        func scalar(_ n: Node, _ key: String) throws(PlanError) -> String {
            guard let s = n.scalar?.string else { throw PlanError(path, line(n), key, "expected a single value") }
            return s
        }
        func pairs(_ n: Node, _ key: String) throws(PlanError) -> [(key: String, keyNode: Node, value: Node)] {
            guard let m = n.mapping else { throw PlanError(path, line(n), key, "expected a mapping") }
            var out: [(key: String, keyNode: Node, value: Node)] = []
            for (k, v) in m {
                guard let name = k.scalar?.string else { throw PlanError(path, line(k), key, "keys must be plain names") }
                out.append((name, k, v))
            }
            return out
        }
        var sawName = false
        var sawCluster: Int?
        var faultLines: [Int?] = []
        var axisNodes: [(key: String, node: Node)] = []
        for (key, keyNode, value) in try pairs(root, "plan") {
            switch key {
            case "name":
                name = try scalar(value, key)
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                    throw PlanError(path, line(value), key, "use letters, digits, '-', '_' or '.' (it names the result folder)")
                }
                sawName = true
            case "description": _ = try scalar(value, key)
            case "mode":
                guard let m = SweepMode(rawValue: try scalar(value, key)) else { throw PlanError(path, line(value), key, "expected produce or e2e") }
                mode = m
            case "target":
                let t = try scalar(value, key)
                if t == "embedded" {
                    target = .embedded
                } else if t == "cluster" {
                    if case .cluster = target {} else { target = .cluster(brokers: 3, replicationFactor: 3) }
                } else if t.hasPrefix("bootstrap:"), t.count > 10 {
                    target = .external(bootstrap: String(t.dropFirst(10)))
                } else {
                    throw PlanError(path, line(value), key, "expected embedded, cluster or bootstrap:HOST:PORT")
                }
            case "cluster":
                var brokers = 3, rf = 3
                for (k, kn, v) in try pairs(value, key) {
                    let s = try scalar(v, "cluster.\(k)")
                    switch k {
                    case "brokers":
                        guard let n = Int(s), (1...9).contains(n) else { throw PlanError(path, line(v), "cluster.brokers", "expected an integer in 1...9") }
                        brokers = n
                    case "replication.factor":
                        guard let n = Int(s), (1...9).contains(n) else { throw PlanError(path, line(v), "cluster.replication.factor", "expected an integer in 1...9") }
                        rf = n
                    default:
                        throw PlanError(path, line(kn), "cluster.\(k)", "unknown key (known: brokers, replication.factor)")
                    }
                }
                guard rf <= brokers else { throw PlanError(path, line(value), "cluster.replication.factor", "\(rf) replicas need at least \(rf) brokers") }
                sawCluster = line(value) ?? 0
                target = .cluster(brokers: brokers, replicationFactor: rf)
            case "faults":
                guard let seq = value.sequence else { throw PlanError(path, line(value), key, "expected a list, e.g. - {at: 5s, kill: leader:0, for: 10s}") }
                for item in seq {
                    var at: Double?, action: FaultSpec.Action?, target: FaultSpec.Target?, duration: Double?
                    for (k, kn, v) in try pairs(item, "faults") {
                        let s = try scalar(v, "faults.\(k)")
                        switch k {
                        case "at", "for":
                            guard let seconds = Self.parseSeconds(s), seconds >= 0, seconds <= 86_400 else {
                                throw PlanError(path, line(v), "faults.\(k)", "expected a duration such as 5s or 500ms, got '\(s)'")
                            }
                            if k == "at" { at = seconds } else { duration = seconds }
                        case let name where FaultSpec.Action(rawValue: name) != nil:
                            guard action == nil else { throw PlanError(path, line(kn), "faults.\(k)", "one action per fault (kill, stop or pause)") }
                            guard let t = FaultSpec.Target.parse(s) else {
                                throw PlanError(path, line(v), "faults.\(k)", "expected broker:N, leader:P (the leader of partition P) or etcd, got '\(s)'")
                            }
                            action = FaultSpec.Action(rawValue: name)
                            target = t
                        default:
                            throw PlanError(path, line(kn), "faults.\(k)", "unknown key (known: at, kill, stop, pause, for)")
                        }
                    }
                    guard let at, let action, let target else { throw PlanError(path, line(item), "faults", "a fault needs at and one of kill, stop or pause") }
                    faults.append(FaultSpec(atSeconds: at, action: action, target: target, forSeconds: duration))
                    faultLines.append(line(item))
                }
            case "repeats":
                guard let r = Int(try scalar(value, key)), (1...100).contains(r) else { throw PlanError(path, line(value), key, "expected an integer in 1...100") }
                repeats = r
            case "settle":
                guard let mode = Settle(rawValue: try scalar(value, key)) else { throw PlanError(path, line(value), key, "expected sync or none") }
                settle = mode
            case "preload":
                let s = try scalar(value, key)
                guard let seconds = Self.parseSeconds(s), seconds > 0, seconds <= 600 else {
                    throw PlanError(path, line(value), key, "expected a duration up to 10 minutes, e.g. 16s")
                }
                preloadSeconds = seconds
            case "workload":
                for (k, _, v) in try pairs(value, key) {
                    try Self.applyWorkload("workload.\(k)", try scalar(v, "workload.\(k)"), to: &workload, path: path, line: line(v))
                }
            case "client":
                for (k, kn, v) in try pairs(value, key) {
                    guard Self.clientKeys.contains(k) else { throw PlanError(path, line(kn), "client.\(k)", "unknown client knob (known: \(Self.clientKeys.joined(separator: ", ")))") }
                    let s = try scalar(v, "client.\(k)")
                    try Self.checkClient(k, s, path: path, line: line(v))
                    client.append(.init(key: k, value: s))
                }
            case "consumer":
                for (k, _, v) in try pairs(value, key) {
                    let s = try scalar(v, "consumer.\(k)")
                    var c = ConsumerConfig(bootstrap: "")
                    do { try c.set(k, s) } catch { throw PlanError(path, line(v), "consumer.\(k)", error.description) }
                    consumer.append(.init(key: k, value: s))
                }
            case "topic":
                for (k, kn, v) in try pairs(value, key) {
                    guard k.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }) else {
                        throw PlanError(path, line(kn), "topic.\(k)", "expected a topic configuration name such as min.insync.replicas")
                    }
                    topicConfigs.append(.init(key: k, value: try scalar(v, "topic.\(k)")))
                }
            case "broker":
                for (k, kn, v) in try pairs(value, key) {
                    let s = try scalar(v, "broker.\(k)")
                    try Self.checkBroker(k, s, path: path, line: line(kn))
                    broker.append(.init(key: k, value: s))
                }
            case "axes":
                for (k, kn, v) in try pairs(value, key) {
                    guard let seq = v.sequence else { throw PlanError(path, line(kn), "axes.\(k)", "expected a list of values, e.g. [1, all]") }
                    guard !seq.isEmpty else { throw PlanError(path, line(kn), "axes.\(k)", "an axis needs at least one value") }
                    var values: [String] = []
                    for item in seq {
                        let s = try scalar(item, "axes.\(k)")
                        if k == "replication.factor" {
                            guard let n = Int(s), (1...9).contains(n) else { throw PlanError(path, line(item), "axes.\(k)", "expected an integer in 1...9") }
                        } else if Self.workloadKeys.contains(k) {
                            var w = workload
                            try Self.applyWorkload("axes.\(k)", s, to: &w, path: path, line: line(item), key: k)
                        } else if Self.clientKeys.contains(k) {
                            try Self.checkClient(k, s, path: path, line: line(item))
                        } else if ServerConfig.keys.contains(where: { $0.key == k }) {
                            try Self.checkBroker(k, s, path: path, line: line(item))
                        } else {
                            throw PlanError(path, line(kn), "axes.\(k)", "unknown axis (client: \((Self.workloadKeys + Self.clientKeys).joined(separator: ", ")); broker: any apus serve key, e.g. io.backend, durability)")
                        }
                        guard !values.contains(s) else { throw PlanError(path, line(item), "axes.\(k)", "value '\(s)' appears twice") }
                        values.append(s)
                    }
                    axes.append((k, values))
                    axisNodes.append((k, kn))
                }
            case "knee":
                var spec = KneeSpec()
                for (k, kn, v) in try pairs(value, key) {
                    let s = try scalar(v, "knee.\(k)")
                    switch k {
                    case "percentile":
                        guard let p = Double(s), p > 0, p < 100 else { throw PlanError(path, line(v), "knee.percentile", "expected a percentile in (0, 100)") }
                        spec.percentile = p
                    case "slo.ms":
                        guard let v = Double(s), v > 0 else { throw PlanError(path, line(v), "knee.slo.ms", "expected a positive number of milliseconds") }
                        spec.sloMs = v
                    case "iterations":
                        guard let n = Int(s), (1...20).contains(n) else { throw PlanError(path, line(v), "knee.iterations", "expected an integer in 1...20") }
                        spec.iterations = n
                    case "repeats":
                        guard let n = Int(s), (1...20).contains(n) else { throw PlanError(path, line(v), "knee.repeats", "expected an integer in 1...20") }
                        spec.repeats = n
                    default:
                        throw PlanError(path, line(kn), "knee.\(k)", "unknown key (known: percentile, slo.ms, iterations, repeats)")
                    }
                }
                knee = spec
            default:
                throw PlanError(path, line(keyNode), key, "unknown key (known: name, description, mode, target, cluster, faults, repeats, settle, preload, workload, client, consumer, topic, broker, axes, knee)")
            }
        }
        guard sawName else { throw PlanError(path, nil, "name", "a plan needs a name (it names the result folder)") }

        // Combinations that cannot run.
        let brokerAxes = axisNodes.filter { !Self.workloadKeys.contains($0.key) && !Self.clientKeys.contains($0.key) && $0.key != "replication.factor" }
        if case .external = target {
            if let first = brokerAxes.first { throw PlanError(path, line(first.node), "axes.\(first.key)", "broker knobs cannot be swept on an external broker (target: bootstrap:…)") }
            if let first = broker.first { throw PlanError(path, nil, "broker.\(first.key)", "broker knobs need target: embedded") }
        }
        if let rfAxis = axisNodes.first(where: { $0.key == "replication.factor" }) {
            guard case .cluster(let brokers, _) = target else { throw PlanError(path, line(rfAxis.node), "axes.replication.factor", "needs target: cluster") }
            if let big = axes.first(where: { $0.key == "replication.factor" })?.values.first(where: { Int($0)! > brokers }) {
                throw PlanError(path, line(rfAxis.node), "axes.replication.factor", "\(big) replicas need at least \(big) brokers")
            }
        }
        if case .cluster(let brokers, _) = target {
            if mode == .e2e { throw PlanError(path, nil, "mode", "e2e reads from one broker; use mode: produce with target: cluster") }
            for (fault, faultLine) in zip(faults, faultLines) {
                if case .broker(let n) = fault.target, !(1...brokers).contains(n) {
                    throw PlanError(path, faultLine, "faults", "broker:\(n): the cluster has brokers 1...\(brokers)")
                }
                if case .leader(let p) = fault.target, p < 0 || points.contains(where: { p >= $0.workload.partitions }) {
                    throw PlanError(path, faultLine, "faults", "leader:\(p): no such partition in every point")
                }
                if fault.atSeconds >= workload.warmupSeconds + workload.durationSeconds {
                    throw PlanError(path, faultLine, "faults", "at \(fault.atSeconds) s is after the run's end (warm-up + duration)")
                }
            }
        } else {
            if sawCluster != nil { throw PlanError(path, sawCluster, "cluster", "needs target: cluster") }
            if !faults.isEmpty { throw PlanError(path, faultLines.first ?? nil, "faults", "faults need target: cluster (the sweep starts and breaks the brokers)") }
        }
        faults.sort { $0.atSeconds < $1.atSeconds }
        if knee != nil, let rateAxis = axisNodes.first(where: { $0.key == "rate" }) {
            throw PlanError(path, line(rateAxis.node), "axes.rate", "knee search chooses the rate itself; drop the rate axis or the knee section")
        }
        let total = axes.reduce(1) { $0 * $1.values.count }
        guard total <= 10_000 else { throw PlanError(path, nil, "axes", "\(total) points is more than 10000") }
        let all = points
        for point in all {
            if point.workload.rateOfMax != nil && Self.maximumPoint(for: point, in: all) == nil {
                throw PlanError(path, nil, "rate", "a share of the maximum (point \(point.id)) needs a rate: max point with the same other settings before it: put max first on the rate axis")
            }
            if mode == .e2e && point.workload.recordSize < 8 {
                throw PlanError(path, nil, "record.size", "e2e needs records of at least 8 bytes for the latency stamp (point \(point.id))")
            }
            if knee != nil && mode == .produce && point.client.contains(where: { $0.key == "acks" && $0.value == "0" }) {
                throw PlanError(path, nil, "acks", "acks=0 has no produce latency to search a knee on (point \(point.id)); use mode: e2e")
            }
        }
    }

    static func checkClient(_ key: String, _ value: String, path: String, line: Int?) throws(PlanError) {
        var c = ProducerConfig(bootstrap: "")
        do { try c.set(key, value) } catch { throw PlanError(path, line, key, error.description) }
    }

    static func checkBroker(_ key: String, _ value: String, path: String, line: Int?) throws(PlanError) {
        guard !reservedBrokerKeys.contains(key) else { throw PlanError(path, line, key, "set by the sweep itself (per point)") }
        var c = ServerConfig()
        do { try c.set(key, value) } catch { throw PlanError(path, line, key, error.description) }
    }

    static func applyWorkload(_ name: String, _ value: String, to w: inout SweepWorkload, path: String, line: Int?, key: String? = nil) throws(PlanError) {
        let key = key ?? String(name.dropFirst("workload.".count))
        func int(_ range: ClosedRange<Int>) throws(PlanError) -> Int {
            guard let v = Int(value), range.contains(v) else { throw PlanError(path, line, name, "expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(value)'") }
            return v
        }
        switch key {
        case "record.size": w.recordSize = try int(0...(1 << 20))
        case "partitions": w.partitions = try int(1...10_000)
        case "producers": w.producers = try int(1...64)
        case "duration", "warmup":
            guard let s = parseSeconds(value), s >= 0, s <= 86_400, key == "warmup" || s > 0 else {
                throw PlanError(path, line, name, "expected a duration such as 5s, 500ms or 2m, got '\(value)'")
            }
            if key == "duration" { w.durationSeconds = s } else { w.warmupSeconds = s }
        case "rate":
            guard setRate(value, in: &w) else {
                throw PlanError(path, line, name, "expected max, records/s such as 200000, 200k or 1.5M, or a share of the maximum such as 50%, got '\(value)'")
            }
        case "payload":
            guard let p = PayloadSpec.parse(value) else { throw PlanError(path, line, name, "expected random, text:<ratio ≥ 1> or file:<path>, got '\(value)'") }
            w.payload = p
        case "keys":
            guard let k = KeySpec.parse(value) else { throw PlanError(path, line, name, "expected none, uniform:<n> or zipf:<n>,<s>, got '\(value)'") }
            w.keys = k
        default:
            throw PlanError(path, line, name, "unknown workload key (known: record.size, partitions, producers, duration, warmup, rate, payload, keys)")
        }
    }

    /// `5`, `5s`, `500ms`, `2m` → seconds.
    public static func parseSeconds(_ s: String) -> Double? {
        if s.hasSuffix("ms") { return Double(s.dropLast(2)).map { $0 / 1000 } }
        if s.hasSuffix("s") { return Double(s.dropLast()) }
        if s.hasSuffix("m") { return Double(s.dropLast()).map { $0 * 60 } }
        return Double(s)
    }

    /// `max` → -1; `200000`, `200k`, `1.5M` → records/s.
    /// Sets an absolute rate, `max`, or a share of the maximum (`50%`); false if `s` is none.
    @discardableResult
    static func setRate(_ s: String, in w: inout SweepWorkload) -> Bool {
        if s.hasSuffix("%") {
            guard let share = Double(s.dropLast()), share > 0, share <= 100 else { return false }
            w.rate = 0
            w.rateOfMax = share / 100
            return true
        }
        guard let r = parseRate(s) else { return false }
        w.rate = r
        w.rateOfMax = nil
        return true
    }

    /// The point of `points` whose maximum a `rate: N%` point takes its rate from: same settings
    /// but for `rate: max`, earlier in the sweep.
    public static func maximumPoint(for point: SweepPoint, in points: [SweepPoint]) -> SweepPoint? {
        points.first { other in
            other.index < point.index && other.workload.rate == -1 && other.workload.rateOfMax == nil
                && other.settings.filter { $0.key != "rate" } == point.settings.filter { $0.key != "rate" }
        }
    }

    public static func parseRate(_ s: String) -> Double? {
        if s == "max" || s == "-1" { return -1 }
        var scale = 1.0
        var digits = Substring(s)
        if s.hasSuffix("k") { scale = 1e3; digits = digits.dropLast() } else if s.hasSuffix("M") { scale = 1e6; digits = digits.dropLast() }
        guard let v = Double(digits), v > 0, v * scale <= 1e9 else { return nil }
        return v * scale
    }

}

/// How a sweep settles the machine before each run.
public enum Settle: String, Sendable, Codable {
    /// `sync`, then wait for the kernel's dirty and writeback data to drain.
    case sync
    case none
}
