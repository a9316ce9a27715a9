import ApusTestSupport
import KafkaProtocol
import KafkaWire
import Foundation
import Testing

/// Hostile clients never hurt the broker: random and mutated frames from many connections
/// while kcat produces and consumes; the real client sees no error and nothing is lost.
@Suite(.serialized) struct BadInputTests {
    /// A raw TCP connection to the broker.
    final class RawClient {
        let fd: Int32

        init(port: Int) throws {
            guard let fd = connectLoopback(port) else { throw HarnessError("connect failed: errno \(errno)") }
            self.fd = fd
            var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// One response frame, or nil if the broker closed the connection (or said nothing).
        func receiveFrame() -> [UInt8]? {
            var size = [UInt8](repeating: 0, count: 4)
            guard recv(fd, &size, 4, Int32(MSG_WAITALL)) == 4 else { return nil }
            let n = Int(UInt32(size[0]) << 24 | UInt32(size[1]) << 16 | UInt32(size[2]) << 8 | UInt32(size[3]))
            var body = [UInt8](repeating: 0, count: n)
            guard n == 0 || recv(fd, &body, n, Int32(MSG_WAITALL)) == n else { return nil }
            return body
        }
    }

    static func frame(_ body: [UInt8]) -> [UInt8] {
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
    }

    /// ApiVersions v0 request: key 18, version 0, correlation id, client id "t".
    static func apiVersions(correlation: UInt8, version: UInt8 = 0) -> [UInt8] {
        frame([0, 18, 0, version, 0, 0, 0, correlation, 0, 1, 0x74])
    }

    /// Over both network paths: epoll with POSIX calls, and io_uring.
    @Test(arguments: ["posix", "uring"]) func answersErrorsOrClosesOnlyTheOffendingConnection(backend: String) throws {
        let server = try ApusServerProcess(arguments: ["--io-backend", backend])
        defer { server.removeData() }
        // Unknown API version of ApiVersions: error 35 and a v0 body listing what is supported.
        let probe = try RawClient(port: server.port)
        probe.send(Self.apiVersions(correlation: 7, version: 9))
        let reply = try #require(probe.receiveFrame())
        #expect(Array(reply[0..<4]) == [0, 0, 0, 7])
        #expect(Array(reply[4..<6]) == [0, 35])
        // Oversized frame, unknown API key, malformed body: that connection is closed.
        for bad in [[0x7F, 0xFF, 0xFF, 0xFF] as [UInt8], Self.frame([0x7F, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]),
                    Self.frame([0, 3, 0, 8, 0, 0, 0, 1, 0, 0, 0xFF, 0xFF, 0xFF])] {
            let client = try RawClient(port: server.port)
            client.send(bad)
            #expect(client.receiveFrame() == nil)
        }
        // The broker still answers everyone else.
        let after = try RawClient(port: server.port)
        after.send(Self.apiVersions(correlation: 9))
        let ok = try #require(after.receiveFrame())
        #expect(Array(ok[0..<6]) == [0, 0, 0, 9, 0, 0])
        #expect(server.log.contains("exceeds socket.request.max.bytes"))
        #expect(server.log.contains("unknown API key"))
        server.stop()
    }

