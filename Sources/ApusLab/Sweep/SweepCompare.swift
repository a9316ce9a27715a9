import KafkaWire

/// `apus compare A B`: per-metric difference between two configurations' repeats, with a
/// bootstrap 95% confidence interval of the difference of means and a verdict.
public enum SweepCompare {
    public enum Verdict: String, Sendable, Equatable {
        case better = "better"
        case worse = "worse"
        case noSignificantDifference = "no significant difference"
        case tooFewRuns = "too few runs to tell"
    }

    public struct Comparison: Sendable, Equatable {
        public var meanA: Double
        public var meanB: Double
        /// mean(B) − mean(A) and its bootstrap 95% interval.
        public var difference: Double
        public var low: Double
        public var high: Double
        /// B relative to A.
        public var verdict: Verdict
        public var relative: Double { meanA == 0 ? .nan : difference / meanA }
    }

    /// Resamples each side with replacement `resamples` times; the interval is the 2.5th and
    /// 97.5th percentiles of mean(B*) − mean(A*). Deterministic for a seed.
    public static func bootstrap(a: [Double], b: [Double], higherIsBetter: Bool, resamples: Int = 10_000, seed: UInt64 = 0xC0FFEE) -> Comparison {
        let ma = a.reduce(0, +) / Double(max(a.count, 1))
        let mb = b.reduce(0, +) / Double(max(b.count, 1))
        guard a.count >= 2, b.count >= 2 else {
            return Comparison(meanA: ma, meanB: mb, difference: mb - ma, low: .nan, high: .nan, verdict: .tooFewRuns)
        }
        var rng = SplitMix64(seed: seed)
        func resampledMean(_ xs: [Double]) -> Double {
            var sum = 0.0
            for _ in 0..<xs.count { sum += xs[Int(rng.next() % UInt64(xs.count))] }
            return sum / Double(xs.count)
        }
        var diffs = [Double](repeating: 0, count: resamples)
        for i in 0..<resamples { diffs[i] = resampledMean(b) - resampledMean(a) }
        diffs.sort()
        let low = diffs[Int(Double(resamples - 1) * 0.025)]
        let high = diffs[Int(Double(resamples - 1) * 0.975)]
        let verdict: Verdict
        if low > 0 {
            verdict = higherIsBetter ? .better : .worse
        } else if high < 0 {
            verdict = higherIsBetter ? .worse : .better
        } else {
            verdict = .noSignificantDifference
        }
        return Comparison(meanA: ma, meanB: mb, difference: mb - ma, low: low, high: high, verdict: verdict)
    }

    /// The metrics compared, each as per-repeat samples of a point.
    static let metrics: [(name: String, unit: String, higherIsBetter: Bool, samples: @Sendable (PointResult) -> [Double])] = [
        ("produced records/s", "rec/s", true, { $0.repeats.map(\.produced.recordsPerSecond) }),
        ("consumed records/s", "rec/s", true, { $0.repeats.compactMap(\.consumed?.recordsPerSecond) }),
        ("produce p50", "ms", false, { $0.repeats.compactMap { $0.latency["produce.intended"]?.p50 } }),
        ("produce p99", "ms", false, { $0.repeats.compactMap { $0.latency["produce.intended"]?.p99 } }),
        ("produce p99.9", "ms", false, { $0.repeats.compactMap { $0.latency["produce.intended"]?.p999 } }),
        ("e2e p99", "ms", false, { $0.repeats.compactMap { $0.latency["e2e"]?.p99 } }),
    ]

    /// A Markdown table comparing point B against point A.
    public static func markdown(a: PointResult, aName: String, b: PointResult, bName: String) -> String {
        var md = "### B = \(bName) vs A = \(aName)\n\n"
        md += "| metric | A mean | B mean | B − A | 95% CI (bootstrap) | verdict for B |\n|---|---|---|---|---|---|\n"
        for metric in metrics {
            let sa = metric.samples(a), sb = metric.samples(b)
            guard !sa.isEmpty, !sb.isEmpty else { continue }
            let c = bootstrap(a: sa, b: sb, higherIsBetter: metric.higherIsBetter)
            func v(_ x: Double) -> String { x.isFinite ? (metric.unit == "ms" ? SweepReport.ms(x) : SVGChart.number(x)) : "–" }
            let rel = c.relative.isFinite ? String(format: " (%+.1f%%)", c.relative * 100) : ""
            md += "| \(metric.name) | \(v(c.meanA)) \(metric.unit) | \(v(c.meanB)) \(metric.unit) | \(c.difference >= 0 ? "+" : "")\(v(c.difference))\(rel) | "
            md += "[\(v(c.low)), \(v(c.high))] | \(c.verdict.rawValue) |\n"
        }
        md += "\nA: \(a.repeats.count) runs, B: \(b.repeats.count) runs. With few runs a bootstrap interval is narrower than it should be; treat a verdict from 3 runs as a hint and confirm with more repeats.\n"
        return md
    }

    public struct CompareError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `BUNDLE` or `BUNDLE:POINT` for each side. Two bundles: every point found in both (by its
    /// settings). Two points (of the same bundle or of two): just those.
    public static func run(_ a: String, _ b: String) throws -> String {
        func split(_ s: String) throws -> (SweepBundle, String?) {
            if let colon = s.lastIndex(of: ":"), !s[s.index(after: colon)...].contains("/") {
                return (try SweepBundle(directory: String(s[..<colon])), String(s[s.index(after: colon)...]))
            }
            return (try SweepBundle(directory: s), nil)
        }
        let (ba, pa) = try split(a)
        let (bb, pb) = try split(b)
        var md = "# Compare\n\n- A: `\(a)` (\(ba.manifest.name), revision `\(ba.manifest.revision)`, \(ba.manifest.created))\n"
        md += "- B: `\(b)` (\(bb.manifest.name), revision `\(bb.manifest.revision)`, \(bb.manifest.created))\n\n"
        if pa != nil || pb != nil || (ba.results.count == 1 && bb.results.count == 1) {
            func pick(_ bundle: SweepBundle, _ name: String?, _ arg: String) throws -> PointResult {
                if let name {
                    guard let r = bundle.result(named: name) else { throw CompareError(description: "\(arg): no finished point named \(name)") }
                    return r
                }
                guard bundle.results.count == 1 else { throw CompareError(description: "\(arg): the bundle has \(bundle.results.count) points; name one as BUNDLE:POINT") }
                return bundle.results[0]
            }
            let ra = try pick(ba, pa, a), rb = try pick(bb, pb, b)
            md += markdown(a: ra, aName: "\(ra.point.id)", b: rb, bName: "\(rb.point.id)")
            return md
        }
        var matched = 0
        for ra in ba.results {
            let key = SweepReport.label(ra.point)
            guard let rb = bb.results.first(where: { SweepReport.label($0.point) == key }) else { continue }
            md += markdown(a: ra, aName: "A", b: rb, bName: "B at `\(key)`") + "\n"
            matched += 1
        }
        guard matched > 0 else { throw CompareError(description: "no point of \(a) has the same settings as a point of \(b); compare BUNDLE:POINT pairs") }
        return md
    }
}
