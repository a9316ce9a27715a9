import ApusIO
import ApusClient
import Foundation
import Histogram
import KafkaWire
import Synchronization

/// A produce workload: what to send and how fast, apart from the client configuration.
public struct ProducePerfWorkload: Sendable, Codable {
    public var topic: String
    /// Total records over all producers; nil when bounded by `durationSeconds`.
    public var numRecords: Int?
    public var durationSeconds: Double?
    public var recordSize: Int = 100
    /// Target records/s over all producers; -1 (any value ≤ 0) for the maximum rate.
    public var throughput: Double = -1
    /// Producer threads, each with its own connection.
    public var producers: Int = 1
    /// Batches meant to be sent in the first seconds are sent but not counted or recorded.
    public var warmupSeconds: Double = 0
    public var payload = PayloadSpec.random
    public var keys = KeySpec.none

    public init(topic: String) { self.topic = topic }
}

/// Latencies of one run, in nanoseconds, each batch recorded once weighted by its record count.
public struct ProducePerfResult: Sendable {
    public var records: UInt64 = 0
    public var errors: UInt64 = 0
    /// From the end of the warm-up to the last acknowledgement.
    public var elapsedNanos: UInt64 = 0
    public var recordSize: Int = 0
    /// Records by the Kafka error code they failed with (-1: the request failed as a whole).
    public var errorsByCode: [Int16: UInt64] = [:]
    /// One histogram (intended-time latency) per progress interval, for `.hlog` interval logs.
    public var intervals: [IntervalHistogram] = []
    /// The producers' own counters, summed (batches, requests, retries, …).
    public var metrics = ProducerMetrics()
    /// Intended send time (open-loop schedule) → acknowledgement: coordinated-omission corrected.
    public var intendedLatency = ProducePerf.makeHistogram()
    /// First `send` of the batch's first record → acknowledgement (what kafka-producer-perf-test reports).
    public var sendLatency = ProducePerf.makeHistogram()

    public var recordsPerSecond: Double { elapsedNanos == 0 ? 0 : Double(records) * 1e9 / Double(elapsedNanos) }
    /// MiB/s of record values, as kafka-producer-perf-test counts them.
    public var mebibytesPerSecond: Double { recordsPerSecond * Double(recordSize) / 1_048_576 }
}

/// The latencies recorded during one progress interval (seconds from the run's start).
public struct IntervalHistogram: Sendable {
    public var startSeconds: Double
    public var lengthSeconds: Double
    public var histogram: Histogram<UInt64>
    /// The most one CPU lost to the hypervisor meanwhile (ms), if known.
    public var stealMs: Double?
    /// How far the load generator fell behind its open-loop schedule at worst meanwhile (ms; 0
    /// at the maximum rate, which has no schedule): latency from the intended send that accrued
    /// before the records were handed to the producer.
    public var generatorLagMs: Double = 0
}