    /// Over both network paths: epoll with POSIX calls, and io_uring.
    @Test(arguments: ["posix", "uring"]) func fuzzedConnectionsDoNotDisturbARealClient(backend: String) throws {
        let kcat = try #require(which("kcat"))
        let server = try ApusServerProcess(arguments: ["--io-backend", backend])
        defer { server.removeData() }
        let port = server.port
        // Valid requests to mutate: ApiVersions, Metadata v1 for "fuzz", and a produce fixture.
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("KafkaProtocolTests/Fixtures")
        let seeds: [[UInt8]] = try ["produce_request_v7_0.bin", "metadata_request_v8_0.bin", "fetch_request_v11_0.bin",
                                     "api_versions_request_v3_0.bin", "list_offsets_request_v5_0.bin"].map {
            try [UInt8](Data(contentsOf: fixtures.appendingPathComponent($0)))
        }
        let fuzzing = DispatchGroup()
        for worker in 0..<4 {
            fuzzing.enter()
            Thread.detachNewThread {
                var state = UInt64(worker + 1) &* 0x9E37_79B9_7F4A_7C15
                func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
                for round in 0..<150 {
                    guard let client = try? RawClient(port: port) else { continue }
                    var body = seeds[Int(next() % UInt64(seeds.count))]
                    switch round % 5 {
                    case 0: body = (0..<Int(next() % 64)).map { _ in UInt8(truncatingIfNeeded: next()) }
                    case 1: for _ in 0..<4 { body[Int(next() % UInt64(body.count))] ^= UInt8(truncatingIfNeeded: next()) }
                    case 2: body = Array(body.prefix(Int(next() % UInt64(body.count))))
                    case 3: body.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0x7F], at: Int(next() % UInt64(body.count)))
                    default: body[8] ^= 0xFF  // corrupt the client id length
                    }
                    var bytes = Self.frame(body)
                    if round % 7 == 0 { bytes = Array(bytes.prefix(bytes.count / 2)) }  // disconnect mid-request
                    client.send(bytes)
                    if round % 3 == 0 { _ = client.receiveFrame() }
                }
                fuzzing.leave()
            }
        }
        // Meanwhile a real client produces and consumes.
        let lines = (0..<300).map { "k\($0):value-\($0)" }.joined(separator: "\n") + "\n"
        let produced = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "steady", "-K:", "-X", "acks=all"], input: lines, timeout: 60)
        #expect(produced.status == 0, "\(produced.err)")
        fuzzing.wait()
        let consumed = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "steady", "-o", "beginning", "-e", "-f", "%o %k %s\\n"], timeout: 60)
        #expect(consumed.status == 0, "\(consumed.err)")
        #expect(consumed.out.split(separator: "\n").map(String.init) == (0..<300).map { "\($0) k\($0) value-\($0)" })
        #expect(server.process.isRunning, "the broker survived:\n\(server.log.suffix(2000))")
        #expect(server.stop() == 0)
    }
}

extension BadInputTests {
    /// Responses are matched to requests by their place on the connection, not by correlation
    /// id: a client that reuses one id for a parked fetch and a produce gets each its own answer.
    /// Over both network paths: epoll with POSIX calls, and io_uring.
    @Test(arguments: ["posix", "uring"]) func reusedCorrelationIdsStillGetTheirOwnResponses(backend: String) throws {
        let server = try ApusServerProcess(arguments: ["--io-backend", backend])
        defer { server.removeData() }
        let client = try RawClient(port: server.port)
        func request<R: KafkaRequest>(_ body: R, version: Int16) -> [UInt8] {
            var w = WireWriter()
            RequestHeader(requestApiKey: R.apiKey, requestApiVersion: version, correlationId: 5, clientId: "reuse")
                .encode(into: &w, version: R.requestHeaderVersion(version))
            body.encode(into: &w, version: version)
            return Self.frame(w.bytes)
        }
        client.send(request(MetadataRequest(topics: [.init(name: "reuse")], allowAutoTopicCreation: true), version: 8))
        _ = try #require(client.receiveFrame())
        // A fetch that parks (min bytes 1, nothing there yet), then a produce, both id 5.
        let fetch = FetchRequest(replicaId: -1, maxWaitMs: 200, minBytes: 1, maxBytes: 1 << 20, isolationLevel: 0,
                                 topics: [.init(topic: "reuse", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])])
        var builder = RecordBatchBuilder(capacity: 1024)
        builder.reset(baseTimestamp: 1)
        _ = Array("x".utf8).withUnsafeBytes { builder.append(key: nil, value: $0) }
        let batch = Array(try builder.finish())
        let produce = ProduceRequest(acks: 1, timeoutMs: 1000, topicData: [.init(name: "reuse", partitionData: [.init(index: 0, records: batch)])])
        client.send(request(fetch, version: 11) + request(produce, version: 8))
        let first = try #require(client.receiveFrame())
        let second = try #require(client.receiveFrame())
        let fetched = try first.withUnsafeBytes { raw in
            var r = WireReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
            return try FetchResponse.decode(from: &r, version: 11)
        }
        #expect(fetched.responses.first?.topic == "reuse", "the first answer is the fetch's")
        let produced = try second.withUnsafeBytes { raw in
            var r = WireReader(UnsafeRawBufferPointer(rebasing: raw[4...]))
            return try ProduceResponse.decode(from: &r, version: 8)
        }
        #expect(produced.responses.first?.partitionResponses.first?.baseOffset == 0, "the second is the produce's")
        server.stop()
    }
}
