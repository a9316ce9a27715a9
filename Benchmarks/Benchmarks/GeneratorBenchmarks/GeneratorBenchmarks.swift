import ApusClient
import ApusIO
import ApusLab
import Benchmark
import Foundation
import KafkaProtocol
import KafkaWire

// Targets (issue 5, release build, one producer thread, 100-byte records, 1 MiB batches):
//   in process, no socket (batching, encoding, CRC, request framing): ≥ 15 M records/s
//   the real Producer over loopback to a sink that reads produce requests and answers
//   them without per-record work:                                      ≥ 8 M records/s
//
// scalingFactor .mega: one inner iteration is one record, so time per scaled iteration is
// ns per record and throughput is records/s.

let recordSize = 100
let oneMiB = 1 << 20

/// One sink and one connected producer for every iteration of the TCP benchmark.
nonisolated(unsafe) var tcpProducer: Producer?
nonisolated(unsafe) var tcpAcked = 0
nonisolated(unsafe) var sinks: [ProduceSink] = []

func connectedProducer() -> Producer {
    if let tcpProducer { return tcpProducer }
    let sink = try! ProduceSink(partitions: 4)
    sinks.append(sink)
    var config = ProducerConfig(bootstrap: "127.0.0.1:\(sink.port)")
    config.batchSize = oneMiB
    config.lingerMs = 5
    config.acks = 1
    config.partitioner = .sticky
    let producer = try! Producer(config: config, topic: "bench")
    producer.onAck = { tcpAcked += $0.recordCount }
    tcpProducer = producer
    return producer
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 2,
        maxDuration: .seconds(5),
        maxIterations: 100
    )

    // The producer's own work per batch, in process: append each record into the partition's
    // RecordBatchBuilder, finish it (CRC32C), frame the ProduceRequest around it — what
    // Producer.send/sendBatch do before the socket write.
    Benchmark("Generator in process: batch + CRC + request framing, 100 B records, 1 MiB batches",
              configuration: .init(scalingFactor: .mega)) { benchmark in
        var builder = RecordBatchBuilder(capacity: oneMiB)
        var prefix = WireWriter(capacity: 512)
        let source = [UInt8](repeating: 0x61, count: 64 << 10)
        var framed = 0
        source.withUnsafeBytes { pool in
            var offset = 0
            builder.reset(baseTimestamp: 1_700_000_000_000)
            for _ in benchmark.scaledIterations {
                let value = UnsafeRawBufferPointer(rebasing: pool[offset..<offset + recordSize])
                offset += 61
                if offset >= pool.count - recordSize { offset -= pool.count - recordSize }
                if !builder.append(key: nil, value: value) {
                    let batch = try! builder.finish(compression: .none)
                    ProduceRequestEncoder.writePrefix(into: &prefix, version: 9, correlationId: 1, clientId: "apus-lab", acks: 1,
                                                      timeoutMs: 30_000, topic: "bench", partition: 0, recordsLength: batch.count)
                    framed &+= prefix.count &+ batch.count
                    builder.reset(baseTimestamp: 1_700_000_000_000)
                    _ = builder.append(key: nil, value: value)
                }
            }
        }
        blackHole(framed)
    }

    // The real Producer (one thread, acks=1, 4 partitions, sticky) over loopback.
    Benchmark("Generator over TCP to a sink: Producer, 100 B records, 1 MiB batches, acks=1",
              configuration: .init(scalingFactor: .mega)) { benchmark in
        let producer = connectedProducer()
        tcpAcked = 0
        let pool = [UInt8](repeating: 0x61, count: 64 << 10)
        benchmark.startMeasurement()
        pool.withUnsafeBytes { pool in
            var offset = 0
            for _ in benchmark.scaledIterations {
                try! producer.send(key: nil, value: UnsafeRawBufferPointer(rebasing: pool[offset..<offset + recordSize]))
                offset += 61
                if offset >= pool.count - recordSize { offset -= pool.count - recordSize }
            }
            try! producer.flush()
        }
        benchmark.stopMeasurement()
        precondition(tcpAcked == benchmark.scaledIterations.count, "acknowledged \(tcpAcked) of \(benchmark.scaledIterations.count)")
    }
}
