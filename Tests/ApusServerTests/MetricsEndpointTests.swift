import ApusServer
import ApusTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The metrics and health endpoint of a real `apus serve`, spoken to over HTTP/1.1 on a socket.
@Suite(.serialized) struct MetricsEndpointTests {
    /// One request; the status line's code, the headers (lower-cased names) and the body.
    func http(_ port: Int, _ path: String, method: String = "GET", accept: String? = nil) throws -> (status: Int, headers: [String: String], body: String) {
        guard let fd = connectLoopback(port) else { throw HarnessError("connect to metrics port \(port): errno \(errno)") }
        defer { close(fd) }
        let request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (accept.map { "Accept: \($0)\r\n" } ?? "") + "\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let head = parts[0].components(separatedBy: "\r\n")
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2 { headers[kv[0].lowercased()] = kv[1].trimmingCharacters(in: .whitespaces) }
        }
        return (status, headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// Samples of a text exposition: "name{labels}" → value.
    func samples(_ body: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            out[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        return out
    }

    @Test func metricsAfterTrafficHealthAndErrors() throws {
        let kcat = try #require(which("kcat"), "kcat is installed by tools/setup")
        let server = try ApusServerProcess()
        defer { server.removeData() }
        let lines = (0..<20).map { "v\($0)" }.joined(separator: "\n") + "\n"
        #expect(try run(kcat, ["-P", "-b", server.bootstrap, "-t", "mt"], input: lines).status == 0)

        // Shards publish once a second.
        var found: [String: Double] = [:]
        var body = ""
        for _ in 0..<40 {
            let r = try http(server.metricsPort, "/metrics")
            #expect(r.status == 200)
            #expect(r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            body = r.body
            found = samples(body)
            if found["apus_topic_messages_in_total{topic=\"mt\"}"] == 20 { break }
            usleep(250_000)
        }
        #expect(found["apus_topic_messages_in_total{topic=\"mt\"}"] == 20)
        #expect(found["apus_log_end_offset{topic=\"mt\",partition=\"0\"}"] == 20)
        #expect((found["apus_requests_total{request=\"Produce\"}"] ?? 0) >= 1)
        #expect((found["apus_request_duration_seconds_count{request=\"Produce\"}"] ?? 0) >= 1)
        #expect(found["apus_shard_disk_waits_total"] == 0)
        #expect((found["process_resident_memory_bytes"] ?? 0) > 0)
        // Every exported sample belongs to a family declared with HELP and TYPE before it.
        var declared: Set<String> = []
        for line in body.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                declared.insert(String(line.split(separator: " ")[2]))
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let family = ["_bucket", "_sum", "_count"].reduce(name) { $0.hasSuffix($1) && !declared.contains($0) ? String($0.dropLast($1.count)) : $0 }
                #expect(declared.contains(family), "\(name) has no TYPE line")
            }
        }
        for row in Server.metricsTable.split(separator: "\n").dropFirst(2) {
            let name = String(row.split(separator: "`")[1])
            #expect(declared.contains(name), "\(name) is in the catalog but not exported")
        }

        let open = try http(server.metricsPort, "/metrics", accept: "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        #expect(open.headers["content-type"]?.hasPrefix("application/openmetrics-text") == true)
        #expect(open.body.hasSuffix("# EOF\n"))
        #expect(open.body.contains("# TYPE apus_requests counter") && open.body.contains("apus_requests_total{request=\"Produce\"}"))

        #expect(try http(server.metricsPort, "/health/live").status == 200)
        #expect(try http(server.metricsPort, "/health/ready").status == 200)
        #expect(try http(server.metricsPort, "/elsewhere").status == 404)
        #expect(try http(server.metricsPort, "/metrics", method: "POST").status == 405)
        // Garbage on the metrics port closes that connection only.
        #expect(try http(server.metricsPort, "/a b").status == 400)
        #expect(try http(server.metricsPort, "/health/live").status == 200)
        #expect(server.stop() == 0, "SIGTERM stops cleanly:\n\(server.log)")
    }

    @Test func offMeansNoListener() throws {
        let server = try ApusServerProcess(arguments: ["--set", "metrics.listen=off"])
        defer { server.removeData() }
        #expect(server.log.contains("metrics=off"))
        #expect(throws: HarnessError.self) { try http(server.metricsPort, "/metrics") }
        #expect(server.stop() == 0)
    }

    @Test func docsListEveryMetric() throws {
        let docs = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/metrics.md"), encoding: .utf8)
        #expect(docs.contains(Server.metricsTable), "docs/metrics.md is out of date: regenerate its table with apus serve --print-metrics")
    }
}
