import ApusClient
import ApusLab
import ApusTestSupport
import Foundation
import Testing

/// Retries, metadata refresh and idempotence, against a sink that answers chosen produce
/// requests with an error, and against a real apus serve.
@Suite(.serialized) struct ProducerRetryTests {
    final class Tally { var acked = 0; var failed: [Int16] = [] }

    static func produce(_ config: ProducerConfig, count: Int, topic: String = "retries") throws -> (Tally, Producer) {
        let producer = try Producer(config: config, topic: topic)
        let tally = Tally()
        producer.onAck = { ack in
            if ack.errorCode == 0 { tally.acked += ack.recordCount } else { tally.failed.append(ack.errorCode) }
        }
        let value = [UInt8](repeating: 0x62, count: 100)
        try value.withUnsafeBytes { v in
            for _ in 0..<count { try producer.send(key: nil, value: v) }
        }
        try producer.flush()
        return (tally, producer)
    }

    static func config(_ sink: ProduceSink) -> ProducerConfig {
        var config = ProducerConfig(bootstrap: "127.0.0.1:\(sink.port)")
        config.acks = 1
        config.batchSize = 16 << 10
        config.retryBackoffMs = 5
        config.partitioner = .roundRobin
        return config
    }

    @Test func retriableErrorsAreRetriedAndRefreshMetadata() throws {
        let sink = try ProduceSink(partitions: 2)
        // NOT_LEADER_OR_FOLLOWER twice (stale metadata), then REQUEST_TIMED_OUT.
        sink.injectErrors([6, 6, 7])
        let (tally, producer) = try Self.produce(Self.config(sink), count: 20_000)
        #expect(tally.acked == 20_000)
        #expect(tally.failed.isEmpty)
        #expect(producer.metrics.retries == 3)
        #expect(producer.metrics.sentBatches == producer.metrics.batches + 3)
        #expect(producer.metrics.metadataRefreshes >= 1)
        #expect(sink.metadataRequests >= 2)  // start-up, then the refresh
        // Every record was accepted exactly once by the sink.
        #expect(sink.acceptedRecords == 20_000)
    }

    @Test func nonRetriableErrorsAndExhaustedRetriesAreReported() throws {
        let sink = try ProduceSink(partitions: 1)
        // MESSAGE_TOO_LARGE is final; NOT_LEADER_OR_FOLLOWER twice outlasts retries=1.
        sink.injectErrors([10, 6, 6])
        var config = Self.config(sink)
        config.retries = 1
        config.maxInFlight = 1
        let (tally, producer) = try Self.produce(config, count: 5_000)
        #expect(tally.failed == [10, 6])
        #expect(producer.metrics.errorsByCode == [10: 1, 6: 1])
        #expect(producer.metrics.retries == 1)
        #expect(sink.acceptedRecords == tally.acked)  // what was acknowledged is what the sink accepted
        #expect(tally.acked < 5_000)
    }

    @Test func deliveryTimeoutBoundsRetries() throws {
        let sink = try ProduceSink(partitions: 1)
        sink.injectErrors([Int16](repeating: 7, count: 100))
        var config = Self.config(sink)
        config.retryBackoffMs = 20
        config.deliveryTimeoutMs = 200
        config.maxInFlight = 1
        let started = Date()
        let (tally, producer) = try Self.produce(config, count: 100)
        #expect(tally.failed == [7])
        #expect(producer.metrics.retries >= 3 && producer.metrics.retries <= 12)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    /// With one request in flight, the batches made ready meanwhile wait and go together: one
    /// per partition per request, up to max.request.size; none lost, none twice — whether
    /// `send` waits once the next request is full or, as Kafka's clients, only for buffer.memory.
    @Test(arguments: [1 << 20, 16 << 10], ProducerConfig.SendWait.allCases)
    func readyBatchesShareARequestWhileTheConnectionIsFull(maxRequestSize: Int, sendWaits: ProducerConfig.SendWait) throws {
        let sink = try ProduceSink(partitions: 4)
        var config = Self.config(sink)
        config.maxInFlight = 1
        config.maxRequestSize = maxRequestSize
        config.sendWaits = sendWaits
        let (tally, producer) = try Self.produce(config, count: 200_000)
        #expect(tally.acked == 200_000 && tally.failed.isEmpty)
        #expect(sink.acceptedRecords == 200_000)
        let m = producer.metrics
        #expect(m.sentBatches == m.batches && m.retries == 0)
        #expect(m.maxInFlight == 1)
        if maxRequestSize == 16 << 10 {
            #expect(m.requests == m.batches)  // a 16 KiB batch fills a 16 KiB request
        } else {
            #expect(m.requests < m.batches)
            #expect(m.requests * 4 >= m.batches)  // at most one batch per partition
        }
        if sendWaits == .bufferMemory {
            // 20 MB of records fit in buffer.memory (32 MiB): send never waited.
            #expect(m.roomWaitTotalNanos == 0)
        }
    }

    /// Idempotence with multi-partition requests against a real broker: sequences stay in order.
    @Test func idempotentProducerAgainstApusServe() throws {
        let broker = try startBroker(partitions: 3)
        defer { broker.stop(); broker.removeData() }
        var config = ProducerConfig(bootstrap: broker.bootstrap)
        try config.set("enable.idempotence", "true")
        config.batchSize = 16 << 10
        let (tally, producer) = try Self.produce(config, count: 30_000, topic: "idempotent")
        #expect(producer.producerId >= 0)
        #expect(tally.acked == 30_000 && tally.failed.isEmpty)
        let ends = try producer.kafkaConnection.endOffsets(of: "idempotent", partitions: 3)
        #expect(ends.reduce(0, +) == 30_000)
        // Idempotence needs acks=all.
        var bad = ProducerConfig(bootstrap: broker.bootstrap)
        bad.acks = 1
        bad.enableIdempotence = true
        #expect(throws: ClientError.self) { _ = try Producer(config: bad, topic: "idempotent") }
    }
}
