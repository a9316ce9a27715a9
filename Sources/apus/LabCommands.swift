import ApusClient
import ApusIO
import ApusLab
import ApusServer
import ApusStorage
import ArgumentParser
import Dispatch
import Foundation
import Logging
struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a sweep plan: every combination of its axes, each against a fresh broker, into a result bundle with a report.",
        discussion: "An interrupted sweep resumes: run the same command again (same plan, same --out). Plan format: docs/sweep-plans.md."
    )

    @Argument(help: "The plan (YAML).") var plan: String
    @Option(help: "The bundle folder (default: Results/<date>-<plan name>).") var out: String?
    @Option(help: "Where embedded brokers keep their data, one folder per point, removed after it.") var dataRoot = "apus-sweep-data"
    @Option(help: "The apus executable to start as the embedded broker (default: this one), e.g. an earlier build to compare against; its build must know the plan's broker keys.") var brokerBinary: String?
    @Flag(help: "Validate the plan, print its points and stop.") var dryRun = false

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: plan, encoding: .utf8) } catch { throw ValidationError("\(plan): cannot read it (\(error.localizedDescription))") }
        let parsed: SweepPlan
        do { parsed = try SweepPlan(yaml: text, path: plan) } catch { throw ValidationError(error.description) }
        let points = parsed.points
        if dryRun {
            print("\(parsed.name): \(points.count) points, \(parsed.repeats) repeats each")
            for p in points { print("  \(p.id)") }
            return
        }
        let bundle = out ?? Self.defaultBundle(parsed)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        if let brokerBinary, !Sys.exists(brokerBinary) { throw ValidationError("--broker-binary \(brokerBinary): no such file") }
        var options = SweepRunner.Options(apusBinary: brokerBinary ?? exe, bundleDirectory: bundle, dataRoot: dataRoot,
                                          command: (["apus"] + CommandLine.arguments.dropFirst()).joined(separator: " "))
        options.interactive = Sys.isTerminal(1)
        // Unbuffered, so that progress lines arrive as they happen in a file or pipe too.
        let out: @Sendable (String) -> Void = { line in Sys.writeText(1, line + "\n") }
        let runner = SweepRunner(plan: parsed, options: options, out: out)
        let signals = TerminationSignals {
            runner.abort()
            out("\ninterrupted; run the same command again to resume \(bundle)")
            Foundation.exit(130)
        }
        out("sweep \(parsed.name): \(points.count) points × \(parsed.repeats) repeats → \(bundle)")
        try runner.run()
        signals.keep()
    }

    /// Results/<date>-<name>; an unfinished sweep of the same plan there resumes, a finished one
    /// gets a new folder (-2, -3, …).
    static func defaultBundle(_ plan: SweepPlan) -> String {
        let date = ISO8601DateFormatter.string(from: Date(), timeZone: .current, formatOptions: [.withFullDate])
        let base = "Results/\(date)-\(plan.name)"
        var candidate = base
        var n = 1
        while let existing = try? SweepBundle(directory: candidate) {
            let samePlan = (try? String(contentsOfFile: "\(candidate)/plan.yaml", encoding: .utf8)) == plan.source
            if samePlan && existing.results.count < existing.manifest.points.count { break }
            n += 1
            candidate = "\(base)-\(n)"
        }
        return candidate
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two configurations: per-metric difference, bootstrap 95% confidence interval and a verdict (Markdown).",
        discussion: "Each side is a bundle folder or BUNDLE:POINT (a point's id, its prefix such as p03, or its index). Two bundles compare every point with the same settings."
    )

    @Argument(help: "A: the baseline.") var a: String
    @Argument(help: "B: compared against A.") var b: String
    @Option(help: "Also write the Markdown here.") var out: String?

    func run() throws {
        let md: String
        do { md = try SweepCompare.run(a, b) } catch let e as SweepCompare.CompareError { throw ValidationError(e.description) }
        print(md)
        if let out { try md.write(toFile: out, atomically: true, encoding: .utf8) }
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Regenerate a bundle's report.md and charts from its data.")

    @Argument(help: "The bundle folder.") var bundle: String

    func run() throws {
        print(try SweepReport.write(try SweepBundle(directory: bundle)))
    }
}
