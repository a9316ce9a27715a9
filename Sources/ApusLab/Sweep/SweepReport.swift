import Foundation
import Histogram

/// `report.md` and `charts/*.svg` of a bundle, regenerated from its JSON alone (`apus report`).
public enum SweepReport {
    /// Per point: medians over the repeats.
    struct Row {
        var result: PointResult
        var produced: Double
        var consumed: Double?
        var p50: Double
        var p99: Double
        var p999: Double
        var e2eP99: Double?
        var errors: UInt64
        /// Median share of CPU time the hypervisor took for other guests during the runs.
        var steal: Double
        /// Produce latency (intended) of all repeats merged.
        var merged: Histogram<UInt64>?
    }

    static func rows(_ bundle: SweepBundle) -> [Row] {
        bundle.results.map { r in
            let lat = r.repeats.compactMap { $0.latency["produce.intended"] }
            var merged: Histogram<UInt64>?
            for l in lat {
                guard let h = try? HistogramCodec.decodeBase64(l.histogram) else { continue }
                if merged == nil { merged = h } else { merged!.add(h) }
            }
            let consumed = r.repeats.compactMap(\.consumed).map(\.recordsPerSecond)
            let e2e = r.repeats.compactMap { $0.latency["e2e"]?.p99 }
            return Row(result: r, produced: median(r.repeats.map(\.produced.recordsPerSecond)),
                       consumed: consumed.isEmpty ? nil : median(consumed), p50: median(lat.map(\.p50)), p99: median(lat.map(\.p99)),
                       p999: median(lat.map(\.p999)), e2eP99: e2e.isEmpty ? nil : median(e2e),
                       errors: r.repeats.reduce(0) { $0 + $1.produced.errors },
                       steal: median(r.repeats.compactMap { $0.hostCPU?.stealPercent }), merged: merged)
        }
    }

    /// One line per point whose probes contradict each other (a lower rate failed where a
    /// higher one passed): that knee was measured out of a steady state.
    static func kneeWarnings(_ knees: [(point: String, knee: KneeResult)]) -> String {
        var md = ""
        for (point, knee) in knees {
            for (failed, passed) in knee.contradictions {
                md += "\n- ⚠ \(point): not in a steady state — \(SVGChart.number(failed.targetRate)) records/s\(failed.confirmation == true ? " (the confirmation)" : "") "
                md += "missed the SLO (p\(SVGChart.trim(knee.percentile)) \(ms(failed.latencyMs)) ms) where \(SVGChart.number(passed.targetRate)) records/s "
                md += "met it (\(ms(passed.latencyMs)) ms); see the broker stalls and page-cache columns above."
            }
        }
        return md.isEmpty ? "" : md + "\n"
    }

