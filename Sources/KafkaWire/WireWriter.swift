/// A big-endian writer appending to a byte array it owns.
///
/// Used for request/response bodies; the record-batch hot path has its own raw-pointer
/// builder (``RecordBatchBuilder``). Not thread-safe.
public struct WireWriter {
    public var bytes: [UInt8]

    @inlinable
    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable public var count: Int { bytes.count }

    @inlinable
    public mutating func writeBigEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func writeInt8(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    @inlinable public mutating func writeInt16(_ v: Int16) { writeBigEndian(v) }
    @inlinable public mutating func writeInt32(_ v: Int32) { writeBigEndian(v) }
    @inlinable public mutating func writeInt64(_ v: Int64) { writeBigEndian(v) }
    @inlinable public mutating func writeUInt16(_ v: UInt16) { writeBigEndian(v) }
    @inlinable public mutating func writeUInt32(_ v: UInt32) { writeBigEndian(v) }
    @inlinable public mutating func writeBool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    @inlinable public mutating func writeFloat64(_ v: Double) { writeBigEndian(v.bitPattern) }

    @inlinable
    public mutating func writeUUID(_ v: KafkaUUID) {
        writeBigEndian(v.high)
        writeBigEndian(v.low)
    }

    @inlinable
    public mutating func writeUnsignedVarint(_ value: UInt32) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    @inlinable
    public mutating func writeVarint(_ value: Int32) {
        writeUnsignedVarint(UInt32(bitPattern: (value << 1) ^ (value >> 31)))
    }

    @inlinable
    public mutating func writeVarlong(_ value: Int64) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Writes a length or count (nil = null): int16/int32, or unsigned varint N+1 when compact.
    @inlinable
    public mutating func writeLength(_ n: Int?, compact: Bool, wide: Bool) {
        if compact {
            writeUnsignedVarint(UInt32(truncatingIfNeeded: (n ?? -1) + 1))
        } else if wide {
            writeInt32(Int32(truncatingIfNeeded: n ?? -1))
        } else {
            writeInt16(Int16(truncatingIfNeeded: n ?? -1))
        }
    }

    @inlinable
    public mutating func writeString(_ s: String, compact: Bool) {
        var s = s
        s.withUTF8 { utf8 in
            writeLength(utf8.count, compact: compact, wide: false)
            bytes.append(contentsOf: utf8)
        }
    }

    @inlinable
    public mutating func writeNullableString(_ s: String?, compact: Bool) {
        if let s { writeString(s, compact: compact) } else { writeLength(nil, compact: compact, wide: false) }
    }

    @inlinable
    public mutating func writeBytes(_ b: [UInt8], compact: Bool) {
        writeLength(b.count, compact: compact, wide: true)
        bytes.append(contentsOf: b)
    }

    @inlinable
    public mutating func writeNullableBytes(_ b: [UInt8]?, compact: Bool) {
        if let b { writeBytes(b, compact: compact) } else { writeLength(nil, compact: compact, wide: true) }
    }

    @inlinable
    public mutating func writeRaw(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    /// Writes one tagged field: tag, size, then whatever `body` writes (sized after the fact).
    @inlinable
    public mutating func writeTaggedField(tag: UInt32, _ body: (inout WireWriter) -> Void) {
        var inner = WireWriter(capacity: 64)
        body(&inner)
        writeUnsignedVarint(tag)
        writeUnsignedVarint(UInt32(inner.bytes.count))
        bytes.append(contentsOf: inner.bytes)
    }
}
