import ApusClient
import ApusIO
import Foundation
import Histogram
import KafkaWire
import Synchronization

/// An end-to-end workload: the produce side (open-loop, stamped batches; at least 8-byte
/// records for the stamp) and one consumer thread reading from the log end.
public struct EndToEndPerfWorkload: Sendable, Codable {
    public var produce: ProducePerfWorkload
    /// After the producers stop: how long the consumer may take to catch up.
    public var drainTimeoutSeconds: Double = 10

    public init(produce: ProducePerfWorkload) { self.produce = produce }
    public init(topic: String) { produce = ProducePerfWorkload(topic: topic) }
}

public struct EndToEndPerfResult: Sendable {
    public var produced = ProducePerfResult()
    public var consumedRecords: UInt64 = 0
    public var consumedPayloadBytes: UInt64 = 0
    public var consumedWireBytes: UInt64 = 0
    /// Consumer start (positions known) → last batch received.
    public var consumeElapsedNanos: UInt64 = 0
    /// Batches whose first value carried no usable stamp (shorter than 8 bytes, or not ours).
    public var unstampedBatches: UInt64 = 0
    /// Producer send (the batch's stamp) → fetch response read by the consumer, per batch
    /// weighted by its record count (ns; same host, monotonic clock).
    public var latency = ProducePerf.makeHistogram()

    public var consumedRecordsPerSecond: Double { consumeElapsedNanos == 0 ? 0 : Double(consumedRecords) * 1e9 / Double(consumeElapsedNanos) }
    public var consumedMebibytesPerSecond: Double {
        consumeElapsedNanos == 0 ? 0 : Double(consumedPayloadBytes) * 1e9 / Double(consumeElapsedNanos) / 1_048_576
    }
}

/// `apus perf e2e`: produce (stamping each batch with its send time) and consume concurrently;
/// reports both rates and the end-to-end latency distribution.
public enum EndToEndPerf {
    struct ConsumerState: ~Copyable {
        var records: UInt64 = 0
        var payload: UInt64 = 0
        var wire: UInt64 = 0
        var unstamped: UInt64 = 0
        var lastReceived: UInt64 = 0
        var latency = ProducePerf.makeHistogram()
        var interval = ProducePerf.makeHistogram()
        var intervalRecords: UInt64 = 0
        var ready = false
        var finished = false
        var failure: String?
        var start: UInt64 = 0

        /// Hands the interval to the reporter, `fresh` (empty, made outside the lock) taking its
        /// place, as ``ProducePerf/Shared/takeInterval(_:)`` does for the producers.
        mutating func takeInterval(_ fresh: inout Histogram<UInt64>) -> UInt64 {
            swap(&interval, &fresh)
            defer { intervalRecords = 0 }
            return intervalRecords
        }
    }

    final class ConsumerBox: Sendable {
        let mutex = Mutex(ConsumerState())
        let stop = Atomic<Bool>(false)
        /// Batches stamped before this (the end of the warm-up) are not counted.
        let measureFrom = Atomic<UInt64>(UInt64.max)
    }

