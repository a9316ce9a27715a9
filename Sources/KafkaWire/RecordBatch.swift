/// RecordBatch v2 (magic 2): the header layout and a batch-level view that never decodes records.
///
/// ```
/// baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 | crc uint32 |
/// attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64 |
/// producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32 | records…
/// ```
/// The CRC (CRC32C) covers everything from `attributes` to the end of the batch, so the base
/// offset and partition leader epoch can be rewritten in place without recomputing it.
public enum RecordBatchLayout {
    public static let baseOffset = 0
    public static let batchLength = 8
    public static let partitionLeaderEpoch = 12
    public static let magic = 16
    public static let crc = 17
    public static let attributes = 21
    public static let lastOffsetDelta = 23
    public static let baseTimestamp = 27
    public static let maxTimestamp = 35
    public static let producerId = 43
    public static let producerEpoch = 51
    public static let baseSequence = 53
    public static let recordCount = 57
    /// Size of the header; records start here.
    public static let headerSize = 61
    /// Bytes before (and including) `batchLength`: total size = batchLength + this.
    public static let logOverhead = 12
}

/// RecordBatch attribute bits.
public struct RecordBatchAttributes: OptionSet, Hashable, Sendable {
    public var rawValue: Int16
    @inlinable public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let logAppendTime = RecordBatchAttributes(rawValue: 1 << 3)
    public static let transactional = RecordBatchAttributes(rawValue: 1 << 4)
    public static let control = RecordBatchAttributes(rawValue: 1 << 5)
    public static let deleteHorizon = RecordBatchAttributes(rawValue: 1 << 6)

    /// The compression codec bits (0–2) as their raw value.
    @inlinable public var compressionBits: UInt8 { UInt8(rawValue & 0x7) }

    @inlinable
    public init(compression: CompressionCodec, _ flags: RecordBatchAttributes = []) {
        self.rawValue = flags.rawValue | Int16(compression.rawValue)
    }
}

/// A view of one record batch in memory the caller keeps alive. Reading a field is a load;
/// nothing is decoded or copied. Use ``init(validating:)`` on untrusted bytes.
public struct RecordBatchView {
    /// Exactly the batch's bytes (`batchLength + 12`).
    public let bytes: UnsafeRawBufferPointer

