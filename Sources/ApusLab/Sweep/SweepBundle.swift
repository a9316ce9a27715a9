import Foundation

/// The top of a result bundle (`bundle.json`): what was run, where, by which code.
public struct BundleManifest: Codable, Sendable {
    public var name: String
    public var created: String
    public var revision: String
    public var machine: MachineFingerprint
    public var command: String
    public var mode: SweepMode
    public var target: SweepTarget
    public var repeats: Int
    public var workload: SweepWorkload
    public var knee: KneeSpec?
    public var axes: [Axis]
    public var points: [SweepPoint]

    public struct Axis: Codable, Sendable, Equatable {
        public var key: String
        public var values: [String]
    }
}

/// One rate tried by the knee search.
public struct KneeProbe: Codable, Sendable, Equatable {
    public var targetRate: Double
    /// Median over the probe's runs.
    public var recordsPerSecond: Double
    /// The searched percentile of produce latency from the intended send time (median of runs).
    public var latencyMs: Double
    public var p50Ms: Double
    public var p99Ms: Double
    public var p999Ms: Double
    public var withinSLO: Bool
    /// A confirmation of the knee after the bisection (not a bisection step).
    public var confirmation: Bool?
}

public struct KneeResult: Codable, Sendable, Equatable {
    public var percentile: Double
    public var sloMs: Double
    /// Median records/s of the maximum-rate runs: the top of the search.
    public var maxRate: Double
    /// The highest probed rate within the SLO whose confirmation also was; nil if none was.
    public var kneeRate: Double?
    public var probes: [KneeProbe]

    /// Probes that contradict each other: a rate that missed the SLO at or below a rate that
    /// met it (the knee's confirmation failing included). Bisection assumes latency grows
    /// with the rate; where it did not, the system was not in a steady state (page-cache
    /// writeback, a stall, a noisy neighbour) and the knee is not to be trusted.
    public var contradictions: [(failed: KneeProbe, passed: KneeProbe)] {
        var found: [(KneeProbe, KneeProbe)] = []
        for failed in probes where !failed.withinSLO {
            if let passed = probes.filter({ $0.withinSLO && $0.targetRate >= failed.targetRate }).max(by: { $0.targetRate < $1.targetRate }) {
                found.append((failed, passed))
            }
        }
        return found
    }
}

/// Everything measured at one point (`points/<id>/result.json`; written last, so its presence
/// marks the point done when a sweep resumes).
public struct PointResult: Codable, Sendable {
    public var point: SweepPoint
    /// Effective `apus serve` settings (every key; nil for an external broker).
    public var brokerConfig: [SweepPoint.Setting]?
    public var producerConfig: [String: String]
    public var consumerConfig: [String: String]?
    public var repeats: [RunRecord]
    public var knee: KneeResult?
    /// Exit status of the embedded broker after SIGTERM (0: clean).
    public var brokerExitStatus: Int32?
    public var seconds: Double
}

/// A bundle on disk: `bundle.json`, `plan.yaml`, `points/<id>/…`, `report.md`, `charts/`.
public struct SweepBundle {
    public let directory: String
    public var manifest: BundleManifest
    /// Finished points in plan order.
    public var results: [PointResult]

    public static func pointDirectory(_ bundle: String, _ id: String) -> String { "\(bundle)/points/\(id)" }

    public init(directory: String) throws {
        self.directory = directory
        manifest = try LabJSON.decode(BundleManifest.self, from: "\(directory)/bundle.json")
        results = manifest.points.compactMap { point in
            try? LabJSON.decode(PointResult.self, from: "\(Self.pointDirectory(directory, point.id))/result.json")
        }
    }

    /// The point (by id, or by index as `p03` / `3`) a compare argument names.
    public func result(named name: String) -> PointResult? {
        if let r = results.first(where: { $0.point.id == name }) { return r }
        let digits = name.hasPrefix("p") ? String(name.dropFirst()) : name
        if let i = Int(digits) { return results.first { $0.point.index == i } }
        return results.first { $0.point.id.hasPrefix(name + "-") }
    }
}
