/// A latency histogram with fixed Prometheus-style bucket bounds: plain counters for one
/// owning thread (a shard), copied out for the metrics endpoint. Recording is a short scan of
/// 16 bounds and two additions — per request or per commit, never per record.
public struct LatencyBuckets: Sendable, Equatable {
    /// Upper bounds in seconds (the last bucket, +Inf, is implicit).
    public static let boundsSeconds: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
    private static let boundsNs: [UInt64] = boundsSeconds.map { UInt64($0 * 1e9) }

    /// Observations per bucket (not cumulative); the last one is over the largest bound.
    public private(set) var counts = [UInt64](repeating: 0, count: boundsSeconds.count + 1)
    public private(set) var sumNs: UInt64 = 0

    public init() {}

    public var count: UInt64 { counts.reduce(0, &+) }

    @inline(__always)
    public mutating func record(ns: UInt64) {
        var i = 0
        while i < Self.boundsNs.count && ns > Self.boundsNs[i] { i += 1 }
        counts[i] &+= 1
        sumNs &+= ns
    }

    /// Adds another histogram's observations (aggregating shards when scraped).
    public mutating func add(_ other: LatencyBuckets) {
        for i in counts.indices { counts[i] &+= other.counts[i] }
        sumNs &+= other.sumNs
    }
}
