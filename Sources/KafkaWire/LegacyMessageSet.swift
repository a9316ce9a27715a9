/// Legacy message sets (magic 0 and 1, Kafka < 0.11): recognised so they can be rejected
/// with a clear error. Apus stores and serves RecordBatch v2 only.
public struct LegacyMessageHeader: Hashable, Sendable {
    public var offset: Int64
    public var messageSize: Int32
    public var crc: UInt32
    public var magic: Int8
    public var attributes: Int8

    /// Reads the header of the first legacy message in `bytes`; throws if it is not one.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(WireError) {
        var r = WireReader(bytes)
        r.message = "MessageSet"
        r.field = "offset"
        offset = try r.readInt64()
        r.field = "messageSize"
        messageSize = try r.readInt32()
        r.field = "crc"
        crc = try r.readUInt32()
        r.field = "magic"
        magic = try r.readInt8()
        r.field = "attributes"
        attributes = try r.readInt8()
        if magic != 0 && magic != 1 {
            r.field = "magic"
            throw r.error(.invalid("magic \(magic) is not a legacy message"))
        }
    }

    /// True if the records at `bytes` start with a legacy (magic 0/1) message.
    public static func isLegacy(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > RecordBatchLayout.magic else { return false }
        let magic = bytes.load(fromByteOffset: RecordBatchLayout.magic, as: Int8.self)
        return magic == 0 || magic == 1
    }
}
