/// A record header: a UTF-8 key and a nullable value.
public struct RecordHeader: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// A decoded record that owns its bytes. Cold path (tests, tools, control records); the hot
/// path uses ``RecordView`` through ``RecordIterator``.
public struct Record: Hashable, Sendable {
    public var attributes: Int8 = 0
    public var timestampDelta: Int64 = 0
    public var offsetDelta: Int32 = 0
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader] = []

    public init(
        attributes: Int8 = 0, timestampDelta: Int64 = 0, offsetDelta: Int32 = 0,
        key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = []
    ) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headers = headers
    }

    /// Copies a record view and its headers.
    public init(_ view: RecordView) throws(WireError) {
        self.attributes = view.attributes
        self.timestampDelta = view.timestampDelta
        self.offsetDelta = view.offsetDelta
        self.key = view.key.map { Array($0) }
        self.value = view.value.map { Array($0) }
        var it = view.headers
        while let (k, v) = try it.next() {
            headers.append(RecordHeader(key: String(decoding: k, as: UTF8.self), value: v.map { Array($0) }))
        }
    }

    /// Writes the record (length-prefixed) as it appears inside a batch.
    public func encode(into w: inout WireWriter) {
        var body = WireWriter(capacity: 32 + (key?.count ?? 0) + (value?.count ?? 0))
        body.writeInt8(attributes)
        body.writeVarlong(timestampDelta)
        body.writeVarint(offsetDelta)
        Self.writeField(key, &body)
        Self.writeField(value, &body)
        body.writeVarint(Int32(headers.count))
        for header in headers {
            Self.writeField(Array(header.key.utf8), &body)
            Self.writeField(header.value, &body)
        }
        w.writeVarint(Int32(body.count))
        w.bytes.append(contentsOf: body.bytes)
    }

    static func writeField(_ field: [UInt8]?, _ w: inout WireWriter) {
        if let field {
            w.writeVarint(Int32(field.count))
            w.bytes.append(contentsOf: field)
        } else {
            w.writeVarint(-1)
        }
    }
}

/// The marker a control batch's record carries in its key: the end of a transaction.
public struct ControlRecord: Hashable, Sendable {
    public enum Kind: Int16, Sendable { case abort = 0, commit = 1 }
    public var version: Int16
    public var kind: Kind?
    public var rawType: Int16

    /// Parses a control record key (version int16, type int16).
    public init(key: UnsafeRawBufferPointer) throws(WireError) {
        var r = WireReader(key)
        r.message = "ControlRecord"
        r.field = "version"
        version = try r.readInt16()
        r.field = "type"
        rawType = try r.readInt16()
        kind = Kind(rawValue: rawType)
    }
}

/// A decoded record batch owning its records: every header field, records decompressed.
/// Cold path: tests, golden-fixture checks and tools. ``encoded()`` writes it back, so a
/// batch can be built with any header values (control, transactional, producer fields).
public struct RecordBatch: Hashable, Sendable {
    public var baseOffset: Int64 = 0
    public var partitionLeaderEpoch: Int32 = -1
    public var attributes: RecordBatchAttributes = []
    public var lastOffsetDelta: Int32 = 0
    public var baseTimestamp: Int64 = 0
    public var maxTimestamp: Int64 = 0
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    public var records: [Record] = []

    public init() {}

    /// Decodes a validated batch; decompresses with at most `decompressionLimit` bytes.
    public init(_ view: RecordBatchView, decompressionLimit: Int = 64 << 20) throws(WireError) {
        baseOffset = view.baseOffset
        partitionLeaderEpoch = view.partitionLeaderEpoch
        attributes = view.attributes
        lastOffsetDelta = view.lastOffsetDelta
        baseTimestamp = view.baseTimestamp
        maxTimestamp = view.maxTimestamp
        producerId = view.producerId
        producerEpoch = view.producerEpoch
        baseSequence = view.baseSequence
        let count = Int(view.recordCount)
        let codec: CompressionCodec
        do { codec = try view.compression } catch { throw RecordBatchView.error(.invalid(error.description), "attributes") }
        if codec == .none {
            try decodeRecords(view.recordsSection, count: count)
        } else {
            var plain: [UInt8] = []
            do {
                try codec.decompress(view.recordsSection, appendingTo: &plain, limit: decompressionLimit)
            } catch {
                throw RecordBatchView.error(.invalid(error.description), "records")
            }
            try plain.withRawBytes { (raw) throws(WireError) in try decodeRecords(raw, count: count) }
        }
    }

    private mutating func decodeRecords(_ raw: UnsafeRawBufferPointer, count: Int) throws(WireError) {
        var it = RecordIterator(records: raw, count: count)
        records.reserveCapacity(min(count, raw.count))
        while let r = try it.next() { records.append(try Record(r)) }
        if records.count != count {
            throw RecordBatchView.error(.truncated(needed: count, remaining: records.count), "records")
        }
    }

    /// The batch's bytes: header, CRC, records (compressed per `attributes`).
    public func encoded() throws(CompressionError) -> [UInt8] {
        var body = WireWriter(capacity: 256)
        for record in records { record.encode(into: &body) }
        let codec = try CompressionCodec(attributes: attributes.rawValue)
        var section: [UInt8]
        if codec == .none {
            section = body.bytes
        } else {
            section = []
            try body.bytes.withRawBytes { (raw) throws(CompressionError) in try codec.compress(raw, appendingTo: &section) }
        }
        var w = WireWriter(capacity: RecordBatchLayout.headerSize + section.count)
        w.writeInt64(baseOffset)
        w.writeInt32(Int32(RecordBatchLayout.headerSize - RecordBatchLayout.logOverhead + section.count))
        w.writeInt32(partitionLeaderEpoch)
        w.writeInt8(2)
        w.writeUInt32(0)  // CRC, filled below
        w.writeInt16(attributes.rawValue)
        w.writeInt32(lastOffsetDelta)
        w.writeInt64(baseTimestamp)
        w.writeInt64(maxTimestamp)
        w.writeInt64(producerId)
        w.writeInt16(producerEpoch)
        w.writeInt32(baseSequence)
        w.writeInt32(Int32(records.count))
        w.bytes.append(contentsOf: section)
        let crc = w.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributes...])) }
        withUnsafeBytes(of: crc.bigEndian) { crcBytes in
            for i in 0..<4 { w.bytes[RecordBatchLayout.crc + i] = crcBytes[i] }
        }
        return w.bytes
    }
}
