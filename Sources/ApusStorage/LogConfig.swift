/// When an append is acknowledged relative to `fdatasync` (DESIGN.md, "Durability, stated").
public enum Durability: String, Sendable, CaseIterable {
    /// Acknowledged once written to the page cache; synced only by the flush policy.
    case pageCache = "page-cache"
    /// acks=all appends are acknowledged after the fdatasync covering them (acks=1 as page-cache).
    case fsyncOnAckAll = "fsync-on-ack-all"
    /// Every append is acknowledged after its fdatasync.
    case fsyncAlways = "fsync-always"
}

/// Per-partition log settings, with Kafka's names and defaults.
public struct LogConfig: Sendable, Equatable {
    /// `segment.bytes`: roll to a new segment past this size.
    public var segmentBytes: Int64 = 1 << 30
    /// `segment.ms`: roll a non-empty segment this old (default 7 days).
    public var segmentMs: Int64 = 7 * 24 * 3600 * 1000
    /// `retention.ms`: delete segments whose newest record is older (-1: keep forever).
    public var retentionMs: Int64 = 7 * 24 * 3600 * 1000
    /// `retention.bytes`: delete old segments while the log is larger (-1: no limit).
    public var retentionBytes: Int64 = -1
    /// `index.interval.bytes`: one offset/time index entry per this many log bytes.
    public var indexIntervalBytes: Int = 4096
    /// `segment.preallocate.bytes`: blocks reserved at the start of a slower partition's new
    /// segments (a fast one's are reserved whole); 0: none. Kafka's `file.preallocate` reserves
    /// whole segments.
    public var preallocateBytes: Int64 = 64 << 20
    public var durability: Durability = .pageCache
    /// `flush.messages`: sync after this many unsynced records (Int64.max: never).
    public var flushMessages: Int64 = .max
    /// `flush.ms`: sync data older than this (Int64.max: never).
    public var flushMs: Int64 = .max

    public init() {}
}