/// `apus perf produce`: open-loop produce load with HDR latency histograms.
public enum ProducePerf {
    /// 1 ns to 60 s at 3 significant digits.
    public static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }

    /// Shared between producer threads and the reporter; touched once per batch.
    struct Shared: ~Copyable {
        var total = ProducePerfResult()
        var interval = ProducePerf.makeHistogram()
        var intervalRecords: UInt64 = 0
        var intervalErrors: UInt64 = 0
        /// The generator's largest lag behind its schedule in the interval (ns).
        var intervalLagNanos: UInt64 = 0
        var finished = 0
        var failure: String?

        /// Hands the current interval to the reporter, `fresh` (empty) taking its place: a swap
        /// and three counters, so that a producer recording an acknowledgement never waits for
        /// the reporter's work on the interval.
        mutating func takeInterval(_ fresh: inout Histogram<UInt64>) -> (records: UInt64, errors: UInt64, lagNanos: UInt64) {
            swap(&interval, &fresh)
            defer {
                intervalRecords = 0
                intervalErrors = 0
                intervalLagNanos = 0
            }
            return (intervalRecords, intervalErrors, intervalLagNanos)
        }
    }

    /// The reporter's side of the progress intervals, outside the lock: the intervals closed
    /// so far, each CPU's steal when the current one began, and the empty histogram the next
    /// one starts with. That histogram is made here, not under the lock: building one touches
    /// ~200 KB of new memory, which took the reporter 1–7 ms under the lock on a VM whose host
    /// takes back free memory, and every producer thread waited meanwhile (its lag counted
    /// into the latency from the intended send).
    struct IntervalLog {
        let start: UInt64
        var intervals: [IntervalHistogram] = []
        var stealAtStart = HostCPU.stealPerCPU()

        init(start: UInt64) { self.start = start }

        /// Closes the interval from `from` to `to` (monotonic ns) and keeps it; returns it with
        /// its records and failed records.
        mutating func close(_ box: SharedBox, from: UInt64, to: UInt64) -> (interval: IntervalHistogram, records: UInt64, errors: UInt64) {
            let steal = HostCPU.stealPerCPU()
            var histogram = ProducePerf.makeHistogram()
            let taken = box.mutex.withLock { $0.takeInterval(&histogram) }
            let interval = IntervalHistogram(
                startSeconds: Double(from - start) / 1e9, lengthSeconds: Double(to - from) / 1e9, histogram: histogram,
                stealMs: HostCPU.longestSteal(from: stealAtStart, to: steal), generatorLagMs: Double(taken.lagNanos) / 1e6)
            stealAtStart = steal
            intervals.append(interval)
            return (interval, taken.records, taken.errors)
        }

        /// The run's totals once it is over, with the last, partial interval (if it has any
        /// latency), so that the intervals add up to the totals.
        mutating func finish(_ box: SharedBox, from: UInt64, to: UInt64) -> (ProducePerfResult, String?) {
            if close(box, from: from, to: to).interval.histogram.totalCount == 0 { intervals.removeLast() }
            var (total, failure) = box.mutex.withLock { ($0.total, $0.failure) }
            total.intervals = intervals
            return (total, failure)
        }
    }

    final class SharedBox: Sendable {
        let mutex = Mutex(Shared())
    }

    /// Runs the workload; prints a progress line every `reportInterval` seconds to `log`.
    public static func run(
        workload: ProducePerfWorkload, config: ProducerConfig, reportInterval: Double = 5,
        log: @escaping @Sendable (String) -> Void
    ) throws -> ProducePerfResult {
        precondition(workload.producers >= 1 && workload.recordSize >= 0)
        let box = SharedBox()
        let source = try RecordSource(recordSize: workload.recordSize, payload: workload.payload, keys: workload.keys)
        let start = Sys.monotonicNs()
        let threads = workload.producers
        startProducers(workload: workload, config: config, source: source, start: start, shared: box)
        var lastReport = start
        var intervals = IntervalLog(start: start)
        while true {
            Sys.sleep(microseconds: 50_000)
            let done = box.mutex.withLock { $0.finished == threads }
            let now = Sys.monotonicNs()
            if !done && Double(now - lastReport) >= reportInterval * 1e9 {
                let closed = intervals.close(box, from: lastReport, to: now)
                log(progressLine(records: closed.records, seconds: Double(now - lastReport) / 1e9, recordSize: workload.recordSize,
                                 histogram: closed.interval.histogram, errors: closed.errors))
                lastReport = now
            }
            if done { break }
        }
        let (result, failure) = intervals.finish(box, from: lastReport, to: Sys.monotonicNs())
        if let failure { throw ClientError(failure) }
        var final = result
        final.recordSize = workload.recordSize
        return final
    }

    /// Starts `workload.producers` threads running `produceLoop`, sharing the records and the
    /// rate; each counts itself in `shared.finished` when done (or failed).
    static func startProducers(workload: ProducePerfWorkload, config: ProducerConfig, source: RecordSource, start: UInt64, shared: SharedBox) {
        let threads = workload.producers
        for t in 0..<threads {
            let count = workload.numRecords.map { $0 / threads + (t < $0 % threads ? 1 : 0) }
            let rate = workload.throughput > 0 ? workload.throughput / Double(threads) : -1
            let thread = Thread {
                do {
                    try produceLoop(config: config, workload: workload, records: count, rate: rate, source: source, seed: UInt64(t),
                                    start: start, shared: shared)
                    shared.mutex.withLock { $0.finished += 1 }
                } catch {
                    shared.mutex.withLock {
                        $0.failure = $0.failure ?? "producer: \(error)"
                        $0.finished += 1
                    }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// One producer thread: the open-loop schedule, in chunks of about a millisecond of records
    /// so that the clock is read once per chunk, never per record.
    static func produceLoop(
        config: ProducerConfig, workload: ProducePerfWorkload, records: Int?, rate: Double,
        source: RecordSource, seed: UInt64, start: UInt64, shared: SharedBox
    ) throws {
        let producer = try Producer(config: config, topic: workload.topic)
        let measureFrom = start + UInt64(max(workload.warmupSeconds, 0) * 1e9)
        producer.onAck = { ack in
            if ack.userTime < measureFrom { return }
            let count = UInt64(ack.recordCount)
            let fromIntended = ack.ackNanos &- min(ack.userTime, ack.ackNanos)
            let fromSend = ack.ackNanos &- min(ack.createdNanos, ack.ackNanos)
            shared.mutex.withLock { state in
                if ack.errorCode != 0 {
                    state.total.errors += count
                    state.total.errorsByCode[ack.errorCode, default: 0] += count
                    state.intervalErrors += count
                    return
                }
                _ = state.total.intendedLatency.record(min(fromIntended, 60_000_000_000), count: count)
                _ = state.total.sendLatency.record(min(fromSend, 60_000_000_000), count: count)
                _ = state.interval.record(min(fromIntended, 60_000_000_000), count: count)
                state.total.records += count
                state.intervalRecords += count
                state.total.elapsedNanos = max(state.total.elapsedNanos, ack.ackNanos &- min(measureFrom, ack.ackNanos))
            }
        }
        var keyRandom = SplitMix64(seed: 0x6b65_7973 &+ seed)
        let chunk = rate > 0 ? max(1, min(1024, Int(rate / 1000))) : 1024
        let nanosPerRecord = rate > 0 ? 1e9 / rate : 0
        let deadline = workload.durationSeconds.map { start + UInt64($0 * 1e9) } ?? UInt64.max
        let total = records ?? Int.max
        var sent = 0
        var offset = 0
        while sent < total {
            let now = Sys.monotonicNs()
            if now >= deadline { break }
            var intended = now
            if rate > 0 {
                intended = start + UInt64(Double(sent) * nanosPerRecord)
                if now < intended {
                    try producer.poll()
                    let wait = intended - now
                    if wait > 100_000 { Sys.sleep(microseconds: UInt32(min(wait, 1_000_000) / 1000)) }
                    continue
                }
                if now - intended > 1_000_000 {  // behind by more than a chunk: rare while on schedule
                    shared.mutex.withLock { $0.intervalLagNanos = max($0.intervalLagNanos, now - intended) }
                }
            }
            let n = min(chunk, total - sent)
            for _ in 0..<n {
                try producer.send(key: source.key(&keyRandom), value: source.value(at: offset), userTime: intended)
                offset = source.next(offset: offset)
            }
            sent += n
        }
        try producer.flush()
        shared.mutex.withLock { $0.total.metrics.add(producer.metrics) }
    }

    static func progressLine(records: UInt64, seconds: Double, recordSize: Int, histogram: Histogram<UInt64>, errors: UInt64) -> String {
        let rate = Double(records) / seconds
        func ms(_ p: Double) -> String { String(format: "%.2f", Double(histogram.valueAtPercentile(p)) / 1e6) }
        // Interpolated, not %@ and %d: an empty interval (a failover) printed "(null)" and garbage there.
        let head = String(format: "%.1f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency",
                          rate, rate * Double(recordSize) / 1_048_576,
                          histogram.totalCount == 0 ? 0.0 : histogram.mean / 1e6, Double(histogram.max) / 1e6)
        return "\(records) records sent, \(head), p50 \(ms(50)) / p99 \(ms(99)) / p99.9 \(ms(99.9)) ms, \(errors) errors."
    }

    /// The final summary: totals, then both percentile distributions in milliseconds.
    public static func summary(_ r: ProducePerfResult) -> String {
        let h = r.intendedLatency
        func ms(_ p: Double) -> String { String(format: "%.2f", Double(h.valueAtPercentile(p)) / 1e6) }
        var out = String(
            format: "%d records sent, %.1f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, %@ ms 50th, %@ ms 95th, %@ ms 99th, %@ ms 99.9th. %d errors.\n",
            r.records, r.recordsPerSecond, r.mebibytesPerSecond, h.totalCount == 0 ? 0 : h.mean / 1e6, Double(h.max) / 1e6,
            ms(50), ms(95), ms(99), ms(99.9), r.errors)
        if let lag = r.intervals.map(\.generatorLagMs).max(), lag > 0 {
            out += String(format: "The load generator fell at most %.2f ms behind its schedule (included in the latency from the intended send time).\n", lag)
        }
        out += "\nProduce latency from the intended send time (ms, coordinated-omission corrected):\n"
        h.outputPercentileDistribution(to: &out, outputValueUnitScalingRatio: 1e6)
        out += "\nProduce latency from the first send() of each batch (ms):\n"
        r.sendLatency.outputPercentileDistribution(to: &out, outputValueUnitScalingRatio: 1e6)
        return out
    }
}
