import ApusIO
import Foundation
#if canImport(Glibc)
import Glibc  // iovec
#endif
import KafkaProtocol
import KafkaWire
import Synchronization

/// A Kafka-speaking sink for measuring load generators (`apus perf sink`): it answers
/// ApiVersions, Metadata (any topic, `partitions` partitions, led by itself) and Produce from
/// the request's topic and partitions alone — the records are never looked at — so a
/// generator's rate against it is the generator's own ceiling. Tests can make it answer
/// chosen produce requests with an error code.
public final class ProduceSink: @unchecked Sendable {
    public let port: UInt16
    public let partitions: Int
    private let listener: Int32
    private let state = Mutex(State())

    struct State {
        var injected: [Int16] = []
        var produceRequests = 0
        var metadataRequests = 0
        var records = 0
    }

    /// The next produce partition responses get these error codes, one each, in order.
    public func injectErrors(_ codes: [Int16]) { state.withLock { $0.injected += codes } }
    public var produceRequests: Int { state.withLock { $0.produceRequests } }
    public var metadataRequests: Int { state.withLock { $0.metadataRequests } }
    /// Records in the batches answered without an error (from the batch headers).
    public var acceptedRecords: Int { state.withLock { $0.records } }

    public init(host: String = "127.0.0.1", port: UInt16 = 0, partitions: Int) throws {
        (listener, self.port) = try Net.listen(host: host, port: port)
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

    /// The response to one request frame (empty for acks=0; nil closes the connection).
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
                state.withLock { $0.metadataRequests += 1 }
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
                state.withLock { $0.produceRequests += 1 }
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
                        let records = p.records.map { Self.recordCount($0) } ?? 0
                        state.withLock { s in
                            if s.injected.isEmpty { s.records += records } else { part.errorCode = s.injected.removeFirst() }
                        }
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

    /// Records in a records section: the record counts of its batch headers.
    static func recordCount(_ bytes: [UInt8]) -> Int {
        var total = 0
        var at = 0
        while at + 61 <= bytes.count {
            let length = Int(Int32(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 8, as: Int32.self) }))
            total += Int(Int32(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 57, as: Int32.self) }))
            at += 12 + max(length, 49)
        }
        return total
    }
}
