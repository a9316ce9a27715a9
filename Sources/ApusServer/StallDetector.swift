import ApusIO
import Foundation
import Synchronization

/// What a shard turn was doing; a stall is attributed to the phase that took longest.
enum TurnPhase: Int, CaseIterable, Sendable {
    case jobs, read, commit, send, maintenance
    var name: String { ["jobs", "read+handlers", "commit+completions", "send", "maintenance"][rawValue] }
}

/// One shard's turn clock: a turn is the work between two waits for I/O. Turns longer than
/// `loop.stall.warn.ms` are stalls: counted, kept (the last few, with when and where), and
/// logged at most once per second per shard. Owned by its shard thread; what it found is
/// published to ``StallReport`` for the shutdown summary and the lab.
struct TurnClock {
    let shard: Int
    let warnNs: UInt64
    private var phaseStart: UInt64 = 0
    private var turnStart: UInt64 = 0
    /// When the current turn began (its poller wait returned).
    var turnStartNs: UInt64 { turnStart }
    private var phases = [UInt64](repeating: 0, count: TurnPhase.allCases.count)
    private(set) var turns: UInt64 = 0
    /// Time spent in turns (not waiting for I/O), for the busy ratio.
    private(set) var busyNs: UInt64 = 0
    private var lastLogNs: UInt64 = 0
    private var unloggedStalls = 0

    init(shard: Int, warnMs: Int) {
        self.shard = shard
        warnNs = UInt64(warnMs) * 1_000_000
    }

    /// The loop's wait returned: a turn starts.
    mutating func begin(_ now: UInt64 = Sys.monotonicNs()) {
        turnStart = now
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
    mutating func end(_ now: UInt64 = Sys.monotonicNs()) -> (stall: Stall, log: Bool, unlogged: Int)? {
        turns &+= 1
        let length = now &- turnStart
        if turnStart != 0 { busyNs &+= length }
        guard length >= warnNs, turnStart != 0 else { return nil }
        let worst = phases.indices.max { phases[$0] < phases[$1] }!
        let stall = Stall(atMs: Sys.wallClockMs(), shard: shard, ms: Double(length) / 1e6, phase: TurnPhase(rawValue: worst)!.name)
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
    }
    struct Snapshot: Codable, Sendable {
        var warnMs: Int
        var shards: [Shard]
        /// The most recent stalls (at most ``StallReport/recentLimit``), oldest first.
        var recent: [Stall]
        /// Calls that may wait on the disk made on a shard thread (ShardThreadContract).
        var diskWaitsOnShards: Int
    }

    static let recentLimit = 256
    private let state: Mutex<Snapshot>

    init(shards: Int, warnMs: Int) {
        state = Mutex(Snapshot(warnMs: warnMs, shards: Array(repeating: Shard(), count: shards), recent: [], diskWaitsOnShards: 0))
    }

    func record(_ stall: Stall) {
        state.withLock { s in
            s.shards[stall.shard].stalls += 1
            if stall.ms > s.shards[stall.shard].longestMs {
                s.shards[stall.shard].longestMs = stall.ms
                s.shards[stall.shard].longestPhase = stall.phase
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
