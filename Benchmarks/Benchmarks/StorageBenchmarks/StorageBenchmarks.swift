import ApusIO
import ApusStorage
import Benchmark
import Foundation
import KafkaWire
import Logging

// Storage engine benchmarks (issue: storage engine). Targets, measured in one run on this VM:
//   page-cache appends of 1 MiB batches through LogShard ≥ 90% of a raw pwrite loop
//   fsync-on-ack-all: io_uring backend ≥ 1.5× the POSIX backend
//   recovery scan (unclean open of a multi-segment log) ≥ 1 GB/s
// plus 64 KiB batches and the latency cost of retention deleting segments during appends.
//
// Throughput benchmarks: one iteration writes 64 MiB (64 turns of 1 MiB of batches) and, under
// fsync-on-ack-all, ends when the last batch is acknowledged (durable), so the custom `MB/s`
// metric (decimal MB per second of each iteration) is sustained, acknowledged throughput and
// includes page-cache writeback throttling. At most 13 + 1 iterations: ≤ 896 MiB, inside one
// 1 GiB segment. Each benchmark starts with `sync()` so that none inherits another's dirty
// pages. Latency benchmarks (retention): one iteration is one turn; compare wall-clock p99.
// The data directories are under /tmp and are removed in teardown.

let oneMiB = 1 << 20
let mbPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)

/// A batch of 100-byte records with 8-byte keys filling `capacity`, as a producer sends it.
func makeBatch(capacity: Int) -> [UInt8] {
    var builder = RecordBatchBuilder(capacity: capacity)
    builder.reset(baseTimestamp: Int64(Date().timeIntervalSince1970 * 1000))
    let value = [UInt8](repeating: 0x61, count: 100)
    var key: UInt64 = 0
    value.withUnsafeBytes { v in
        while withUnsafeBytes(of: &key, { builder.append(key: $0, value: v) }) { key += 1 }
    }
    return Array(try! builder.finish())
}

func quietLogger() -> Logger {
    var logger = Logger(label: "apus.storage.bench")
    logger.logLevel = .critical
    return logger
}

func benchDirectory(_ name: String) -> String {
    "/tmp/apus-storage-bench-\(getpid())-\(name)"
}

func removeDirectory(_ path: String) {
    DiskWorker.shared.waitUntilIdle()
    try? FileManager.default.removeItem(atPath: path)
}

/// One partition log on one shard, fed from batches allocated once.
final class AppendRig: @unchecked Sendable {
    let name: String
    let kind: IOBackendKind
    let batchSize: Int
    let config: LogConfig
    let requireDurable: Bool
    let retention: Bool
    var directory = ""
    var manager: LogManager!
    var log: PartitionLog!
    var shard: LogShard!
    var batches: [UnsafeMutableRawBufferPointer] = []

    init(_ name: String, kind: IOBackendKind, batchSize: Int, durability: Durability = .pageCache,
         segmentBytes: Int64 = 1 << 30, retentionBytes: Int64 = -1) {
        self.name = name
        self.kind = kind
        self.batchSize = batchSize
        var config = LogConfig()
        config.segmentBytes = segmentBytes
        config.durability = durability
        config.retentionMs = -1
        config.retentionBytes = retentionBytes
        self.config = config
        requireDurable = durability != .pageCache
        retention = retentionBytes >= 0
    }

    func setUp() throws {
        sync()
        directory = benchDirectory(name)
        removeDirectory(directory)
        manager = try LogManager(dataDirectory: directory, defaultConfig: config, logger: quietLogger())
        log = try manager.openLog(TopicPartition("bench", 0), config: config)
        shard = LogShard(backend: try makeAppendBackend(kind).0)
        shard.adopt(log)
        let template = makeBatch(capacity: batchSize)
        // One buffer per batch of an iteration; the log rewrites base offsets in place.
        batches = (0..<(oneMiB / batchSize)).map { _ in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: template.count, alignment: 4096)
            template.withUnsafeBytes { b.copyMemory(from: $0) }
            return b
        }
    }

    /// One turn: stage 1 MiB of batches, group-commit, reap syncs (bounded: at most a few
    /// turns' syncs in flight, like a producer with max.in.flight), run retention if on.
    @inline(__always)
    func turn() {
        let now = Sys.wallClockMs()
        for b in batches {
            _ = try! shard.append(b, to: log, requireDurable: requireDurable, nowMs: now)
        }
        let failures = shard.commit(nowMs: now)
        precondition(failures.isEmpty, "\(failures)")
        if requireDurable {
            shard.poll(wait: log.logEndOffset - log.durableOffset > Int64(4 * oneMiB / 110))
        }
        if retention { log.enforceRetention(nowMs: now) }
    }

    /// Waits until everything appended is acknowledged (durable), under fsync-on-ack-all.
    func waitForAcks() {
        while requireDurable && log.durableOffset < log.logEndOffset { shard.poll(wait: true) }
    }

    func tearDown() {
        shard.syncAll(nowMs: Sys.wallClockMs())
        shard = nil
        log = nil
        manager = nil
        for b in batches { b.deallocate() }
        batches = []
        removeDirectory(directory)
    }
}

