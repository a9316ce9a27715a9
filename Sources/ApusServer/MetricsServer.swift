import ApusConfig
import ApusIO
import Foundation
import Synchronization

/// The metrics listener (`metrics.listen`): a small HTTP/1.1 server on its own thread, never on
/// a shard. `GET /metrics` (Prometheus text, or OpenMetrics when the Accept header asks for
/// it), `GET /health/live` and `GET /health/ready`. One request per connection, answered in
/// turn; a client that sends nothing for two seconds is dropped.
final class MetricsServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let hub: MetricsHub
    private let stalls: StallReport
    private let stop = Atomic<Bool>(false)
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(host: String, port: UInt16, hub: MetricsHub, stalls: StallReport) throws(SystemError) {
        (listener, self.port) = try Net.listen(host: host, port: port, backlog: 64)
        self.hub = hub
        self.stalls = stalls
    }

    func start() {
        let thread = Thread { [self] in
            while !stop.load(ordering: .acquiring) {
                guard Net.wait(listener, timeoutMs: 200) else { continue }
                while let (fd, _) = try? Net.accept(listener) {  // nil: none waiting, or an error
                    serve(fd)
                    Net.close(fd)
                }
            }
            finished.signal()
        }
        thread.name = "apus-metrics"
        thread.start()
        self.thread = thread
    }

    func shutdown() {
        guard thread != nil else { return }
        stop.store(true, ordering: .releasing)
        finished.wait()
        Net.close(listener)
    }

    private func serve(_ fd: Int32) {
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16 << 10 {
            guard Net.wait(fd, timeoutMs: 2_000) else { return }
            let n = buffer.withUnsafeMutableBytes { (try? Net.read(fd, into: $0)) ?? 0 }
            guard n > 0 else { return }
            request += buffer[0..<n]
            if Self.headerEnd(request) != nil { break }
        }
        guard let end = Self.headerEnd(request) else { return }
        let head = String(decoding: request[0..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            respond(fd, 400, "text/plain; charset=utf-8", "bad request\n")
            return
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            respond(fd, 405, "text/plain; charset=utf-8", "only GET\n")
            return
        }
        let path = parts[1].split(separator: "?").first.map(String.init) ?? ""
        let accept = lines.dropFirst().first { $0.lowercased().hasPrefix("accept:") }.map { $0.lowercased() } ?? ""
        let head_ = parts[0] == "HEAD"
        switch path {
        case "/metrics":
            let open = accept.contains("application/openmetrics-text")
            let text = MetricsExposition.render(hub: hub, stalls: stalls.snapshot, process: ProcessStats.sample(), openMetrics: open)
            respond(fd, 200, open ? MetricsExposition.openMetricsContentType : MetricsExposition.prometheusContentType, text, headOnly: head_)
        case "/health/live":
            respond(fd, 200, "text/plain; charset=utf-8", "live\n", headOnly: head_)
        case "/health/ready":
            let ready = hub.isReady()
            respond(fd, ready ? 200 : 503, "text/plain; charset=utf-8", ready ? "ready\n" : "not ready\n", headOnly: head_)
        default:
            respond(fd, 404, "text/plain; charset=utf-8", "not found: /metrics, /health/live, /health/ready\n", headOnly: head_)
        }
    }

    private func respond(_ fd: Int32, _ status: Int, _ type: String, _ body: String, headOnly: Bool = false) {
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][status] ?? ""
        let bodyBytes = Array(body.utf8)
        let header = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bodyBytes.count)\r\nConnection: close\r\n\r\n"
        _ = Net.sendAll(fd, Array(header.utf8) + (headOnly ? [] : bodyBytes), timeoutMs: 2_000)
    }

    /// Index of the blank line ending the request head, if it has arrived.
    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { return i }
        return nil
    }
}
