import ApusClient
import ApusTestSupport
import ApusLab
import Foundation
import KafkaWire
import Testing

@Suite(.serialized) struct ConsumerIntegrationTests {
    /// Value of record `i`: "rec-%08d" then bytes `(i + j) & 0xff`, 100 bytes in all.
    static func fill(_ value: UnsafeMutableRawBufferPointer, _ i: Int) {
        let prefix = Array(String(format: "rec-%08d", i).utf8)
        for j in 0..<value.count { value[j] = j < prefix.count ? prefix[j] : UInt8(truncatingIfNeeded: i + j) }
    }

    static func index(of value: UnsafeRawBufferPointer) -> Int? {
        guard value.count == 100, value[0] == UInt8(ascii: "r") else { return nil }
        guard let i = Int(String(decoding: UnsafeRawBufferPointer(rebasing: value[4..<12]), as: UTF8.self)) else { return nil }
        for j in 12..<100 where value[j] != UInt8(truncatingIfNeeded: i + j) { return nil }
        return i
    }

    /// Both ways of receiving (on the caller's thread, and on the consumer's receive thread),
    /// with one fetch in flight and with two (each for half of the partitions).
    @Test(arguments: [("none", false, 1), ("lz4", false, 1), ("none", true, 1), ("lz4", true, 1), ("none", false, 2), ("lz4", true, 2)])
    func consumesEverythingFromEarliest(compression: String, receiveThread: Bool, fetchesInFlight: Int) throws {
        // The receive-thread runs read from a broker on io_uring, the others from one on epoll.
        let broker = try startBroker(partitions: 4, backend: receiveThread ? "uring" : "posix")
        defer { broker.removeData() }
        let topic = "consume-\(compression)-\(receiveThread)-\(fetchesInFlight)"
        let total = 50_000
        var pconfig = ProducerConfig(bootstrap: broker.bootstrap)
        try pconfig.set("acks", "1")
        try pconfig.set("compression.type", compression)
        try pconfig.set("batch.size", "65536")
        let producer = try Producer(config: pconfig, topic: topic)
        var acked = 0
        producer.onAck = { acked += $0.errorCode == 0 ? $0.recordCount : 0 }
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 8)
        defer { value.deallocate() }
        for i in 0..<total {
            Self.fill(value, i)
            try producer.send(key: nil, value: UnsafeRawBufferPointer(value))
        }
        try producer.flush()
        #expect(acked == total)
        let ends = try producer.kafkaConnection.endOffsets(of: topic, partitions: producer.partitionCount)

        var cconfig = ConsumerConfig(bootstrap: broker.bootstrap)
        try cconfig.set("auto.offset.reset", "earliest")
        try cconfig.set("max.partition.fetch.bytes", "100000")  // several fetches, partial batches at the ends
        try cconfig.set("fetch.max.wait.ms", "100")
        try cconfig.set("receive.thread", String(receiveThread))
        try cconfig.set("fetches.in.flight", String(fetchesInFlight))
        let consumer = try Consumer(config: cconfig, topic: topic)
        #expect(consumer.positions == [Int64](repeating: 0, count: 4))
        var seen = [Bool](repeating: false, count: total)
        var next = [Int64](repeating: 0, count: 4)
        var records = 0, batchRecords = 0, gaps = 0, bad = 0, duplicates = 0, batches = 0
        consumer.onRecord = { partition, offset, record in
            records += 1
            if offset != next[Int(partition)] { gaps += 1 }
            next[Int(partition)] = offset + 1
            guard let v = record.value, let i = Self.index(of: v) else { bad += 1; return }
            if seen[i] { duplicates += 1 }
            seen[i] = true
        }
        consumer.onBatch = { batch in
            batches += 1
            batchRecords += batch.recordCount
            #expect(batch.firstValue?.count == 100)
            #expect(batch.lastOffset - batch.baseOffset + 1 == Int64(batch.recordCount))
        }
        let deadline = Date().addingTimeInterval(10)
        while records < total && Date() < deadline { try consumer.poll() }
        #expect(records == total)
        #expect(batchRecords == total)
        #expect(gaps == 0)
        #expect(bad == 0)
        #expect(duplicates == 0)
        #expect(seen.allSatisfy { $0 })
        #expect(batches > 4)
        #expect(consumer.positions == ends)
        #expect(consumer.highWatermarks == ends)
        // Nothing more: a poll at the end returns after fetch.max.wait.ms with no records.
        #expect(try consumer.poll() == 0)
        try consumer.drain()
        #expect(try consumer.kafkaConnection.endOffsets(of: topic, partitions: 4) == ends)
        // Two in flight: the backlog was read in halves (a fetch per share), the end with one.
        #expect(fetchesInFlight == 1 ? consumer.shareFetches == 0 : consumer.shareFetches > 0, "\(consumer.shareFetches) share fetches")
    }

    @Test func latestStartsAtTheEnd() throws {
        let broker = try startBroker(partitions: 2)
        defer { broker.removeData() }
        _ = try ProducerIntegrationTests.produce(broker, topic: "latest", count: 1000, props: ["acks": "1"])
        var cconfig = ConsumerConfig(bootstrap: broker.bootstrap)
        try cconfig.set("auto.offset.reset", "latest")
        try cconfig.set("fetch.max.wait.ms", "50")
        let consumer = try Consumer(config: cconfig, topic: "latest")
        #expect(consumer.positions.reduce(0, +) == 1000)
        #expect(try consumer.poll() == 0)
    }

    @Test func endToEndReportsWhatItProduced() throws {
        let broker = try startBroker(partitions: 4)
        defer { broker.removeData() }
        var pconfig = ProducerConfig(bootstrap: broker.bootstrap)
        try pconfig.set("acks", "1")
        try pconfig.set("linger.ms", "2")
        try pconfig.set("compression.type", "lz4")  // stamps go in before compression
        pconfig.partitioner = .sticky
        var cconfig = ConsumerConfig(bootstrap: broker.bootstrap)
        try cconfig.set("fetch.max.wait.ms", "50")
        var workload = EndToEndPerfWorkload(topic: "e2e")
        workload.produce.durationSeconds = 2
        workload.produce.throughput = 20_000
        workload.produce.recordSize = 100
        let result = try EndToEndPerf.run(workload: workload, producerConfig: pconfig, consumerConfig: cconfig, reportInterval: 1) { _ in }
        #expect(result.produced.records > 20_000)
        #expect(result.produced.errors == 0)
        #expect(result.consumedRecords == result.produced.records)
        #expect(result.unstampedBatches == 0)
        #expect(result.latency.totalCount == result.consumedRecords)
        #expect(result.latency.valueAtPercentile(50) > 0)
        #expect(result.latency.max < 5_000_000_000)
        #expect(EndToEndPerf.summary(result).contains("End-to-end latency"))
    }
}