/// The baseline: a `pwrite` loop of 1 MiB buffers to a fresh file in the same directory kind.
final class RawWriteRig: @unchecked Sendable {
    var directory = ""
    var fd: Int32 = -1
    var position: Int64 = 0
    var buffer: UnsafeMutableRawBufferPointer!

    func setUp() throws {
        sync()
        directory = benchDirectory("raw")
        removeDirectory(directory)
        try Sys.makeDirectories(directory)
        fd = try Sys.open(directory + "/00000000000000000000.log", O_RDWR | O_CREAT)
        let template = makeBatch(capacity: oneMiB)
        buffer = .allocate(byteCount: template.count, alignment: 4096)
        template.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    @inline(__always)
    func turn() {
        try! Sys.pwriteAll(fd, UnsafeRawBufferPointer(buffer), at: position)
        position += Int64(buffer.count)
    }

    func tearDown() {
        Sys.close(fd)
        buffer.deallocate()
        position = 0
        removeDirectory(directory)
    }
}

/// A multi-segment log left without a clean shutdown or recovery point: every open scans it.
final class RecoveryRig: @unchecked Sendable {
    let totalBytes = 512 << 20
    var directory = ""
    var config = LogConfig()

    func setUp() throws {
        directory = benchDirectory("recovery")
        removeDirectory(directory)
        config.segmentBytes = 64 << 20
        let manager = try LogManager(dataDirectory: directory, defaultConfig: config, logger: quietLogger())
        let log = try manager.openLog(TopicPartition("bench", 0), config: config)
        let shard = LogShard(backend: try makeAppendBackend(.posix).0)
        shard.adopt(log)
        var batch = makeBatch(capacity: oneMiB)
        for _ in 0..<(totalBytes / batch.count) {
            try batch.withUnsafeMutableBytes { raw in
                _ = try shard.append(raw, to: log, requireDurable: false, nowMs: Sys.wallClockMs())
                shard.commit(nowMs: Sys.wallClockMs())
            }
        }
        shard.syncAll(nowMs: Sys.wallClockMs())
        precondition(log.segmentCount >= 8)
        sync()
        // No close(): no clean-shutdown marker and no recovery point.
    }

    /// Opens the log after an "unclean shutdown"; returns the bytes scanned.
    func recover() -> Int64 {
        let manager = try! LogManager(dataDirectory: directory, defaultConfig: config, logger: quietLogger())
        precondition(!manager.wasCleanShutdown)
        let log = try! manager.openLog(TopicPartition("bench", 0), config: config)
        return log.sizeInBytes
    }

