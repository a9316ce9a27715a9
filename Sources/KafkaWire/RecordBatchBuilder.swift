/// Writes records straight into a RecordBatch v2 buffer it owns and reuses: the producer's
/// hot path. Nothing is allocated per record; timestamps are batch-level (records carry a
/// delta, 0 unless given). `finish` fills the header and the CRC (and compresses).
///
/// Not thread-safe; one builder per accumulator. Reuse it with ``reset(baseTimestamp:producerId:producerEpoch:baseSequence:flags:)``.
public struct RecordBatchBuilder: ~Copyable {
    @usableFromInline var buffer: UnsafeMutableRawPointer
    @usableFromInline var capacity: Int
    @usableFromInline var position: Int
    @usableFromInline var count: Int32 = 0
    @usableFromInline var maxTimestampDelta: Int64 = 0
    @usableFromInline var scratch: [UInt8] = []

    public var baseTimestamp: Int64 = 0
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    public var partitionLeaderEpoch: Int32 = -1
    public var flags: RecordBatchAttributes = []

    /// - Parameter capacity: the largest batch, header included, that this builder writes.
    public init(capacity: Int) {
        precondition(capacity > RecordBatchLayout.headerSize, "capacity must exceed the 61-byte header")
        self.capacity = capacity
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        self.position = RecordBatchLayout.headerSize
    }

    deinit { buffer.deallocate() }

    /// Starts a new batch in the same buffer.
    @inlinable
    public mutating func reset(
        baseTimestamp: Int64, producerId: Int64 = -1, producerEpoch: Int16 = -1,
        baseSequence: Int32 = -1, flags: RecordBatchAttributes = []
    ) {
        position = RecordBatchLayout.headerSize
        count = 0
        maxTimestampDelta = 0
        self.baseTimestamp = baseTimestamp
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.flags = flags
    }

    @inlinable public var recordCount: Int { Int(count) }
    @inlinable public var isEmpty: Bool { count == 0 }
    /// Bytes written so far, header included (before compression).
    @inlinable public var sizeInBytes: Int { position }
    @inlinable public var remainingCapacity: Int { capacity - position }

    /// Appends a record with no headers. Returns false (and writes nothing) if it does not fit.
    @inlinable
    public mutating func append(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, timestampDelta: Int64 = 0) -> Bool {
        let keyLength = key.map { Int64($0.count) } ?? -1
        let valueLength = value.map { Int64($0.count) } ?? -1
        let offsetDelta = Int64(count)
        let body = 2  // attributes + header count (0)
            + Varint.size(signed: timestampDelta) + Varint.size(signed: offsetDelta)
            + Varint.size(signed: keyLength) + Int(max(keyLength, 0))
            + Varint.size(signed: valueLength) + Int(max(valueLength, 0))
        let total = Varint.size(signed: Int64(body)) + body
        guard total <= capacity - position else { return false }
        var p = buffer + position
        p += Varint.put(signed: Int64(body), at: p)
        p.storeBytes(of: 0, as: UInt8.self)
        p += 1
        p += Varint.put(signed: timestampDelta, at: p)
        p += Varint.put(signed: offsetDelta, at: p)
        p += Varint.put(signed: keyLength, at: p)
        if let key, key.count > 0 {
            p.copyMemory(from: key.baseAddress!, byteCount: key.count)
            p += key.count
        }
        p += Varint.put(signed: valueLength, at: p)
        if let value, value.count > 0 {
            p.copyMemory(from: value.baseAddress!, byteCount: value.count)
            p += value.count
        }
        p.storeBytes(of: 0, as: UInt8.self)
        position += total
        count += 1
        if timestampDelta > maxTimestampDelta { maxTimestampDelta = timestampDelta }
        return true
    }

    /// Appends a record with headers (header keys are UTF-8 strings; values may be null).
    /// Returns false if it does not fit. Not the hot path: the record is encoded by ``Record``.
    public mutating func append(
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
        headers: [RecordHeader], timestampDelta: Int64 = 0
    ) -> Bool {
        let record = Record(timestampDelta: timestampDelta, offsetDelta: count, key: key.map { Array($0) },
                            value: value.map { Array($0) }, headers: headers)
        var encoded = WireWriter(capacity: 64 + (key?.count ?? 0) + (value?.count ?? 0))
        record.encode(into: &encoded)
        guard encoded.count <= capacity - position else { return false }
        encoded.bytes.withUnsafeBytes { (buffer + position).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        position += encoded.count
        count += 1
        if timestampDelta > maxTimestampDelta { maxTimestampDelta = timestampDelta }
        return true
    }

    /// Fills in the header and CRC, compressing the records with `compression` first.
    /// - Returns: the finished batch, valid until the next `reset` or `append`.
    public mutating func finish(baseOffset: Int64 = 0, compression: CompressionCodec = .none) throws(CompressionError) -> UnsafeRawBufferPointer {
        var end = position
        if compression != .none && count > 0 {
            scratch.removeAll(keepingCapacity: true)
            let records = UnsafeRawBufferPointer(start: buffer + RecordBatchLayout.headerSize, count: position - RecordBatchLayout.headerSize)
            try compression.compress(records, appendingTo: &scratch)
            end = RecordBatchLayout.headerSize + scratch.count
            if end > capacity {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: end, alignment: 16)
                bigger.copyMemory(from: buffer, byteCount: RecordBatchLayout.headerSize)
                buffer.deallocate()
                buffer = bigger
                capacity = end
            }
            scratch.withUnsafeBytes { (buffer + RecordBatchLayout.headerSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            position = end  // the records are now compressed; appending would corrupt the batch
        }
        let attributes = RecordBatchAttributes(compression: count > 0 ? compression : .none, flags)
        func put<T: FixedWidthInteger>(_ v: T, _ offset: Int) {
            buffer.storeBytes(of: v.bigEndian, toByteOffset: offset, as: T.self)
        }
        put(baseOffset, RecordBatchLayout.baseOffset)
        put(Int32(end - RecordBatchLayout.logOverhead), RecordBatchLayout.batchLength)
        put(partitionLeaderEpoch, RecordBatchLayout.partitionLeaderEpoch)
        put(Int8(2), RecordBatchLayout.magic)
        put(attributes.rawValue, RecordBatchLayout.attributes)
        put(max(count - 1, 0), RecordBatchLayout.lastOffsetDelta)
        put(baseTimestamp, RecordBatchLayout.baseTimestamp)
        put(baseTimestamp + maxTimestampDelta, RecordBatchLayout.maxTimestamp)
        put(producerId, RecordBatchLayout.producerId)
        put(producerEpoch, RecordBatchLayout.producerEpoch)
        put(baseSequence, RecordBatchLayout.baseSequence)
        put(count, RecordBatchLayout.recordCount)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: buffer + RecordBatchLayout.attributes, count: end - RecordBatchLayout.attributes))
        put(crc, RecordBatchLayout.crc)
        return UnsafeRawBufferPointer(start: buffer, count: end)
    }
}