    public static func run(
        workload: EndToEndPerfWorkload, producerConfig: ProducerConfig, consumerConfig: ConsumerConfig,
        reportInterval: Double = 5, log: @escaping @Sendable (String) -> Void
    ) throws -> EndToEndPerfResult {
        let w = workload.produce
        precondition(w.recordSize >= 0 && w.producers >= 1)
        var pconfig = producerConfig
        pconfig.stampBatches = true
        var cconfig = consumerConfig
        cconfig.autoOffsetReset = .latest
        let consumerConfigFinal = cconfig

        // The consumer first: its positions (latest) must be known before anything is produced.
        let cbox = ConsumerBox()
        let topic = w.topic
        let consumerThread = Thread {
            do {
                let consumer = try Consumer(config: consumerConfigFinal, topic: topic)
                consumer.onBatch = { batch in
                    var latency: UInt64?
                    if let v = batch.firstValue, v.count >= 8 {
                        let stamp = UInt64(bigEndian: v.loadUnaligned(as: UInt64.self))
                        if stamp < cbox.measureFrom.load(ordering: .relaxed) { return }
                        if stamp <= batch.receivedNanos && batch.receivedNanos - stamp < 60_000_000_000 { latency = batch.receivedNanos - stamp }
                    }
                    let count = UInt64(batch.recordCount)
                    cbox.mutex.withLock { s in
                        s.records += count
                        s.intervalRecords += count
                        s.payload += UInt64(batch.payloadBytes)
                        s.wire += UInt64(batch.bytes)
                        s.lastReceived = batch.receivedNanos
                        if let latency {
                            _ = s.latency.record(max(latency, 1), count: count)
                            _ = s.interval.record(max(latency, 1), count: count)
                        } else {
                            s.unstamped += 1
                        }
                    }
                }
                let start = Sys.monotonicNs()
                cbox.mutex.withLock {
                    $0.ready = true
                    $0.start = start
                }
                defer { consumer.close() }
                while !cbox.stop.load(ordering: .acquiring) { try consumer.poll() }
                cbox.mutex.withLock { $0.finished = true }
            } catch {
                cbox.mutex.withLock {
                    $0.failure = "consumer: \(error)"
                    $0.ready = true
                    $0.finished = true
                }
            }
        }
        consumerThread.stackSize = 1 << 20
        consumerThread.start()
        while !cbox.mutex.withLock({ $0.ready }) { Sys.sleep(microseconds: 1000) }
        if let failure = cbox.mutex.withLock({ $0.failure }) { throw ClientError(failure) }

        // The producers: ProducePerf's open-loop threads.
        let pbox = ProducePerf.SharedBox()
        let source = try RecordSource(recordSize: w.recordSize, payload: w.payload, keys: w.keys)
        let start = Sys.monotonicNs()
        let measureFrom = start + UInt64(max(w.warmupSeconds, 0) * 1e9)
        cbox.measureFrom.store(measureFrom, ordering: .releasing)
        ProducePerf.startProducers(workload: w, config: pconfig, source: source, start: start, shared: pbox)

        var lastReport = start
        var intervals = ProducePerf.IntervalLog(start: start)
        var producerDone: UInt64?
        var timedOut = false
        while true {
            Sys.sleep(microseconds: 20_000)
            let now = Sys.monotonicNs()
            let (pFinished, produced, pFailure) = pbox.mutex.withLock { ($0.finished == w.producers, $0.total.records, $0.failure) }
            let (consumed, cFinished, cFailure) = cbox.mutex.withLock { ($0.records, $0.finished, $0.failure) }
            if pFailure != nil || cFailure != nil || cFinished { break }
            if pFinished {
                if producerDone == nil { producerDone = now }
                if consumed >= produced { break }
                if now - producerDone! >= UInt64(workload.drainTimeoutSeconds * 1e9) {
                    timedOut = true
                    break
                }
            }
            if Double(now - lastReport) >= reportInterval * 1e9 {
                let seconds = Double(now - lastReport) / 1e9
                let pRecords = intervals.close(pbox, from: lastReport, to: now).records
                var h = ProducePerf.makeHistogram()
                let cRecords = cbox.mutex.withLock { $0.takeInterval(&h) }
                func ms(_ p: Double) -> String { String(format: "%.2f", Double(h.valueAtPercentile(p)) / 1e6) }
                let line = String(
                    format: "%.1f records/sec produced, %.1f records/sec consumed (%.2f MB/sec), e2e latency p50 %@ / p99 %@ / p99.9 %@ / max %.2f ms.",
                    Double(pRecords) / seconds, Double(cRecords) / seconds, Double(cRecords) * Double(w.recordSize) / seconds / 1_048_576,
                    ms(50), ms(99), ms(99.9), Double(h.max) / 1e6)
                log(line)
                lastReport = now
            }
        }
        cbox.stop.store(true, ordering: .releasing)
        // The consumer notices within one fetch.max.wait.ms.
        let waitUntil = Sys.monotonicNs() + UInt64(max(Int(cconfig.fetchMaxWaitMs), 0) + 5_000) * 1_000_000
        while !cbox.mutex.withLock({ $0.finished }) && Sys.monotonicNs() < waitUntil { Sys.sleep(microseconds: 1000) }
        while pbox.mutex.withLock({ $0.finished }) < w.producers { Sys.sleep(microseconds: 10_000) }

        let (produced, pFailure) = intervals.finish(pbox, from: lastReport, to: Sys.monotonicNs())
        if let pFailure { throw ClientError(pFailure) }
        var result = EndToEndPerfResult()
        result.produced = produced
        result.produced.recordSize = w.recordSize
        let cFailure = cbox.mutex.withLock { s -> String? in
            result.consumedRecords = s.records
            result.consumedPayloadBytes = s.payload
            result.consumedWireBytes = s.wire
            result.unstampedBatches = s.unstamped
            result.latency = s.latency
            let from = max(s.start, measureFrom)
            result.consumeElapsedNanos = s.lastReceived > from ? s.lastReceived - from : 0
            return s.failure
        }
        if let cFailure { throw ClientError(cFailure) }
        if timedOut {
            log("warning: the consumer did not catch up within \(workload.drainTimeoutSeconds) s of the producer stopping")
        }
        return result
    }

    public static func summary(_ r: EndToEndPerfResult) -> String {
        let h = r.latency
        func ms(_ p: Double) -> String { String(format: "%.2f", Double(h.valueAtPercentile(p)) / 1e6) }
        var out = String(
            format: "Produced %d records, %.1f records/sec (%.2f MB/sec), %d errors.\nConsumed %d records, %.1f records/sec (%.2f MB/sec).\n",
            r.produced.records, r.produced.recordsPerSecond, r.produced.mebibytesPerSecond, r.produced.errors,
            r.consumedRecords, r.consumedRecordsPerSecond, r.consumedMebibytesPerSecond)
        out += String(
            format: "End-to-end latency: %.2f ms avg, %@ ms 50th, %@ ms 95th, %@ ms 99th, %@ ms 99.9th, %.2f ms max (%d unstamped batches).\n",
            h.totalCount == 0 ? 0 : h.mean / 1e6, ms(50), ms(95), ms(99), ms(99.9), Double(h.max) / 1e6, r.unstampedBatches)
        out += "\nEnd-to-end latency, producer send → consumer fetch response (ms):\n"
        h.outputPercentileDistribution(to: &out, outputValueUnitScalingRatio: 1e6)
        out += "\nProduce latency from the intended send time (ms, coordinated-omission corrected):\n"
        r.produced.intendedLatency.outputPercentileDistribution(to: &out, outputValueUnitScalingRatio: 1e6)
        return out
    }
}