    func tearDown() { removeDirectory(directory) }
}

let turnsPerIteration = 64

/// Sustained throughput: 64 MiB per iteration, acknowledged before the iteration ends.
func throughputBenchmark(_ title: String, _ rig: AppendRig) {
    Benchmark(title, configuration: .init(
        metrics: [.wallClock, mbPerSecond], warmupIterations: 1, maxDuration: .seconds(4), maxIterations: 13,
        setup: { try rig.setUp() }, teardown: { rig.tearDown() }
    )) { benchmark in
        let start = Sys.monotonicNs()
        for _ in 0..<turnsPerIteration { rig.turn() }
        rig.waitForAcks()
        let ns = Sys.monotonicNs() - start
        benchmark.measurement(mbPerSecond, Int(Double(turnsPerIteration * oneMiB) * 1000 / Double(max(ns, 1))))
    }
}

/// Per-turn latency (append + commit [+ retention]): one turn per iteration.
func latencyBenchmark(_ title: String, _ rig: AppendRig) {
    Benchmark(title, configuration: .init(
        metrics: [.wallClock], warmupIterations: 3, maxDuration: .seconds(3), maxIterations: 900,
        setup: { try rig.setUp() }, teardown: { rig.tearDown() }
    )) { _ in
        rig.turn()
    }
}

let benchmarks: @Sendable () -> Void = {
    // 1. Page cache, 1 MiB batches: LogShard vs the raw pwrite loop.
    let raw = RawWriteRig()
    Benchmark("raw pwrite loop, 1 MiB writes", configuration: .init(
        metrics: [.wallClock, mbPerSecond], warmupIterations: 1, maxDuration: .seconds(4), maxIterations: 13,
        setup: { try raw.setUp() }, teardown: { raw.tearDown() }
    )) { benchmark in
        let start = Sys.monotonicNs()
        for _ in 0..<turnsPerIteration { raw.turn() }
        let ns = Sys.monotonicNs() - start
        benchmark.measurement(mbPerSecond, Int(Double(turnsPerIteration * oneMiB) * 1000 / Double(max(ns, 1))))
    }
    throughputBenchmark("append page-cache, 1 MiB batches, posix", AppendRig("pc-posix-1m", kind: .posix, batchSize: oneMiB))
    throughputBenchmark("append page-cache, 1 MiB batches, uring", AppendRig("pc-uring-1m", kind: .uring, batchSize: oneMiB))

    // 2. 64 KiB batches (16 per turn), page cache.
    throughputBenchmark("append page-cache, 64 KiB batches, posix", AppendRig("pc-posix-64k", kind: .posix, batchSize: 64 << 10))
    throughputBenchmark("append page-cache, 64 KiB batches, uring", AppendRig("pc-uring-64k", kind: .uring, batchSize: 64 << 10))

    // 3. fsync-on-ack-all: every batch requireDurable, commit + poll each turn (at most ~4 MiB
    //    unacknowledged, like a producer's max.in.flight), iteration ends fully acknowledged.
    throughputBenchmark("append fsync-on-ack-all, 1 MiB batches, posix",
                        AppendRig("ack-posix-1m", kind: .posix, batchSize: oneMiB, durability: .fsyncOnAckAll))
    throughputBenchmark("append fsync-on-ack-all, 1 MiB batches, uring",
                        AppendRig("ack-uring-1m", kind: .uring, batchSize: oneMiB, durability: .fsyncOnAckAll))
    throughputBenchmark("append fsync-on-ack-all, 64 KiB batches, posix",
                        AppendRig("ack-posix-64k", kind: .posix, batchSize: 64 << 10, durability: .fsyncOnAckAll))
    throughputBenchmark("append fsync-on-ack-all, 64 KiB batches, uring",
                        AppendRig("ack-uring-64k", kind: .uring, batchSize: 64 << 10, durability: .fsyncOnAckAll))

    // 4. Retention: 16 MiB segments, with and without retention.bytes = 64 MiB deleting a
    //    segment every 16 turns. Compare the wall-clock percentiles (p99) of a turn.
    latencyBenchmark("turn latency, page-cache 1 MiB batches, 16 MiB segments, no retention",
                     AppendRig("ret-off", kind: .posix, batchSize: oneMiB, segmentBytes: 16 << 20))
    latencyBenchmark("turn latency, page-cache 1 MiB batches, 16 MiB segments, retention deleting",
                     AppendRig("ret-on", kind: .posix, batchSize: oneMiB, segmentBytes: 16 << 20, retentionBytes: 64 << 20))

    // 5. Recovery scan: unclean open of a 512 MiB log in 64 MiB segments (page-cached).
    let recovery = RecoveryRig()
    Benchmark("recovery scan, unclean open of 512 MiB in 8 segments", configuration: .init(
        metrics: [.wallClock, mbPerSecond], warmupIterations: 1, maxDuration: .seconds(5), maxIterations: 10,
        setup: { try recovery.setUp() }, teardown: { recovery.tearDown() }
    )) { benchmark in
        let start = Sys.monotonicNs()
        let bytes = recovery.recover()
        let ns = Sys.monotonicNs() - start
        benchmark.measurement(mbPerSecond, Int(Double(bytes) * 1000 / Double(max(ns, 1))))
    }

    // 6. What the metrics endpoint's counters add to each request on a shard: the clock reads
    // (start of handler, end of handler, response ready, last byte sent; the turn's start is
    // read by the loop anyway) and the five latency histograms a Produce request updates
    // (total, queue, handler, wait, send) in per-API arrays.
    Benchmark("per-request latency accounting (4 clock reads, 5 histogram records)",
              configuration: .init(metrics: [.wallClock, .instructions], scalingFactor: .mega)) { benchmark in
        var histograms = [[LatencyBuckets]](repeating: [LatencyBuckets](repeating: LatencyBuckets(), count: 128), count: 5)
        let turnStart = Sys.monotonicNs()
        for _ in benchmark.scaledIterations {
            let start = Sys.monotonicNs()
            let handled = Sys.monotonicNs()
            let ready = Sys.monotonicNs()
            let sent = Sys.monotonicNs()
            histograms[0][0].record(ns: ready &- turnStart)
            histograms[1][0].record(ns: start &- turnStart)
            histograms[2][0].record(ns: handled &- start)
            histograms[3][0].record(ns: ready &- handled)
            histograms[4][0].record(ns: sent &- ready)
        }
        blackHole(histograms[0][0].count)
    }

    // 7. What the tail's per-turn figures add to a shard turn (apus_shard_turn_duration_seconds,
    // apus_shard_job_delay_seconds): the turn's length recorded, and, in a turn that takes jobs,
    // the clock read when a job lands in an empty inbox and the oldest job's wait recorded. The
    // turn's own start and end clock reads were there before.
    Benchmark("per-turn tail accounting (1 clock read, 2 histogram records)",
              configuration: .init(metrics: [.wallClock, .instructions], scalingFactor: .mega)) { benchmark in
        var turns = LatencyBuckets(), jobDelay = LatencyBuckets()
        var turnStart = Sys.monotonicNs()
        for _ in benchmark.scaledIterations {
            let posted = Sys.monotonicNs()
            turns.record(ns: posted &- turnStart)
            jobDelay.record(ns: posted &- turnStart)
            turnStart = posted
        }
        blackHole(turns.count &+ jobDelay.count)
    }
}
