import KafkaWire

/// One committed offset as the group coordinator persists it: the value of one record in the
/// broker's internal offsets log (one record per group/topic/partition commit).
///
/// The coordinator never does I/O: an OffsetCommit's ``GroupOutput`` carries the records to
/// append, and at start-up the broker feeds every stored record, in log order, to
/// ``GroupCoordinator/replay(encoded:)``; the last record for a partition wins.
///
/// Encoding (version 1, big-endian, strings with unsigned-varint length + 1 as in Kafka's
/// compact strings, so no string length limit of 32 KiB applies):
///
/// ```
/// version            int16   (1)
/// groupId            compact string
/// topic              compact string
/// partition          int32
/// offset             int64
/// leaderEpoch        int32   (-1 if unknown)
/// commitTimestampMs  int64
/// metadata           compact string
/// ```
///
/// A deletion (DeleteGroups, OffsetDelete) is written as version 2: `version int16 (2) |
/// groupId | topic | partition` — replaying it forgets that partition's committed offset.
///
/// Decoding never traps: truncated, oversized or trailing bytes and unknown versions come back
/// as ``OffsetCommitRecordError``.
public struct OffsetCommitRecord: Hashable, Sendable {
    /// The only version written; decoding accepts exactly this one.
    public static let currentVersion: Int16 = 1

    /// The version of a deletion record.
    public static let deletionVersion: Int16 = 2

    public var groupId: String
    public var topic: String
    public var partition: Int32
    public var offset: CommittedOffset
    /// The record deletes the partition's committed offset (`offset` is then meaningless).
    public var isDeletion = false

    public init(groupId: String, topic: String, partition: Int32, offset: CommittedOffset) {
        self.groupId = groupId
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    /// A record that deletes `groupId`'s committed offset for `topic`/`partition`.
    public static func deletion(groupId: String, topic: String, partition: Int32) -> OffsetCommitRecord {
        var record = OffsetCommitRecord(groupId: groupId, topic: topic, partition: partition,
                                        offset: CommittedOffset(offset: -1, commitTimestampMs: -1))
        record.isDeletion = true
        return record
    }

    /// The record's bytes (a record value in the offsets log).
    public func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 48 + groupId.utf8.count + topic.utf8.count + offset.metadata.utf8.count)
        w.writeInt16(isDeletion ? Self.deletionVersion : Self.currentVersion)
        w.writeString(groupId, compact: true)
        w.writeString(topic, compact: true)
        w.writeInt32(partition)
        if isDeletion { return w.bytes }
        w.writeInt64(offset.offset)
        w.writeInt32(offset.leaderEpoch)
        w.writeInt64(offset.commitTimestampMs)
        w.writeString(offset.metadata, compact: true)
        return w.bytes
    }

    /// Decodes a record written by ``encoded()``.
    public static func decode(_ bytes: [UInt8]) throws(OffsetCommitRecordError) -> OffsetCommitRecord {
        try bytes.withRawBytes { (raw) throws(OffsetCommitRecordError) in try decode(raw) }
    }

    /// Decodes a record written by ``encoded()``.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(OffsetCommitRecordError) -> OffsetCommitRecord {
        var r = WireReader(bytes)
        r.message = "OffsetCommitRecord"
        r.field = "version"
        let version: Int16
        do throws(WireError) { version = try r.readInt16() } catch { throw .malformed(error) }
        guard version == currentVersion || version == deletionVersion else { throw .unsupportedVersion(version) }
        r.version = version
        let record: OffsetCommitRecord
        do throws(WireError) { record = try version == deletionVersion ? readDeletion(&r) : readVersion1(&r) } catch { throw .malformed(error) }
        guard r.isAtEnd else { throw .trailingBytes(r.remaining) }
        return record
    }

    private static func readDeletion(_ r: inout WireReader) throws(WireError) -> OffsetCommitRecord {
        r.field = "groupId"
        let groupId = try r.readString(compact: true)
        r.field = "topic"
        let topic = try r.readString(compact: true)
        r.field = "partition"
        return deletion(groupId: groupId, topic: topic, partition: try r.readInt32())
    }

    private static func readVersion1(_ r: inout WireReader) throws(WireError) -> OffsetCommitRecord {
        r.field = "groupId"
        let groupId = try r.readString(compact: true)
        r.field = "topic"
        let topic = try r.readString(compact: true)
        r.field = "partition"
        let partition = try r.readInt32()
        r.field = "offset"
        let offset = try r.readInt64()
        r.field = "leaderEpoch"
        let leaderEpoch = try r.readInt32()
        r.field = "commitTimestampMs"
        let timestamp = try r.readInt64()
        r.field = "metadata"
        let metadata = try r.readString(compact: true)
        return OffsetCommitRecord(
            groupId: groupId, topic: topic, partition: partition,
            offset: CommittedOffset(offset: offset, leaderEpoch: leaderEpoch, metadata: metadata, commitTimestampMs: timestamp))
    }
}

/// Why bytes could not be decoded as an ``OffsetCommitRecord``.
public enum OffsetCommitRecordError: Error, Equatable, Sendable {
    /// The record was written by a format version this build does not read.
    case unsupportedVersion(Int16)
    /// Truncated or inconsistent bytes (lengths past the end, negative lengths, …).
    case malformed(WireError)
    /// The record decoded but `count` bytes followed it.
    case trailingBytes(Int)
}

/// A partition's committed position in a group, as OffsetFetch reports it.
public struct CommittedOffset: Hashable, Sendable {
    /// The next offset the group will consume.
    public var offset: Int64
    /// The leader epoch of the committed offset (-1 if the client did not say).
    public var leaderEpoch: Int32
    /// The client's metadata string ("" when none).
    public var metadata: String
    /// When the commit was made (the request's timestamp for OffsetCommit v1, else the broker's clock).
    public var commitTimestampMs: Int64

    public init(offset: Int64, leaderEpoch: Int32 = -1, metadata: String = "", commitTimestampMs: Int64) {
        self.offset = offset
        self.leaderEpoch = leaderEpoch
        self.metadata = metadata
        self.commitTimestampMs = commitTimestampMs
    }
}
