/// One record inside a batch, viewed in place: keys, values and headers point into the
/// batch's (or the decompressed records') memory, which the caller keeps alive.
public struct RecordView {
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    /// nil for a null key.
    public var key: UnsafeRawBufferPointer?
    /// nil for a null value (a tombstone).
    public var value: UnsafeRawBufferPointer?
    public var headerCount: Int
    /// The encoded headers (count already consumed); iterate with ``headers``.
    public var headerBytes: UnsafeRawBufferPointer

    @inlinable
    public init(
        attributes: Int8, timestampDelta: Int64, offsetDelta: Int32, key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?, headerCount: Int, headerBytes: UnsafeRawBufferPointer
    ) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headerCount = headerCount
        self.headerBytes = headerBytes
    }

    @inlinable
    public var headers: RecordHeaderIterator {
        RecordHeaderIterator(bytes: headerBytes, count: headerCount)
    }
}

/// Iterates the records of an uncompressed records section without allocating.
///
/// Every length is checked against the record's own length and the section's end; a
/// malformed record throws ``WireError`` naming the field.
public struct RecordIterator {
    @usableFromInline let base: UnsafeRawPointer?
    @usableFromInline var position: Int
    @usableFromInline let end: Int
    @usableFromInline var remainingRecords: Int

    @inlinable
    public init(records: UnsafeRawBufferPointer, count: Int) {
        self.base = records.baseAddress
        self.position = 0
        self.end = records.count
        self.remainingRecords = count
    }

    @usableFromInline
    static func error(_ field: String, _ reason: WireError.Reason) -> WireError {
        WireError(message: "Record", version: 2, field: field, reason: reason)
    }

    /// The next record, or nil after `count` records. Throws on malformed input or if bytes
    /// end before the count does.
    @inlinable @inline(__always)
    public mutating func next() throws(WireError) -> RecordView? {
        guard remainingRecords > 0 else { return nil }
        guard let p = base else { throw Self.error("length", .truncated(needed: 1, remaining: 0)) }
        var i = position
        guard let length = Varint.read(signed: p, &i, end: end, maxBytes: 5) else {
            throw Self.error("length", .malformedVarint)
        }
        guard length >= 0, length <= end - i else {
            throw Self.error("length", .lengthTooLarge(length: Int(length), remaining: end - i))
        }
        let recordEnd = i + Int(length)
        guard i < recordEnd else { throw Self.error("attributes", .truncated(needed: 1, remaining: 0)) }
        let attributes = p.load(fromByteOffset: i, as: Int8.self)
        i += 1
        guard let timestampDelta = Varint.read(signed: p, &i, end: recordEnd, maxBytes: 10) else {
            throw Self.error("timestampDelta", .malformedVarint)
        }
        guard let offsetDelta = Varint.read(signed: p, &i, end: recordEnd, maxBytes: 5) else {
            throw Self.error("offsetDelta", .malformedVarint)
        }
        let key = try Self.readField(p, &i, recordEnd, "key")
        let value = try Self.readField(p, &i, recordEnd, "value")
        guard let headerCount = Varint.read(signed: p, &i, end: recordEnd, maxBytes: 5) else {
            throw Self.error("headers", .malformedVarint)
        }
        // Each header takes at least two bytes (two length varints).
        guard headerCount >= 0, headerCount <= (recordEnd - i) / 2 else {
            throw Self.error("headers", .lengthTooLarge(length: Int(headerCount), remaining: recordEnd - i))
        }
        let headerBytes = UnsafeRawBufferPointer(start: p + i, count: recordEnd - i)
        position = recordEnd
        remainingRecords -= 1
        return RecordView(
            attributes: attributes, timestampDelta: timestampDelta, offsetDelta: Int32(truncatingIfNeeded: offsetDelta),
            key: key, value: value, headerCount: Int(headerCount), headerBytes: headerBytes)
    }

    /// Bytes not consumed by the records read so far.
    @inlinable public var trailingBytes: Int { end - position }

    @inlinable @inline(__always)
    static func readField(_ p: UnsafeRawPointer, _ i: inout Int, _ end: Int, _ name: String) throws(WireError) -> UnsafeRawBufferPointer? {
        guard let n = Varint.read(signed: p, &i, end: end, maxBytes: 5) else { throw error(name, .malformedVarint) }
        if n < 0 {
            if n == -1 { return nil }
            throw error(name, .negativeLength(Int(n)))
        }
        guard n <= end - i else { throw error(name, .lengthTooLarge(length: Int(n), remaining: end - i)) }
        let field = UnsafeRawBufferPointer(start: p + i, count: Int(n))
        i += Int(n)
        return field
    }
}

/// Iterates a record's headers in place.
public struct RecordHeaderIterator {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var position = 0
    @usableFromInline var remaining: Int

    @inlinable
    init(bytes: UnsafeRawBufferPointer, count: Int) {
        self.bytes = bytes
        self.remaining = count
    }

    /// The next header (key, value — nil for a null value), or nil after the last one.
    @inlinable
    public mutating func next() throws(WireError) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?)? {
        guard remaining > 0 else { return nil }
        guard let p = bytes.baseAddress else { throw RecordIterator.error("headerKey", .truncated(needed: 1, remaining: 0)) }
        var i = position
        guard let key = try RecordIterator.readField(p, &i, bytes.count, "headerKey") else {
            throw RecordIterator.error("headerKey", .negativeLength(-1))
        }
        let value = try RecordIterator.readField(p, &i, bytes.count, "headerValue")
        position = i
        remaining -= 1
        return (key, value)
    }
}
