import ApusIO
import Foundation
import Synchronization

/// What a shard turn was doing; a stall is attributed to the phase that took longest.
enum TurnPhase: Int, CaseIterable, Sendable {
    case jobs, read, commit, send, maintenance
    var name: String { ["jobs", "read+handlers", "commit+completions", "send", "maintenance"][rawValue] }
}

/// Why a stalled turn took long, from the thread's CPU time and context switches in it: it ran
/// (most of the turn on the CPU: the work itself), it slept in a call (a voluntary switch: the
/// disk, a lock, a page fault), it was runnable and another task had the CPU (preempted: on a
/// small VM the load generator or the kernel's writeback workers), or it lost the time without
/// any switch (stolen: the hypervisor ran another guest on the vCPU, or interrupts were handled
/// — both are kept out of a task's CPU time).
enum StallCause: String, Codable, Sendable, CaseIterable {
    case onCPU = "on-cpu", blocked, preempted, stolen

    static func of(turnNs: UInt64, during usage: ThreadUsage) -> StallCause {
        if usage.cpuNs * 2 >= turnNs { return .onCPU }
        if usage.voluntarySwitches > 0 { return .blocked }
        return usage.involuntarySwitches > 0 ? .preempted : .stolen
    }
}

/// One shard's turn clock: a turn is the work between two waits for I/O. Turns longer than
/// `loop.stall.warn.ms` are stalls: counted, kept (the last few, with when and where), and
/// logged at most once per second per shard. Each turn reads the thread's CPU time and context
/// switches at its start (~0.4 µs) so that a stall also says why it was long (``StallCause``).
/// Owned by its shard thread; what it found is published to ``StallReport`` for the shutdown
/// summary and the lab.
struct TurnClock {
    let shard: Int
    let warnNs: UInt64
    private var phaseStart: UInt64 = 0
    private var turnStart: UInt64 = 0
    private var usageAtStart = ThreadUsage()
    /// When the current turn began (its poller wait returned).
    var turnStartNs: UInt64 { turnStart }
    private var phases = [UInt64](repeating: 0, count: TurnPhase.allCases.count)
    private(set) var turns: UInt64 = 0
    /// Time spent in turns (not waiting for I/O), for the busy ratio.
    private(set) var busyNs: UInt64 = 0
    /// Every turn's length: the wait a request arriving during a turn has before the next one
    /// reads it, turns under the stall threshold included.
    private(set) var turnLatency = LatencyBuckets()
    private var lastLogNs: UInt64 = 0
    private var unloggedStalls = 0

    init(shard: Int, warnMs: Int) {
        self.shard = shard
        warnNs = UInt64(warnMs) * 1_000_000
    }

    /// The loop's wait returned: a turn starts.
    mutating func begin(_ now: UInt64 = Sys.monotonicNs(), usage: ThreadUsage = Sys.threadUsage()) {
        turnStart = now
        usageAtStart = usage
        phaseStart = now
        for i in phases.indices { phases[i] = 0 }
    }

    /// `phase` ran from the previous mark until now.
    mutating func mark(_ phase: TurnPhase, _ now: UInt64 = Sys.monotonicNs()) {
        phases[phase.rawValue] &+= now &- phaseStart
        phaseStart = now
    }