    /// The broker's stalls over a point's runs: their number, the longest and why it was long,
    /// the count by cause when the bundle has it, and the shard-thread contract's declared
    /// exceptions taken (a roll without a spare, …) when there were any (– without data).
    static func stallSummary(_ runs: [RunRecord]) -> String {
        let stalls = runs.compactMap(\.brokerStalls)
        guard !stalls.isEmpty else { return "–" }
        let longest = stalls.filter { $0.longestMs != nil }.max { $0.longestMs! < $1.longestMs! }
        var text = "\(stalls.reduce(0) { $0 + $1.stalls })"
        if let longest, let longestMs = longest.longestMs { text += " (\(ms(longestMs))\(longest.longestCause.map { ", \($0)" } ?? ""))" }
        let byCause = stalls.compactMap(\.byCause).reduce(into: [String: Int]()) { $0.merge($1, uniquingKeysWith: +) }
        if !byCause.isEmpty { text += ": " + byCause.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") }
        let declared = stalls.compactMap(\.declaredDiskWaits).reduce(0) { $0 + $1.values.reduce(0, +) }
        if declared > 0 { text += "; \(declared) declared disk wait\(declared == 1 ? "" : "s") on shards" }
        return text
    }

    /// The largest dirty + writeback page cache at the start of a point's runs, and the most
    /// the page cache grew during one (where recorded).
    static func dirtySummary(_ runs: [RunRecord]) -> String {
        let states = runs.compactMap { $0.pageCache?.atStart }
        guard !states.isEmpty else { return "–" }
        let dirty = String(states.map { ($0.dirtyBytes + $0.writebackBytes) >> 20 }.max()!)
        guard let growth = cacheGrowth(runs).max() else { return dirty }
        return dirty + String(format: "; %@%.1f GiB", growth < 0 ? "" : "+", growth)
    }

    /// How much each run grew the page cache (`Cached` at its end minus at its start, GiB).
    static func cacheGrowth(_ runs: [RunRecord]) -> [Double] {
        runs.compactMap { run in
            guard let from = run.pageCache?.atStart?.cachedBytes, let to = run.pageCache?.atEnd?.cachedBytes else { return nil }
            return (Double(to) - Double(from)) / Double(1 << 30)
        }
    }

    static func label(_ p: SweepPoint) -> String {
        p.settings.isEmpty ? "base" : p.settings.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    static func short(_ p: SweepPoint) -> String { "p\(p.index)" }

    static func ms(_ v: Double) -> String { v.isFinite ? String(format: v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v) : "–" }

    static func millions(_ v: Double) -> String { v.isFinite ? String(format: "%.2f", v / 1e6) : "–" }

    /// Writes report.md and the charts; returns the report's path.
    @discardableResult
    public static func write(_ bundle: SweepBundle) throws -> String {
        let dir = bundle.directory
        let charts = "\(dir)/charts"
        try FileManager.default.createDirectory(atPath: charts, withIntermediateDirectories: true)
        let m = bundle.manifest
        let rows = rows(bundle)
        var md = "# Sweep `\(m.name)`\n\n"
        md += "- Run: \(m.created), revision `\(m.revision)`\n"
        md += "- Machine: \(m.machine.summary) (host `\(m.machine.hostname)`)\n"
        md += "- Command: `\(m.command)`\n"
        let w = m.workload
        let target: String
        switch m.target {
        case .embedded: target = "a fresh embedded `apus serve` per point"
        case .external(let b): target = "the external broker at \(b)"
        case .cluster(let n, let rf):
            target = "a fresh cluster per point (etcd and \(n) `apus serve` brokers on 127.0.0.1, sharing this machine's CPUs; "
                + "topics with \(rf) replica\(rf == 1 ? "" : "s") of each partition)"
        }
        md += "- Mode: \(m.mode.rawValue) against \(target); \(m.repeats) repeats per point of \(SVGChart.trim(w.durationSeconds)) s after "
        md += "\(SVGChart.trim(w.warmupSeconds)) s warm-up; \(w.recordSize)-byte records, \(w.partitions) partitions, \(w.producers) producer(s), "
        md += "rate \(w.rate > 0 ? SVGChart.number(w.rate) + " records/s" : "max"), payload \(w.payload), keys \(w.keys) (unless an axis says otherwise)\n"
        md += "- Points: \(rows.count) of \(m.points.count) finished; axes: "
        md += m.axes.isEmpty ? "none\n" : m.axes.map { "`\($0.key)` ∈ {\($0.values.joined(separator: ", "))}" }.joined(separator: ", ") + "\n"
        md += "\nLatency is produce-ack latency from each batch's intended send time (coordinated-omission corrected), "
        md += "per batch weighted by its records; figures are medians over the repeats. The raw runs, their HDR histograms "
        md += "(in `result.json`; per interval in `run-N.hlog`) and each broker's log and effective configuration are under `points/`. "
        let preloads = bundle.results.flatMap(\.repeats).compactMap { run in run.pageCache?.preloadSeconds.map { ($0, run.pageCache?.preloadRecordsPerSecond ?? 0) } }
        if let first = preloads.first {
            md += "Every run followed \(SVGChart.trim(first.0)) s of maximum-rate produce (1 MiB batches, acks=1; the plan's `preload`, "
            md += "reaching \(millions(preloads.map(\.1).min()!))–\(millions(preloads.map(\.1).max()!)) M records/s): it starts on the page cache a heavy run leaves. "
        }
        md += "CPU steal is the share of the host's CPU time the hypervisor gave to other guests during the runs: "
        md += "where it is high, the numbers say more about the neighbours than about the configuration. "
        md += "A broker stall is a shard turn longer than its `loop.stall.warn.ms`; its cause comes from the shard thread's CPU time and context switches in the turn: "
        md += "`on-cpu` (it ran most of the turn: the work itself), `blocked` (it slept in a call: the disk, a lock, a page fault), "
        md += "`preempted` (it was runnable and another task had the CPU: the load generator, the kernel's writeback workers), "
        md += "`stolen` (it lost the time without a switch: the hypervisor ran another guest on its vCPU, or interrupts were handled)."
        let growthRecorded = bundle.results.contains { !cacheGrowth($0.repeats).isEmpty }
        if growthRecorded {
            md += " The page cache's growth (beside the dirty data at the start: the most in one run) is how much the kernel's `Cached` rose during the run: writes that "
            md += "landed in memory the machine was not using rather than in recycled pages — on a VM whose host takes free memory back "
            md += "(free page reporting) several times slower, so a run that grows the cache measures that as well as the broker."
        }
        md += "\n\n"

        guard !rows.isEmpty else {
            md += "No point has finished yet.\n"
            try md.write(toFile: "\(dir)/report.md", atomically: true, encoding: .utf8)
            return "\(dir)/report.md"
        }
        // Headline.
        let best = rows.max { $0.produced < $1.produced }!
        let fastest = rows.min { $0.p99 < $1.p99 }!
        md += "## Headline\n\n"
        md += "- Highest throughput: **\(millions(best.produced)) M records/s** at p99 \(ms(best.p99)) ms — `\(label(best.result.point))`\n"
        md += "- Lowest p99: **\(ms(fastest.p99)) ms** at \(millions(fastest.produced)) M records/s — `\(label(fastest.result.point))`\n"
        let knees = rows.compactMap { r in r.result.knee.map { (r, $0) } }
        if let bestKnee = knees.max(by: { ($0.1.kneeRate ?? 0) < ($1.1.kneeRate ?? 0) }) {
            let k = bestKnee.1
            md += "- Knee (p\(SVGChart.trim(k.percentile)) ≤ \(SVGChart.trim(k.sloMs)) ms): highest sustainable rate "
            md += k.kneeRate.map { "**\(millions($0)) M records/s**" } ?? "none found"
            md += " — `\(label(bestKnee.0.result.point))`\n"
        }
        let failures = rows.filter { $0.errors > 0 || ($0.result.brokerExitStatus ?? 0) != 0 }
        for f in failures {
            md += "- ⚠ `\(label(f.result.point))`: \(f.errors) records failed; broker exit status \(f.result.brokerExitStatus.map(String.init) ?? "n/a")\n"
        }
        md += "\n![throughput vs latency](charts/throughput-latency.svg)\n\n"

        // Table.
        md += "## Points\n\n"
        var header = "| point | settings | produced M rec/s (min–max) |"
        var rule = "|---|---|---|"
        if m.mode == .e2e {
            header += " consumed M rec/s | e2e p99 ms |"
            rule += "---|---|"
        }
        header += " p50 ms | p99 ms | p99.9 ms | errors | CPU steal % | broker stalls (longest ms, why): by cause | dirty+writeback MiB at start\(growthRecorded ? "; page cache growth" : "") |"
        rule += "---|---|---|---|---|---|---|"
        if m.knee != nil {
            header += " knee M rec/s |"
            rule += "---|"
        }
        md += header + "\n" + rule + "\n"
        for r in rows {
            let rates = r.result.repeats.map(\.produced.recordsPerSecond)
            var line = "| \(short(r.result.point)) | \(label(r.result.point)) | \(millions(r.produced)) (\(millions(rates.min() ?? .nan))–\(millions(rates.max() ?? .nan))) |"
            if m.mode == .e2e { line += " \(millions(r.consumed ?? .nan)) | \(ms(r.e2eP99 ?? .nan)) |" }
            line += " \(ms(r.p50)) | \(ms(r.p99)) | \(ms(r.p999)) | \(r.errors) | \(r.steal.isFinite ? String(format: "%.0f", r.steal) : "–") |"
            line += " \(stallSummary(r.result.repeats)) | \(dirtySummary(r.result.repeats)) |"
            if m.knee != nil { line += " \(r.result.knee?.kneeRate.map(millions) ?? "none") |" }
            md += line + "\n"
        }

        // Inside the broker.
        let views = rows.filter { !$0.result.repeats.compactMap(\.broker).isEmpty }
        if !views.isEmpty {
            md += "\n## Inside the broker\n\n"
            md += "The embedded broker's own figures for the same runs (its metrics endpoint scraped at each run's start and end; medians over the repeats): "
            md += "produce requests from arrival to response ready, the group commits' writes and syncs, and the share of each shard's time spent working. "
            md += "Client-side latency is shown twice: from each record's intended send time, which also holds the time the load generator ran behind its schedule "
            md += "(held back while its connection was full, then catching up), and from the first send of the record's batch, which holds only the request's round trip "
            md += "and its wait for room on the connection. A tail in the first and not in the second was made in the client.\n\n"
            md += "| point | client p99 / p99.9 ms, from intended send | from first send | broker produce mean / p99 ms | p99 in handler / waiting / sending ms | write mean / p99 ms | syncs, p99 ms | shard busy % |\n|---|---|---|---|---|---|---|---|\n"
            func pair(_ a: [Double?], _ b: [Double?]) -> String {
                let x = a.compactMap { $0 }, y = b.compactMap { $0 }
                return x.isEmpty ? "–" : "\(ms(median(x))) / \(y.isEmpty ? "–" : ms(median(y)))"
            }
            for r in views {
                let v = r.result.repeats.compactMap(\.broker)
                let syncs = median(v.map(\.syncs))
                let busy = (0..<(v.map(\.shardBusy.count).max() ?? 0)).map { i in
                    String(format: "%.0f", 100 * median(v.compactMap { $0.shardBusy.count > i ? $0.shardBusy[i] : nil }))
                }.joined(separator: ", ")
                let parts = [v.compactMap(\.produceHandlerP99Ms), v.compactMap(\.produceWaitP99Ms), v.compactMap(\.produceSendP99Ms)]
                    .map { $0.isEmpty ? "–" : ms(median($0)) }.joined(separator: " / ")
                let intended = r.result.repeats.compactMap { $0.latency["produce.intended"] }
                let sent = r.result.repeats.compactMap { $0.latency["produce.send"] }
                md += "| \(r.result.point.id.split(separator: "-").first ?? "") | \(pair(intended.map(\.p99), intended.map(\.p999))) | \(pair(sent.map(\.p99), sent.map(\.p999))) | "
                md += "\(pair(v.map(\.produceMeanMs), v.map(\.produceP99Ms))) | \(parts) | "
                md += "\(pair(v.map(\.writeMeanMs), v.map(\.writeP99Ms))) | \(syncs > 0 ? "\(Int(syncs)), \(v.compactMap(\.syncP99Ms).isEmpty ? "–" : ms(median(v.compactMap(\.syncP99Ms))))" : "0") | \(busy) |\n"
            }
        }

        // Axis effects.
        let effects = axisEffects(m, rows)
        if !effects.isEmpty {
            md += "\n## Effect of each axis\n\n"
            md += "Median over the points that share each value (other axes vary within the group).\n\n"
            md += "| axis | value | points | produced M rec/s | p99 ms |\n|---|---|---|---|---|\n"
            for e in effects {
                for v in e.values { md += "| `\(e.axis)` | \(v.value) | \(v.count) | \(millions(v.rate)) | \(ms(v.p99)) |\n" }
            }
            md += "\n![effect of each axis](charts/axis-effects.svg)\n"
            let svg = SVGChart.bars(
                title: "Median throughput per axis value (label: median p99)", yLabel: "records/s",
                panels: effects.map { e in (e.axis, e.values.map { ($0.value, $0.rate, "p99 \(ms($0.p99)) ms") }) })
            try svg.write(toFile: "\(charts)/axis-effects.svg", atomically: true, encoding: .utf8)
        }

        // Knee curves.
        if !knees.isEmpty {
            md += "\n## Knee search\n\n"
            md += "Bisection of the open-loop rate between 0 and the maximum rate measured by the repeats; a probe passes when its "
            md += "p\(SVGChart.trim(m.knee!.percentile)) stays within \(SVGChart.trim(m.knee!.sloMs)) ms and no record failed. "
            md += "(The maximum-rate runs are not probes: sent as fast as possible, a batch is intended when it can be sent, "
            md += "so their latency is closed-loop.)\n\n"
            md += "| point | target rec/s | achieved rec/s | p50 ms | p99 ms | p99.9 ms | within SLO |\n|---|---|---|---|---|---|---|\n"
            for (r, k) in knees {
                for p in k.probes {
                    md += "| \(short(r.result.point))\(p.confirmation == true ? " (confirmation)" : "") | \(SVGChart.number(p.targetRate)) | \(SVGChart.number(p.recordsPerSecond)) | \(ms(p.p50Ms)) | \(ms(p.p99Ms)) | \(ms(p.p999Ms)) | \(p.withinSLO ? "yes" : "no") |\n"
                }
            }
            md += kneeWarnings(knees.map { (short($0.0.result.point), $0.1) })
        }

        // Charts: throughput vs latency, latency spectra.
        var tl = SVGChart(title: "Throughput vs produce latency", xLabel: "records/s produced", yLabel: "latency (ms, log)", yLog: true)
        if !knees.isEmpty {
            for (r, k) in knees.prefix(SVGChart.palette.count) {
                tl.series.append(.init(name: "\(short(r.result.point)) p\(SVGChart.trim(k.percentile))",
                                       points: k.probes.map { ($0.recordsPerSecond, $0.latencyMs) }))
                if let rate = k.kneeRate, let p = k.probes.first(where: { $0.targetRate == rate }) {
                    tl.markers.append(.init(x: p.recordsPerSecond, y: p.latencyMs, label: "knee \(short(r.result.point))"))
                }
            }
            tl.horizontalLines = [(m.knee!.sloMs, "SLO \(SVGChart.trim(m.knee!.sloMs)) ms")]
        } else {
            tl.series.append(.init(name: "p99 per point", points: rows.map { ($0.produced, $0.p99) }, lines: false))
            tl.series.append(.init(name: "p99.9 per point", points: rows.map { ($0.produced, $0.p999) }, lines: false))
        }
        try tl.render().write(toFile: "\(charts)/throughput-latency.svg", atomically: true, encoding: .utf8)

        var spectrum = SVGChart(title: "Produce latency by percentile (all repeats merged)", xLabel: "percentile",
                                yLabel: "latency (ms, log)", yLog: true)
        let nines: [(Double, String)] = [(0, "0"), (1, "90"), (2, "99"), (3, "99.9"), (4, "99.99"), (5, "99.999")]
        spectrum.xTicks = nines.map { (value: $0.0, label: $0.1) }
        // Every point when they fit; otherwise the five fastest and the five with the lowest p99.
        var shown = rows
        if rows.count > SVGChart.palette.count {
            let picks = Set(rows.sorted { $0.produced > $1.produced }.prefix(5).map(\.result.point.index)
                + rows.sorted { $0.p99 < $1.p99 }.prefix(5).map(\.result.point.index))
            shown = rows.filter { picks.contains($0.result.point.index) }
        }
        for r in shown.prefix(SVGChart.palette.count) {
            guard let h = r.merged, h.totalCount > 0 else { continue }
            var pts: [(x: Double, y: Double)] = []
            var x = 0.0
            while x <= 5.0001 {
                let p = 100 * (1 - pow(10, -x))
                pts.append((x, Double(h.valueAtPercentile(p)) / 1e6))
                x += 0.1
            }
            spectrum.series.append(.init(name: "\(short(r.result.point)) \(label(r.result.point))", points: pts, dots: false))
        }
        try spectrum.render().write(toFile: "\(charts)/latency-spectrum.svg", atomically: true, encoding: .utf8)
        md += "\n## Latency spectra\n\n"
        if rows.count > SVGChart.palette.count { md += "The five points with the highest throughput and the five with the lowest p99.\n\n" }
        md += "![latency by percentile](charts/latency-spectrum.svg)\n"
        md += try overTime(rows, charts: charts)
        try md.write(toFile: "\(dir)/report.md", atomically: true, encoding: .utf8)
        return "\(dir)/report.md"
    }

    /// One small chart per point: p50, p99 and max of produce latency in each reporting
    /// interval of every run, so a periodic stall is a spike, not a shifted percentile.
    static func overTime(_ rows: [Row], charts: String) throws -> String {
        let withData = rows.filter { $0.result.repeats.contains { !($0.overTime ?? []).isEmpty } }
        guard !withData.isEmpty else { return "" }
        var md = "\n## Latency over time\n\nPer reporting interval of each run (produce latency from the intended send time; "
        md += "x: seconds from the start of the run, warm-up included).\n\n"
        for r in withData {
            var chart = SVGChart(title: "\(short(r.result.point)) \(label(r.result.point)): latency per interval", xLabel: "seconds",
                                 yLabel: "latency (ms, log)", yLog: true)
            chart.height = 300
            for (i, run) in r.result.repeats.enumerated() {
                guard let intervals = run.overTime, !intervals.isEmpty else { continue }
                let name = r.result.repeats.count > 1 ? " run \(i + 1)" : ""
                let answered = intervals.filter { $0.count > 0 }
                chart.series.append(.init(name: "max" + name, points: answered.map { ($0.startSeconds, $0.maxMs) }, dots: false, dashed: true))
                chart.series.append(.init(name: "p99" + name, points: answered.map { ($0.startSeconds, $0.p99Ms) }, dots: false))
                chart.series.append(.init(name: "p50" + name, points: answered.map { ($0.startSeconds, $0.p50Ms) }, dots: false))
                for (series, value) in [("steal ms", \IntervalSummary.stealMs), ("generator lag ms", \.generatorLagMs)] {
                    let points = intervals.compactMap { i in i[keyPath: value].flatMap { $0 > 0 ? (i.startSeconds, $0) : nil } }
                    if !points.isEmpty { chart.series.append(.init(name: series + name, points: points, dots: true)) }
                }
            }
            chart.verticalLines = faultLines(r.result)
            let file = "over-time-\(r.result.point.id).svg"
            try chart.render().write(toFile: "\(charts)/\(file)", atomically: true, encoding: .utf8)
            md += "![\(short(r.result.point)) over time](charts/\(file))\n"
            md += stealSummary(r.result)
            md += lagSummary(r.result)
            if r.result.repeats.contains(where: { !($0.faults ?? []).isEmpty }) { md += try faults(r, charts: charts) }
        }
        return md
    }

    /// How the intervals in which the hypervisor took a vCPU away for 10 ms or more compare with
    /// the others: a tail that lives in those seconds is the host's, not the broker's.
    static func stealSummary(_ result: PointResult) -> String {
        secondsApart(result, \.stealMs, atLeast: 10, "Seconds in which one vCPU lost 10 ms or more to the hypervisor (steal)")
            .map { "\n" + $0 } ?? ""
    }

    /// How the intervals in which the load generator fell 5 ms or more behind its open-loop
    /// schedule compare with the others: latency from the intended send that accrued there is
    /// the generator's (on a small machine it shares the CPUs with the broker), not a request's.
    static func lagSummary(_ result: PointResult) -> String {
        guard result.repeats.contains(where: { ($0.overTime ?? []).contains { ($0.generatorLagMs ?? 0) > 0 } }) else { return "" }
        return secondsApart(result, \.generatorLagMs, atLeast: 5, "Seconds in which the load generator fell 5 ms or more behind its schedule",
                            showWorst: true) ?? ""
    }

    /// A point's reporting intervals in which `value` reached `threshold` against the others:
    /// how many, and, when there are both, the medians of their max and p99 latency (nil when no
    /// interval has the value).
    static func secondsApart(_ result: PointResult, _ value: KeyPath<IntervalSummary, Double?>, atLeast threshold: Double,
                             _ what: String, showWorst: Bool = false) -> String? {
        let intervals: [IntervalSummary] = result.repeats.flatMap { $0.overTime ?? [] }.filter { $0.count > 0 && $0[keyPath: value] != nil }
        guard !intervals.isEmpty else { return nil }
        let hit = intervals.filter { $0[keyPath: value]! >= threshold }, others = intervals.filter { $0[keyPath: value]! < threshold }
        var line = "\(what): \(hit.count) of \(intervals.count)"
        if showWorst, let worst = hit.compactMap({ $0[keyPath: value] }).max() { line += " (at worst \(ms(worst)) ms)" }
        if !hit.isEmpty && !others.isEmpty {
            line += "; their max latency, median \(ms(median(hit.map(\.maxMs)))) ms (p99 \(ms(median(hit.map(\.p99Ms)))) ms), "
            line += "the other seconds' \(ms(median(others.map(\.maxMs)))) ms (p99 \(ms(median(others.map(\.p99Ms)))) ms)"
        }
        return line + ".\n\n"
    }

    /// The faults of a point's runs as dashed vertical lines (the same event in several runs once).
    static func faultLines(_ result: PointResult) -> [(x: Double, label: String)] {
        var lines: [(x: Double, label: String)] = []
        for event in result.repeats.flatMap({ $0.faults ?? [] }) where !event.event.hasPrefix("after the run") {
            let label = event.event.replacingOccurrences(of: "broker ", with: "b").components(separatedBy: " (").first ?? event.event
            if !lines.contains(where: { $0.label == label && abs($0.x - event.atSeconds) < 1 }) { lines.append((event.atSeconds, label)) }
        }
        return lines
    }

    /// A point with faults: records acknowledged per interval (a failover is a gap, not only a
    /// latency spike) and what was done when, per run.
    static func faults(_ r: Row, charts: String) throws -> String {
        var chart = SVGChart(title: "\(short(r.result.point)) \(label(r.result.point)): acknowledged records/s", xLabel: "seconds",
                             yLabel: "records/s")
        chart.height = 260
        for (i, run) in r.result.repeats.enumerated() {
            guard let intervals = run.overTime, !intervals.isEmpty else { continue }
            let points = intervals.map { ($0.startSeconds, Double($0.count) / max($0.lengthSeconds ?? 1, 1e-3)) }
            chart.series.append(.init(name: r.result.repeats.count > 1 ? "run \(i + 1)" : "records/s", points: points, dots: false))
        }
        chart.verticalLines = faultLines(r.result)
        let file = "acked-\(r.result.point.id).svg"
        try chart.render().write(toFile: "\(charts)/\(file)", atomically: true, encoding: .utf8)
        var md = "![\(short(r.result.point)) acknowledged records per second](charts/\(file))\n\n"
        md += "| run | s | fault |\n|---|---|---|\n"
        for (i, run) in r.result.repeats.enumerated() {
            for e in run.faults ?? [] { md += "| \(i + 1) | \(String(format: "%.2f", e.atSeconds)) | \(e.event) |\n" }
        }
        let failed = r.result.repeats.map(\.produced.errors)
        md += "\nRecords reported failed to the producer, per run: \(failed.map(String.init).joined(separator: ", ")) "
        md += "(after retries within the client's `delivery.timeout.ms`).\n\n"
        return md
    }

    struct AxisEffect {
        var axis: String
        var values: [(value: String, count: Int, rate: Double, p99: Double)]
    }

    static func axisEffects(_ m: BundleManifest, _ rows: [Row]) -> [AxisEffect] {
        m.axes.filter { $0.values.count > 1 }.map { axis in
            AxisEffect(axis: axis.key, values: axis.values.map { value in
                let group = rows.filter { r in r.result.point.settings.contains { $0.key == axis.key && $0.value == value } }
                return (value, group.count, median(group.map(\.produced)), median(group.map(\.p99)))
            })
        }
    }
}
