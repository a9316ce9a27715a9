import ApusClient
import ApusIO
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

/// A minimal Kafka broker for the benchmark: ApiVersions, Metadata (one topic, `partitions`
/// partitions, led by itself) and Produce, answered from the request's topic and partitions
/// alone — the records are never looked at.
final class ProduceSink: @unchecked Sendable {
    let port: UInt16
    let partitions: Int
    private let listener: Int32

    init(partitions: Int) throws {
        (listener, port) = try Net.listen(host: "127.0.0.1", port: 0)
        self.partitions = partitions
        let thread = Thread { [self] in
            let poller = try! Poller()
            try! poller.add(listener, writable: false)
            while true {
                _ = poller.wait(timeoutMs: -1)
                while let accepted = try? Net.accept(listener) {
                    let t = Thread { [self] in serve(accepted.fd) }
                    t.stackSize = 1 << 20
                    t.start()
                }
            }
        }
        thread.start()
    }

    /// Blocks on epoll for the one connection; answers every complete frame in order.
    func serve(_ fd: Int32) {
        defer { Net.close(fd) }
        guard let poller = try? Poller(), (try? poller.add(fd, writable: false)) != nil else { return }
        let capacity = 8 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var start = 0, end = 0
        func writeAll(_ bytes: [UInt8]) -> Bool {
            var sent = 0
            while sent < bytes.count {
                let n = bytes.withUnsafeBytes { b -> Int in
                    var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress! + sent), iov_len: b.count - sent)
                    return (try? Net.writev(fd, &iov, 1)) ?? -1
                }
                if n < 0 { return false }
                if n == 0 {
                    try? poller.modify(fd, writable: true)
                    _ = poller.wait(timeoutMs: -1)
                    try? poller.modify(fd, writable: false)
                }
                sent += n
            }
            return true
        }
        while true {
            _ = poller.wait(timeoutMs: -1)
            while true {
                if end == capacity {
                    buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: end - start)
                    end -= start
                    start = 0
                }
                guard let n = try? Net.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...])) else { break }  // drained
                if n == 0 { return }  // closed
                end += n
                while end - start >= 4 {
                    let size = Int(UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: start, as: UInt32.self)))
                    if size > capacity - 4 { return }
                    guard end - start >= 4 + size else { break }
                    guard let response = respond(to: UnsafeRawBufferPointer(rebasing: buffer[(start + 4)..<(start + 4 + size)])) else { return }
                    start += 4 + size
                    if response.isEmpty { continue }  // acks=0
                    var framed = [UInt8]()
                    framed.reserveCapacity(response.count + 4)
                    withUnsafeBytes(of: UInt32(response.count).bigEndian) { framed.append(contentsOf: $0) }
                    framed += response
                    guard writeAll(framed) else { return }
                }
                if start == end { start = 0; end = 0 }
            }
        }
    }

    func respond(to frame: UnsafeRawBufferPointer) -> [UInt8]? {
        guard frame.count >= 8 else { return nil }
        let apiKey = Int16(bigEndian: frame.loadUnaligned(fromByteOffset: 0, as: Int16.self))
        let version = Int16(bigEndian: frame.loadUnaligned(fromByteOffset: 2, as: Int16.self))
        var r = WireReader(frame)
        var w = WireWriter(capacity: 256)
        do {
            switch apiKey {
            case ApiVersionsRequest.apiKey:
                let header = try RequestHeader.decode(from: &r, version: ApiVersionsRequest.requestHeaderVersion(version))
                ResponseHeader(correlationId: header.correlationId).encode(into: &w, version: 0)
                var response = ApiVersionsResponse()
                for (key, range) in [(ProduceRequest.apiKey, Int16(3)...9), (MetadataRequest.apiKey, 1...8), (ApiVersionsRequest.apiKey, 0...3)] {
                    var k = ApiVersionsResponse.ApiVersion()
                    k.apiKey = key
                    k.minVersion = range.lowerBound
                    k.maxVersion = range.upperBound
                    response.apiKeys.append(k)
                }
                response.encode(into: &w, version: min(version, 3))
            case MetadataRequest.apiKey:
                let header = try RequestHeader.decode(from: &r, version: MetadataRequest.requestHeaderVersion(version))
                let request = try MetadataRequest.decode(from: &r, version: version)
                ResponseHeader(correlationId: header.correlationId).encode(into: &w, version: MetadataRequest.responseHeaderVersion(version))
                var response = MetadataResponse()
                var broker = MetadataResponse.MetadataResponseBroker()
                broker.nodeId = 0
                broker.host = "127.0.0.1"
                broker.port = Int32(port)
                response.brokers = [broker]
                for t in request.topics ?? [] {
                    var topic = MetadataResponse.MetadataResponseTopic()
                    topic.name = t.name
                    topic.partitions = (0..<partitions).map { p in
                        var part = MetadataResponse.MetadataResponsePartition()
                        part.partitionIndex = Int32(p)
                        part.leaderId = 0
                        part.replicaNodes = [0]
                        part.isrNodes = [0]
                        return part
                    }
                    response.topics.append(topic)
                }
                response.encode(into: &w, version: version)
            case ProduceRequest.apiKey:
                let header = try RequestHeader.decode(from: &r, version: ProduceRequest.requestHeaderVersion(version))
                let request = try ProduceRequest.decode(from: &r, version: version)
                if request.acks == 0 { return [] }
                ResponseHeader(correlationId: header.correlationId).encode(into: &w, version: ProduceRequest.responseHeaderVersion(version))
                var response = ProduceResponse()
                for t in request.topicData {
                    var topic = ProduceResponse.TopicProduceResponse()
                    topic.name = t.name
                    topic.partitionResponses = t.partitionData.map { p in
                        var part = ProduceResponse.PartitionProduceResponse()
                        part.index = p.index
                        part.baseOffset = 0
                        return part
                    }
                    response.responses.append(topic)
                }
                response.encode(into: &w, version: version)
            default:
                return nil
            }
        } catch {
            return nil
        }
        return w.bytes
    }
}

/// One sink and one connected producer for every iteration of the TCP benchmark.
nonisolated(unsafe) var tcpProducer: Producer?
nonisolated(unsafe) var tcpAcked = 0

func connectedProducer() -> Producer {
    if let tcpProducer { return tcpProducer }
    let sink = try! ProduceSink(partitions: 4)
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
