import ApusIO
import Foundation

/// The broker's own view of a run, from its metrics endpoint scraped at the run's start and
/// end (docs/metrics.md): where the time went inside the broker, beside what the client saw.
/// Each scrape is at most a second stale (shards publish once a second).
public struct BrokerView: Codable, Sendable, Equatable {
    /// Produce requests handled during the run; their time from arrival in a loop turn until
    /// the response was ready (handling, forwarding, group commit, sync waits; sending excluded).
    public var produceRequests: Double
    public var produceMeanMs: Double?
    public var produceP99Ms: Double?
    /// Its parts' p99: in the handler, waiting after it (commit, sync, other shards), and
    /// from ready to sent.
    public var produceHandlerP99Ms: Double?
    public var produceWaitP99Ms: Double?
    public var produceSendP99Ms: Double?
    /// Group commits' writes during the run.
    public var writes: Double
    public var writeMeanMs: Double?
    public var writeP99Ms: Double?
    /// Syncs (fdatasync of a partition's segments) during the run.
    public var syncs: Double
    public var syncMeanMs: Double?
    public var syncP99Ms: Double?
    /// Share of each shard's time spent in loop turns rather than waiting for I/O.
    public var shardBusy: [Double]
    /// Loop turns over all shards: their p99 and how many took over 5 ms — what a request
    /// arriving during one waits before the next turn reads it, unseen by the request
    /// latencies above (nil in older bundles and for builds without the histogram).
    public var turnP99Ms: Double?
    public var turnsOver5Ms: Double?
    /// Jobs between shards (a forwarded request's parts, their answers): how long the oldest
    /// job waited for its shard to take it, p99 and how many waits were over 5 ms.
    public var jobDelayP99Ms: Double?
    public var jobDelaysOver5Ms: Double?
}

/// Scrapes and reads a Prometheus text exposition (Apus's metrics endpoint).
public enum MetricsScrape {
    /// `GET /metrics` from 127.0.0.1:`port`: samples by their exposition key (`name{labels}`),
    /// or nil if the endpoint does not answer.
    public static func fetch(host: String = "127.0.0.1", port: UInt16) -> [String: Double]? {
        guard let socket = try? ClientSocket(host: host, port: port) else { return nil }
        var request = Array("GET /metrics HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
        let sent: Bool = request.withUnsafeMutableBytes { raw in
            var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            return (try? socket.writeAll(&iov, count: 1)) != nil
        }
        guard sent else { return nil }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { (try? socket.read(into: $0.baseAddress!, count: $0.count, wait: true)) ?? 0 }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200"), let body = text.range(of: "\r\n\r\n") else { return nil }
        return parse(String(text[body.upperBound...]))
    }

    /// Samples of a text exposition by key; comments and unparsable lines are skipped.
    public static func parse(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }

    /// A histogram's cumulative buckets (upper bound, count), summed over the series whose
    /// labels (before `le`) start with `labels` — e.g. `request="Produce"`, or "" for all.
    static func buckets(_ samples: [String: Double], _ name: String, labels: String = "") -> [(le: Double, count: Double)] {
        var byBound: [Double: Double] = [:]
        let prefix = name + "_bucket{" + labels
        for (key, value) in samples where key.hasPrefix(prefix) {
            guard let le = key.range(of: "le=\""), let end = key[le.upperBound...].firstIndex(of: "\"") else { continue }
            let bound = key[le.upperBound..<end] == "+Inf" ? Double.infinity : Double(key[le.upperBound..<end]) ?? .nan
            guard !bound.isNaN else { continue }
            byBound[bound, default: 0] += value
        }
        return byBound.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The `q` quantile of cumulative buckets, interpolated linearly within a bucket as
    /// Prometheus's histogram_quantile does; nil without observations.
    static func quantile(_ q: Double, _ buckets: [(le: Double, count: Double)]) -> Double? {
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = q * total
        var lower = 0.0
        var below = 0.0
        for (le, count) in buckets {
            if count >= rank {
                guard le.isFinite else { return lower }  // beyond the largest bound
                return lower + (le - lower) * (count > below ? (rank - below) / (count - below) : 0)
            }
            lower = le.isFinite ? le : lower
            below = count
        }
        return lower
    }

    /// What changed between two scrapes `seconds` apart.
    public static func view(from a: [String: Double], to b: [String: Double], seconds: Double) -> BrokerView {
        func delta(_ key: String) -> Double { max(0, (b[key] ?? 0) - (a[key] ?? 0)) }
        func deltaBuckets(_ name: String, labels: String = "") -> [(le: Double, count: Double)] {
            let before = Dictionary(buckets(a, name, labels: labels).map { ($0.le, $0.count) }, uniquingKeysWith: +)
            return buckets(b, name, labels: labels).map { ($0.le, max(0, $0.count - (before[$0.le] ?? 0))) }
        }
        /// A histogram's observations between the scrapes (series whose labels start with
        /// `labels`, summed): how many, their mean and their p99, in milliseconds.
        func summary(_ name: String, labels: String) -> (count: Double, meanMs: Double?, p99Ms: Double?) {
            let h = deltaBuckets(name, labels: labels)
            let count = h.last?.count ?? 0
            let total = b.keys.filter { $0.hasPrefix(name + "_sum{" + labels) }.reduce(0) { $0 + delta($1) }
            return (count, count > 0 ? total / count * 1e3 : nil, quantile(0.99, h).map { $0 * 1e3 })
        }
        let produce = summary("apus_request_duration_seconds", labels: "request=\"Produce\"")
        let parts = ["apus_request_handler_seconds", "apus_request_wait_seconds", "apus_request_send_seconds"].map {
            summary($0, labels: "request=\"Produce\"").p99Ms
        }
        let write = summary("apus_append_write_duration_seconds", labels: "")
        let sync = summary("apus_append_sync_duration_seconds", labels: "")
        /// A histogram's p99 (ms) and how many observations were over 5 ms, over every shard.
        func tail(_ name: String) -> (p99Ms: Double?, over5Ms: Double?) {
            let h = deltaBuckets(name)
            return (quantile(0.99, h).map { $0 * 1e3 }, h.last.map { all in all.count - (h.first { $0.le >= 0.005 }?.count ?? all.count) })
        }
        let turns = tail("apus_shard_turn_duration_seconds")
        let jobs = tail("apus_shard_job_delay_seconds")
        var busy: [Double] = []
        for shard in 0..<256 {
            let key = "apus_shard_busy_seconds_total{shard=\"\(shard)\"}"
            guard b[key] != nil else { break }
            busy.append(seconds > 0 ? min(1, delta(key) / seconds) : 0)
        }
        return BrokerView(produceRequests: produce.count, produceMeanMs: produce.meanMs, produceP99Ms: produce.p99Ms,
                          produceHandlerP99Ms: parts[0], produceWaitP99Ms: parts[1], produceSendP99Ms: parts[2],
                          writes: write.count, writeMeanMs: write.meanMs, writeP99Ms: write.p99Ms,
                          syncs: sync.count, syncMeanMs: sync.meanMs, syncP99Ms: sync.p99Ms, shardBusy: busy,
                          turnP99Ms: turns.p99Ms, turnsOver5Ms: turns.over5Ms, jobDelayP99Ms: jobs.p99Ms, jobDelaysOver5Ms: jobs.over5Ms)
    }
}