    /// The turn ended; returns the stall, if it was one, and whether to log it now (at most
    /// once per second; the stalls not logged are counted in the next line).
    mutating func end(_ now: UInt64 = Sys.monotonicNs(), usage: @autoclosure () -> ThreadUsage = Sys.threadUsage()) -> (stall: Stall, log: Bool, unlogged: Int)? {
        turns &+= 1
        let length = now &- turnStart
        if turnStart != 0 {
            busyNs &+= length
            turnLatency.record(ns: length)
        }
        guard length >= warnNs, turnStart != 0 else { return nil }
        let worst = phases.indices.max { phases[$0] < phases[$1] }!
        let after = usage()
        let during = ThreadUsage(cpuNs: after.cpuNs &- usageAtStart.cpuNs,
                                 voluntarySwitches: after.voluntarySwitches - usageAtStart.voluntarySwitches,
                                 involuntarySwitches: after.involuntarySwitches - usageAtStart.involuntarySwitches)
        let stall = Stall(atMs: Sys.wallClockMs(), shard: shard, ms: Double(length) / 1e6, phase: TurnPhase(rawValue: worst)!.name,
                          cause: StallCause.of(turnNs: length, during: during), onCPUMs: Double(during.cpuNs) / 1e6,
                          sleeps: during.voluntarySwitches, preemptions: during.involuntarySwitches)
        if now &- lastLogNs >= 1_000_000_000 {
            lastLogNs = now
            defer { unloggedStalls = 0 }
            return (stall, true, unloggedStalls)
        }
        unloggedStalls += 1
        return (stall, false, 0)
    }
}

/// A turn longer than the stall threshold.
struct Stall: Codable, Sendable, Equatable {
    var atMs: Int64
    var shard: Int
    var ms: Double
    var phase: String
    var cause: StallCause
    /// Of `ms`, the time the thread ran; the switches off the CPU in the turn.
    var onCPUMs: Double
    var sleeps: Int
    var preemptions: Int
}

/// Every shard's stall counts, for the shutdown summary and for the lab (written as JSON to
/// `loop.stall.stats.file` every second by the disk worker). Thread-safe; shards touch it only
/// when a turn stalls and once a second.
final class StallReport: Sendable {
    struct Shard: Codable, Sendable {
        var turns: UInt64 = 0
        var stalls: Int = 0
        var longestMs: Double = 0
        var longestPhase: String = ""
        var longestCause: String = ""
        /// Stalls by cause (``StallCause`` raw values).
        var byCause: [String: Int] = [:]
    }
    struct Snapshot: Codable, Sendable {
        var warnMs: Int
        var shards: [Shard]
        /// The most recent stalls (at most ``StallReport/recentLimit``), oldest first.
        var recent: [Stall]
        /// Calls that may wait on the disk made on a shard thread (ShardThreadContract).
        var diskWaitsOnShards: Int
        /// The contract's declared exceptions shard threads took, by reason (a roll without a
        /// spare, a sync with nowhere else to go, …): allowed, but each may have waited.
        var declaredDiskWaits: [String: Int] = [:]
    }

    static let recentLimit = 256
    private let state: Mutex<Snapshot>

    init(shards: Int, warnMs: Int) {
        state = Mutex(Snapshot(warnMs: warnMs, shards: Array(repeating: Shard(), count: shards), recent: [], diskWaitsOnShards: 0))
    }

    func record(_ stall: Stall) {
        state.withLock { s in
            s.shards[stall.shard].stalls += 1
            s.shards[stall.shard].byCause[stall.cause.rawValue, default: 0] += 1
            if stall.ms > s.shards[stall.shard].longestMs {
                s.shards[stall.shard].longestMs = stall.ms
                s.shards[stall.shard].longestPhase = stall.phase
                s.shards[stall.shard].longestCause = stall.cause.rawValue
            }
            s.recent.append(stall)
            if s.recent.count > Self.recentLimit { s.recent.removeFirst(s.recent.count - Self.recentLimit) }
        }
    }

    func setTurns(_ turns: UInt64, shard: Int) {
        state.withLock { $0.shards[shard].turns = turns }
    }

    var snapshot: Snapshot {
        var s = state.withLock { $0 }
        s.diskWaitsOnShards = ShardThreadContract.violations.count
        s.declaredDiskWaits = ShardThreadContract.exceptions
        return s
    }

    /// Writes the snapshot to `path` on the disk worker (replacing the file, no sync: it is
    /// a live view, not state to recover).
    func publish(to path: String) {
        let snapshot = self.snapshot
        DiskWorker.shared.run {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(snapshot) else { return }
            try? Sys.writeFileReplacing(path, Array(data))
        }
    }
}