    /// A view over a batch already validated (or produced by this process).
    @inlinable
    public init(unchecked bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Validates the batch at the start of `buffer`: size fields, magic, CRC and header
    /// sanity. Per batch only: no per-record work (the CRC is one ISA-L call).
    /// - Parameter maxSize: the largest batch accepted (e.g. `message.max.bytes`).
    public init(validating buffer: UnsafeRawBufferPointer, maxSize: Int = Int(Int32.max)) throws(WireError) {
        let total = try RecordBatchView.sizeOfBatch(at: buffer, maxSize: maxSize)
        let batch = UnsafeRawBufferPointer(rebasing: buffer[0..<total])
        let view = RecordBatchView(unchecked: batch)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: batch[RecordBatchLayout.attributes...]))
        if computed != view.crc {
            throw RecordBatchView.error(.invalid("CRC mismatch: stored \(view.crc), computed \(computed)"), "crc")
        }
        if view.recordCount < 0 { throw RecordBatchView.error(.invalid("negative record count"), "recordCount") }
        if view.lastOffsetDelta < 0 { throw RecordBatchView.error(.invalid("negative lastOffsetDelta"), "lastOffsetDelta") }
        if !view.isCompressed && view.recordCount > 0 && view.lastOffsetDelta < view.recordCount - 1 {
            throw RecordBatchView.error(.invalid("lastOffsetDelta \(view.lastOffsetDelta) below recordCount - 1"), "lastOffsetDelta")
        }
        if view.attributes.compressionBits > 4 {
            throw RecordBatchView.error(.invalid("unknown compression codec \(view.attributes.compressionBits)"), "attributes")
        }
        self = view
    }

    /// The total size of the batch at the start of `buffer` after checking its length field and
    /// magic, without checking the CRC. Throws if the buffer holds less than the whole batch.
    public static func sizeOfBatch(at buffer: UnsafeRawBufferPointer, maxSize: Int = Int(Int32.max)) throws(WireError) -> Int {
        guard buffer.count >= RecordBatchLayout.magic + 1 else {
            throw error(.truncated(needed: RecordBatchLayout.magic + 1, remaining: buffer.count), "batchLength")
        }
        let magic = buffer.load(fromByteOffset: RecordBatchLayout.magic, as: Int8.self)
        if magic != 2 {
            if magic == 0 || magic == 1 {
                throw error(.invalid("legacy message set (magic \(magic)) is not supported; RecordBatch v2 (magic 2) is required"), "magic")
            }
            throw error(.invalid("unknown magic \(magic)"), "magic")
        }
        let length = Int(Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: RecordBatchLayout.batchLength, as: Int32.self)))
        let minLength = RecordBatchLayout.headerSize - RecordBatchLayout.logOverhead
        if length < minLength { throw error(.invalid("batchLength \(length) below the header size"), "batchLength") }
        let total = length + RecordBatchLayout.logOverhead
        if total > maxSize { throw error(.lengthTooLarge(length: total, remaining: maxSize), "batchLength") }
        if total > buffer.count { throw error(.truncated(needed: total, remaining: buffer.count), "batchLength") }
        return total
    }

    @usableFromInline
    static func error(_ reason: WireError.Reason, _ field: String) -> WireError {
        WireError(message: "RecordBatch", version: 2, field: field, reason: reason)
    }

    @inlinable
    func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inlinable public var baseOffset: Int64 { load(RecordBatchLayout.baseOffset) }
    @inlinable public var batchLength: Int32 { load(RecordBatchLayout.batchLength) }
    @inlinable public var partitionLeaderEpoch: Int32 { load(RecordBatchLayout.partitionLeaderEpoch) }
    @inlinable public var magic: Int8 { load(RecordBatchLayout.magic) }
    @inlinable public var crc: UInt32 { load(RecordBatchLayout.crc) }
    @inlinable public var attributes: RecordBatchAttributes { RecordBatchAttributes(rawValue: load(RecordBatchLayout.attributes)) }
    @inlinable public var lastOffsetDelta: Int32 { load(RecordBatchLayout.lastOffsetDelta) }
    @inlinable public var baseTimestamp: Int64 { load(RecordBatchLayout.baseTimestamp) }
    @inlinable public var maxTimestamp: Int64 { load(RecordBatchLayout.maxTimestamp) }
    @inlinable public var producerId: Int64 { load(RecordBatchLayout.producerId) }
    @inlinable public var producerEpoch: Int16 { load(RecordBatchLayout.producerEpoch) }
    @inlinable public var baseSequence: Int32 { load(RecordBatchLayout.baseSequence) }
    @inlinable public var recordCount: Int32 { load(RecordBatchLayout.recordCount) }

    @inlinable public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    @inlinable public var isControl: Bool { attributes.contains(.control) }
    @inlinable public var isTransactional: Bool { attributes.contains(.transactional) }
    @inlinable public var isCompressed: Bool { attributes.compressionBits != 0 }

    /// The compression codec; throws for the reserved values 5–7.
    public var compression: CompressionCodec {
        get throws(CompressionError) { try CompressionCodec(attributes: attributes.rawValue) }
    }

    /// The records section as stored (compressed if the batch is).
    @inlinable
    public var recordsSection: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.headerSize...])
    }

    /// Iterates the records of an uncompressed batch without allocating.
    /// For a compressed batch, decompress ``recordsSection`` and use ``RecordIterator/init(records:count:)``.
    @inlinable
    public var records: RecordIterator {
        RecordIterator(records: recordsSection, count: Int(recordCount))
    }

    /// Rewrites the base offset of the batch starting at `batch`, in place.
    /// The CRC does not cover it, so the batch stays valid.
    @inlinable
    public static func setBaseOffset(_ offset: Int64, inBatchAt batch: UnsafeMutableRawPointer) {
        batch.storeBytes(of: offset.bigEndian, toByteOffset: RecordBatchLayout.baseOffset, as: Int64.self)
    }

    /// Stamps the batch in `batch` with the broker's append time, as Kafka does for a topic with
    /// `message.timestamp.type=LogAppendTime`: sets the timestamp-type attribute and the max
    /// timestamp (which consumers then report for every record) and recomputes the CRC.
    public static func stampLogAppendTime(_ timestampMs: Int64, batch: UnsafeMutableRawBufferPointer) {
        let base = batch.baseAddress!
        let attributes = Int16(bigEndian: base.loadUnaligned(fromByteOffset: RecordBatchLayout.attributes, as: Int16.self))
            | RecordBatchAttributes.logAppendTime.rawValue
        base.storeBytes(of: attributes.bigEndian, toByteOffset: RecordBatchLayout.attributes, as: Int16.self)
        base.storeBytes(of: timestampMs.bigEndian, toByteOffset: RecordBatchLayout.maxTimestamp, as: Int64.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: batch[RecordBatchLayout.attributes...]))
        base.storeBytes(of: crc.bigEndian, toByteOffset: RecordBatchLayout.crc, as: UInt32.self)
    }

    /// Rewrites the partition leader epoch in place (also outside the CRC).
    @inlinable
    public static func setPartitionLeaderEpoch(_ epoch: Int32, inBatchAt batch: UnsafeMutableRawPointer) {
        batch.storeBytes(of: epoch.bigEndian, toByteOffset: RecordBatchLayout.partitionLeaderEpoch, as: Int32.self)
    }
}

/// Walks the batches of a `records` field (a produce request's or a log segment's bytes).
///
/// A fetch response may end with a partial batch; ``next()`` returns nil there and
/// ``trailingBytes`` tells how many bytes were left over.
public struct RecordBatchSequence {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var position = 0
    public let validate: Bool
    public let maxBatchSize: Int

    public init(_ buffer: UnsafeRawBufferPointer, validate: Bool = true, maxBatchSize: Int = Int(Int32.max)) {
        self.buffer = buffer
        self.validate = validate
        self.maxBatchSize = maxBatchSize
    }

    public var trailingBytes: Int { buffer.count - position }

    /// The next whole batch, nil at the end or before a partial trailing batch; throws on a
    /// corrupt batch (bad magic, CRC, lengths).
    public mutating func next() throws(WireError) -> RecordBatchView? {
        let rest = UnsafeRawBufferPointer(rebasing: buffer[position...])
        if rest.count < RecordBatchLayout.logOverhead { return nil }
        let length = Int(Int32(bigEndian: rest.loadUnaligned(fromByteOffset: RecordBatchLayout.batchLength, as: Int32.self)))
        if length >= 0 && length + RecordBatchLayout.logOverhead > rest.count && length + RecordBatchLayout.logOverhead <= maxBatchSize {
            return nil
        }
        let view: RecordBatchView
        if validate {
            view = try RecordBatchView(validating: rest, maxSize: maxBatchSize)
        } else {
            view = RecordBatchView(unchecked: UnsafeRawBufferPointer(rebasing: rest[0..<(try RecordBatchView.sizeOfBatch(at: rest, maxSize: maxBatchSize))]))
        }
        position += view.bytes.count
        return view
    }
}
