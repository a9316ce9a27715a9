/// A bounds-checked big-endian reader over bytes the caller keeps alive.
///
/// Every read checks the remaining length and throws ``WireError`` instead of trapping.
/// `message`, `version` and `field` name what is being decoded so that an error says where
/// it happened; generated decoders set `field` before each read (a static string store).
/// Not thread-safe: one reader per decoding call.
public struct WireReader {
    public let base: UnsafeRawBufferPointer
    public var position: Int
    public let end: Int
    public var message: StaticString = "?"
    public var version: Int16 = 0
    public var field: StaticString = "?"

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.base = bytes
        self.position = 0
        self.end = bytes.count
    }

    /// A reader over `count` bytes starting at `position` of `parent`, inheriting its context.
    @inlinable
    public init(slicing parent: WireReader, count: Int) {
        self.base = parent.base
        self.position = parent.position
        self.end = parent.position + count
        self.message = parent.message
        self.version = parent.version
        self.field = parent.field
    }

    @inlinable public var remaining: Int { end - position }
    @inlinable public var isAtEnd: Bool { position >= end }

    @inlinable
    public func error(_ reason: WireError.Reason) -> WireError {
        WireError(message: message.description, version: version, field: field.description, reason: reason)
    }

    @inlinable
    mutating func need(_ n: Int) throws(WireError) {
        if _slowPath(n > end - position) {
            throw error(.truncated(needed: n, remaining: end - position))
        }
    }

    @inlinable
    public mutating func readBigEndian<T: FixedWidthInteger>(_: T.Type = T.self) throws(WireError) -> T {
        try need(MemoryLayout<T>.size)
        let v = base.loadUnaligned(fromByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
        return T(bigEndian: v)
    }

    @inlinable public mutating func readInt8() throws(WireError) -> Int8 { try readBigEndian() }
    @inlinable public mutating func readInt16() throws(WireError) -> Int16 { try readBigEndian() }
    @inlinable public mutating func readInt32() throws(WireError) -> Int32 { try readBigEndian() }
    @inlinable public mutating func readInt64() throws(WireError) -> Int64 { try readBigEndian() }
    @inlinable public mutating func readUInt16() throws(WireError) -> UInt16 { try readBigEndian() }
    @inlinable public mutating func readUInt32() throws(WireError) -> UInt32 { try readBigEndian() }

    @inlinable
    public mutating func readBool() throws(WireError) -> Bool {
        try readInt8() != 0
    }

    @inlinable
    public mutating func readFloat64() throws(WireError) -> Double {
        Double(bitPattern: try readBigEndian(UInt64.self))
    }

    @inlinable
    public mutating func readUUID() throws(WireError) -> KafkaUUID {
        let hi: UInt64 = try readBigEndian()
        let lo: UInt64 = try readBigEndian()
        return KafkaUUID(high: hi, low: lo)
    }

    /// An unsigned LEB128 varint of at most 5 bytes (32 bits).
    @inlinable
    public mutating func readUnsignedVarint() throws(WireError) -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            try need(1)
            let byte = base[position]
            position += 1
            if shift == 28 && byte > 0x0F { throw error(.malformedVarint) }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// A zigzag-encoded signed varint of at most 5 bytes (records' fields).
    @inlinable
    public mutating func readVarint() throws(WireError) -> Int32 {
        let u = try readUnsignedVarint()
        return Int32(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// A zigzag-encoded signed varint of at most 10 bytes.
    @inlinable
    public mutating func readVarlong() throws(WireError) -> Int64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            try need(1)
            let byte = base[position]
            position += 1
            if shift == 63 && byte > 0x01 { throw error(.malformedVarint) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: (result >> 1) ^ (0 &- (result & 1)))
    }

    // MARK: Lengths

    /// Reads a length or count: int16/int32 in classic versions, unsigned varint N+1 in
    /// flexible ones. Returns nil for null (-1 / 0); checks that at least
    /// `count * minElementSize` bytes remain.
    @inlinable
    public mutating func readLength(compact: Bool, wide: Bool, minElementSize: Int = 1) throws(WireError) -> Int? {
        let n: Int
        if compact {
            n = Int(try readUnsignedVarint()) - 1
        } else if wide {
            n = Int(try readInt32())
        } else {
            n = Int(try readInt16())
        }
        if n < 0 {
            if n == -1 { return nil }
            throw error(.negativeLength(n))
        }
        if _slowPath(n > remaining / Swift.max(minElementSize, 1)) {
            throw error(.lengthTooLarge(length: n, remaining: remaining))
        }
        return n
    }

    @inlinable
    public mutating func requireLength(compact: Bool, wide: Bool, minElementSize: Int = 1) throws(WireError) -> Int {
        guard let n = try readLength(compact: compact, wide: wide, minElementSize: minElementSize) else {
            throw error(.negativeLength(-1))
        }
        return n
    }

    // MARK: Strings and bytes

    @inlinable
    public mutating func readRawBytes(_ n: Int) throws(WireError) -> UnsafeRawBufferPointer {
        try need(n)
        let slice = UnsafeRawBufferPointer(rebasing: base[position..<(position + n)])
        position += n
        return slice
    }

    @inlinable
    public mutating func skip(_ n: Int) throws(WireError) {
        try need(n)
        position += n
    }

    @inlinable
    public mutating func readString(compact: Bool) throws(WireError) -> String {
        let n = try requireLength(compact: compact, wide: false)
        return String(decoding: try readRawBytes(n), as: UTF8.self)
    }

    @inlinable
    public mutating func readNullableString(compact: Bool) throws(WireError) -> String? {
        guard let n = try readLength(compact: compact, wide: false) else { return nil }
        return String(decoding: try readRawBytes(n), as: UTF8.self)
    }

    @inlinable
    public mutating func readBytes(compact: Bool) throws(WireError) -> [UInt8] {
        let n = try requireLength(compact: compact, wide: true)
        return Array(try readRawBytes(n))
    }

    @inlinable
    public mutating func readNullableBytes(compact: Bool) throws(WireError) -> [UInt8]? {
        guard let n = try readLength(compact: compact, wide: true) else { return nil }
        return Array(try readRawBytes(n))
    }

    // MARK: Tagged fields

    /// Skips an unknown tagged field's payload.
    @inlinable
    public mutating func skipTaggedField() throws(WireError) {
        let size = Int(try readUnsignedVarint())
        try skip(size)
    }
}

extension WireReader {
    /// Reads the number of tagged fields that follow (checked against the remaining bytes).
    @inlinable
    public mutating func readTaggedFieldCount() throws(WireError) -> Int {
        let n = Int(try readUnsignedVarint())
        // Each tagged field takes at least two bytes (tag and size).
        if n > remaining / 2 { throw error(.lengthTooLarge(length: n, remaining: remaining)) }
        return n
    }

    /// Reads a tagged field's size and returns a reader over its payload; `self` moves past it.
    @inlinable
    public mutating func taggedFieldReader() throws(WireError) -> WireReader {
        let size = Int(try readUnsignedVarint())
        if size > remaining { throw error(.lengthTooLarge(length: size, remaining: remaining)) }
        let sub = WireReader(slicing: self, count: size)
        position += size
        return sub
    }

    /// Skips a whole tagged-field section (none of its tags are known in this version).
    @inlinable
    public mutating func skipTaggedFields() throws(WireError) {
        var n = try readTaggedFieldCount()
        while n > 0 {
            n -= 1
            _ = try readUnsignedVarint()
            _ = try taggedFieldReader()
        }
    }
}

extension WireReader {
    /// Reads a non-null array: its length (checked against the bytes left), then each element.
    @inlinable
    public mutating func readArray<T>(
        compact: Bool, minElementSize: Int, _ element: (inout WireReader) throws(WireError) -> T
    ) throws(WireError) -> [T] {
        let count = try requireLength(compact: compact, wide: true, minElementSize: minElementSize)
        return try readElements(count, element)
    }

    /// Reads a nullable array (nil for a null length).
    @inlinable
    public mutating func readNullableArray<T>(
        compact: Bool, minElementSize: Int, _ element: (inout WireReader) throws(WireError) -> T
    ) throws(WireError) -> [T]? {
        guard let count = try readLength(compact: compact, wide: true, minElementSize: minElementSize) else { return nil }
        return try readElements(count, element)
    }

    @inlinable
    mutating func readElements<T>(_ count: Int, _ element: (inout WireReader) throws(WireError) -> T) throws(WireError) -> [T] {
        var items: [T] = []
        items.reserveCapacity(count)
        for _ in 0..<count { items.append(try element(&self)) }
        return items
    }
}
