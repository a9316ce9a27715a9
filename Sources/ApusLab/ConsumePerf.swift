import ApusClient
import ApusIO
import Foundation
import KafkaWire

/// A consume workload: how much to read, apart from the client configuration.
public struct ConsumePerfWorkload: Sendable, Codable {
    public var topic: String
    /// Stop after this many records; nil when bounded by `durationSeconds`.
    public var numRecords: Int?
    public var durationSeconds: Double?
    /// With `numRecords`: give up after this long without a record (kafka-consumer-perf-test's --timeout).
    public var timeoutSeconds: Double = 10

    public init(topic: String) { self.topic = topic }
}

public struct ConsumePerfResult: Sendable {
    public var records: UInt64 = 0
    /// Key + value bytes (what kafka-consumer-perf-test counts as data consumed).
    public var payloadBytes: UInt64 = 0
    /// Batch bytes as fetched (headers included, compressed if they are).
    public var wireBytes: UInt64 = 0
    public var batches: UInt64 = 0
    public var fetches: UInt64 = 0
    /// First fetch sent → last batch received.
    public var elapsedNanos: UInt64 = 0
    /// True when `numRecords` was not reached before `timeoutSeconds` without progress.
    public var timedOut = false

    public var recordsPerSecond: Double { elapsedNanos == 0 ? 0 : Double(records) * 1e9 / Double(elapsedNanos) }
    /// MiB/s of keys + values.
    public var mebibytesPerSecond: Double { elapsedNanos == 0 ? 0 : Double(payloadBytes) * 1e9 / Double(elapsedNanos) / 1_048_576 }
    /// GB/s (10^9) of batch bytes fetched.
    public var wireGigabytesPerSecond: Double { elapsedNanos == 0 ? 0 : Double(wireBytes) / Double(elapsedNanos) }
}

/// `apus perf consume`: one assign-mode consumer of every partition of a topic, as fast as it
/// goes (like kafka-consumer-perf-test), with a progress line every `reportInterval` seconds.
public enum ConsumePerf {
    final class Tally {
        var records: UInt64 = 0
        var payload: UInt64 = 0
        var wire: UInt64 = 0
        var batches: UInt64 = 0
        var lastReceived: UInt64 = 0
    }

    public static func run(
        workload: ConsumePerfWorkload, config: ConsumerConfig, reportInterval: Double = 5,
        log: @escaping @Sendable (String) -> Void
    ) throws -> ConsumePerfResult {
        let consumer = try Consumer(config: config, topic: workload.topic)
        defer { consumer.close() }
        let tally = Tally()
        consumer.onBatch = { batch in
            tally.records &+= UInt64(batch.recordCount)
            tally.payload &+= UInt64(batch.payloadBytes)
            tally.wire &+= UInt64(batch.bytes)
            tally.batches &+= 1
            tally.lastReceived = batch.receivedNanos
        }
        let start = Sys.monotonicNs()
        let deadline = workload.durationSeconds.map { start + UInt64($0 * 1e9) } ?? UInt64.max
        let target = workload.numRecords.map { UInt64($0) } ?? UInt64.max
        let timeout = UInt64(workload.timeoutSeconds * 1e9)
        var lastProgress = start
        var lastReport = start
        var reported = (records: UInt64(0), payload: UInt64(0), wire: UInt64(0))
        var result = ConsumePerfResult()
        while tally.records < target {
            let n = try consumer.poll()
            result.fetches += 1
            let now = Sys.monotonicNs()
            if now >= deadline { break }
            if n > 0 {
                lastProgress = now
            } else if workload.numRecords != nil && now - lastProgress >= timeout {
                result.timedOut = true
                break
            }
            if Double(now - lastReport) >= reportInterval * 1e9 {
                let seconds = Double(now - lastReport) / 1e9
                let records = tally.records - reported.records
                let payload = tally.payload - reported.payload
                let wire = tally.wire - reported.wire
                log(String(
                    format: "%d records consumed, %.1f records/sec (%.2f MB/sec, %.3f GB/s fetched), %d total.",
                    records, Double(records) / seconds, Double(payload) / seconds / 1_048_576, Double(wire) / seconds / 1e9, tally.records))
                reported = (tally.records, tally.payload, tally.wire)
                lastReport = now
            }
        }
        result.records = tally.records
        result.payloadBytes = tally.payload
        result.wireBytes = tally.wire
        result.batches = tally.batches
        result.elapsedNanos = (tally.lastReceived > start ? tally.lastReceived : Sys.monotonicNs()) - start
        return result
    }

    public static func summary(_ r: ConsumePerfResult) -> String {
        var out = String(
            format: "%d records consumed in %.3f s, %.1f records/sec (%.2f MB/sec of keys+values, %.3f GB/s of batches fetched), %d batches, %d fetches.",
            r.records, Double(r.elapsedNanos) / 1e9, r.recordsPerSecond, r.mebibytesPerSecond, r.wireGigabytesPerSecond, r.batches, r.fetches)
        if r.timedOut { out += " Stopped: no records for the timeout." }
        return out
    }

    public static func json(_ r: ConsumePerfResult, workload: ConsumePerfWorkload, config: ConsumerConfig) throws -> String {
        let object: [String: Any] = [
            "workload": [
                "topic": workload.topic, "numRecords": workload.numRecords as Any, "durationSeconds": workload.durationSeconds as Any,
                "timeoutSeconds": workload.timeoutSeconds,
            ],
            "consumerConfig": consumerConfigJSON(config),
            "totals": [
                "records": r.records, "payloadBytes": r.payloadBytes, "wireBytes": r.wireBytes, "batches": r.batches, "fetches": r.fetches,
                "elapsedSeconds": Double(r.elapsedNanos) / 1e9, "recordsPerSecond": r.recordsPerSecond,
                "mebibytesPerSecond": r.mebibytesPerSecond, "wireGigabytesPerSecond": r.wireGigabytesPerSecond, "timedOut": r.timedOut,
            ],
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func consumerConfigJSON(_ c: ConsumerConfig) -> [String: Any] {
        [
            "bootstrap": c.bootstrap, "fetch.min.bytes": Int(c.fetchMinBytes), "fetch.max.wait.ms": Int(c.fetchMaxWaitMs),
            "max.partition.fetch.bytes": Int(c.maxPartitionFetchBytes), "fetch.max.bytes": Int(c.fetchMaxBytes),
            "auto.offset.reset": c.autoOffsetReset.rawValue, "check.crcs": c.checkCRCs,
            "fetches.in.flight": c.fetchesInFlight,
        ]
    }
}
