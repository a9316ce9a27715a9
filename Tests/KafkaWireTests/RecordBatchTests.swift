import Testing
import KafkaWire

// MARK: - Helpers

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

extension RecordBatchBuilder {
    /// `append` taking arrays (an empty array may have no base address: the builder must cope).
    fileprivate mutating func add(_ key: [UInt8]?, _ value: [UInt8]?, timestampDelta: Int64 = 0) -> Bool {
        withOptionalBytes(key) { k in
            withOptionalBytes(value) { v in append(key: k, value: v, timestampDelta: timestampDelta) }
        }
    }

    fileprivate mutating func add(
        _ key: [UInt8]?, _ value: [UInt8]?, headers: [RecordHeader], timestampDelta: Int64 = 0
    ) -> Bool {
        withOptionalBytes(key) { k in
            withOptionalBytes(value) { v in append(key: k, value: v, headers: headers, timestampDelta: timestampDelta) }
        }
    }

    /// The finished batch, copied out of the builder.
    fileprivate mutating func finished(baseOffset: Int64 = 0, compression: CompressionCodec = .none) throws -> [UInt8] {
        Array(try finish(baseOffset: baseOffset, compression: compression))
    }
}

/// Validates `bytes` as one batch and runs `body` on the view.
private func withBatch<R>(_ bytes: [UInt8], _ body: (RecordBatchView) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { (raw) throws in try body(try RecordBatchView(validating: raw)) }
}

/// The validation error for `bytes`, or nil if it validates.
private func validationError(_ bytes: [UInt8], maxSize: Int = Int(Int32.max)) -> WireError? {
    bytes.withUnsafeBytes { (raw) -> WireError? in
        do throws(WireError) {
            _ = try RecordBatchView(validating: raw, maxSize: maxSize)
            return nil
        } catch {
            return error
        }
    }
}

/// Recomputes the CRC after an edit of the bytes it covers.
private func fixCRC(_ bytes: inout [UInt8]) {
    let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributes...])) }
    for i in 0..<4 { bytes[RecordBatchLayout.crc + i] = UInt8(truncatingIfNeeded: crc >> UInt32(24 - 8 * i)) }
}

private func putBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.bigEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
}

/// The records of an uncompressed batch view, copied.
private func records(of view: RecordBatchView) throws -> [Record] {
    var it = view.records
    var out: [Record] = []
    while let r = try it.next() { out.append(try Record(r)) }
    #expect(it.trailingBytes == 0)
    return out
}

private func headers(of record: RecordView) throws -> [RecordHeader] {
    var it = record.headers
    var out: [RecordHeader] = []
    while let (k, v) = try it.next() {
        out.append(RecordHeader(key: String(decoding: k, as: UTF8.self), value: v.map { Array($0) }))
    }
    return out
}

private struct Entry {
    var key: [UInt8]?
    var value: [UInt8]?
    var timestampDelta: Int64
}

private let binary = (0..<256).map { UInt8($0) }

private let sampleEntries: [Entry] = [
    Entry(key: nil, value: Array("first".utf8), timestampDelta: 0),
    Entry(key: Array("k".utf8), value: [], timestampDelta: 5),  // empty, not null, value
    Entry(key: [0x00, 0xFF, 0x80], value: nil, timestampDelta: 3),  // tombstone
    Entry(key: [], value: binary, timestampDelta: 100),
    Entry(key: Array(repeating: 0xAB, count: 300), value: Array(repeating: 0x5A, count: 20_000), timestampDelta: 7),
    Entry(key: nil, value: nil, timestampDelta: 0),
]

/// A small valid batch of `count` records (uncompressed unless asked).
private func sampleBatch(
    baseOffset: Int64 = 0, count: Int = 3, compression: CompressionCodec = .none, tag: UInt8 = 0
) throws -> [UInt8] {
    var b = RecordBatchBuilder(capacity: 4096)
    b.reset(baseTimestamp: 1_000, producerId: 9, producerEpoch: 1, baseSequence: 0)
    for i in 0..<count {
        #expect(b.add([tag, UInt8(i)], Array("value-\(i)".utf8), timestampDelta: Int64(i)) == true)
    }
    return try b.finished(baseOffset: baseOffset, compression: compression)
}

// MARK: - Tests

@Suite struct RecordBatchTests {
    @Test func builderRecordsRoundTripThroughViewAndIterator() throws {
        var b = RecordBatchBuilder(capacity: 64 * 1024)
        b.reset(baseTimestamp: 1_700_000_000_000, producerId: 42, producerEpoch: 3, baseSequence: 17)
        #expect(b.isEmpty == true)
        for e in sampleEntries { #expect(b.add(e.key, e.value, timestampDelta: e.timestampDelta) == true) }
        #expect(b.recordCount == sampleEntries.count)
        let bytes = try b.finished(baseOffset: 1_000)
        #expect(bytes.count == b.sizeInBytes)

        try withBatch(bytes) { (view) throws in
            #expect(view.bytes.count == bytes.count)
            #expect(view.baseOffset == 1_000)
            #expect(Int(view.batchLength) == bytes.count - RecordBatchLayout.logOverhead)
            #expect(view.partitionLeaderEpoch == -1)
            #expect(view.magic == 2)
            #expect(view.recordCount == Int32(sampleEntries.count))
            #expect(view.lastOffsetDelta == Int32(sampleEntries.count - 1))
            #expect(view.lastOffset == 1_000 + Int64(sampleEntries.count - 1))
            #expect(view.baseTimestamp == 1_700_000_000_000)
            #expect(view.maxTimestamp == 1_700_000_000_100)
            #expect(view.producerId == 42)
            #expect(view.producerEpoch == 3)
            #expect(view.baseSequence == 17)
            #expect(view.attributes == [])
            #expect(!view.isCompressed && !view.isControl && !view.isTransactional)
            #expect(try view.compression == .none)

            var it = view.records
            for (i, e) in sampleEntries.enumerated() {
                let r = try #require(try it.next())
                #expect(r.attributes == 0)
                #expect(r.offsetDelta == Int32(i))
                #expect(r.timestampDelta == e.timestampDelta)
                #expect(r.key.map { Array($0) } == e.key, "key \(i)")
                #expect(r.value.map { Array($0) } == e.value, "value \(i)")
                #expect(r.headerCount == 0)
                #expect(try headers(of: r).isEmpty)
            }
            #expect(try it.next() == nil)
            #expect(try it.next() == nil)
            #expect(it.trailingBytes == 0)

            // The owned decoding agrees.
            let owned = try RecordBatch(view)
            #expect(owned.records == sampleEntries.enumerated().map { i, e in
                Record(timestampDelta: e.timestampDelta, offsetDelta: Int32(i), key: e.key, value: e.value)
            })
            #expect(owned.baseOffset == 1_000 && owned.producerId == 42 && owned.baseSequence == 17)
            #expect(owned.maxTimestamp == 1_700_000_000_100)
        }
    }

    @Test func builderWithHeaders() throws {
        let h1 = [
            RecordHeader(key: "trace-id", value: [1, 2, 3]),
            RecordHeader(key: "empty", value: []),
            RecordHeader(key: "null", value: nil),
            RecordHeader(key: "ünï", value: binary),
        ]
        let h2 = [RecordHeader(key: "", value: [0])]
        var b = RecordBatchBuilder(capacity: 4096)
        b.reset(baseTimestamp: 50)
        #expect(b.add(Array("plain".utf8), [1]) == true)  // fast path, no headers
        #expect(b.add(nil, Array("with headers".utf8), headers: h1, timestampDelta: 9) == true)
        #expect(b.add([7], nil, headers: h2) == true)
        #expect(b.add([8], [9], headers: []) == true)
        let bytes = try b.finished()

        try withBatch(bytes) { (view) throws in
            #expect(view.recordCount == 4)
            #expect(view.maxTimestamp == 59)
            var it = view.records
            let r0 = try #require(try it.next())
            #expect(r0.offsetDelta == 0 && r0.headerCount == 0)
            let r1 = try #require(try it.next())
            #expect(r1.offsetDelta == 1)
            #expect(r1.timestampDelta == 9)
            #expect(r1.key == nil)
            #expect(r1.value.map { Array($0) } == Array("with headers".utf8))
            #expect(r1.headerCount == h1.count)
            #expect(try headers(of: r1) == h1)
            let r2 = try #require(try it.next())
            #expect(r2.offsetDelta == 2)
            #expect(r2.value == nil)
            #expect(try headers(of: r2) == h2)
            let r3 = try #require(try it.next())
            #expect(r3.offsetDelta == 3 && r3.headerCount == 0)
            #expect(try it.next() == nil)

            let owned = try RecordBatch(view)
            #expect(owned.records[1].headers == h1)
            #expect(owned.records[2].headers == h2)
        }
    }

    @Test func builderRefusesRecordsThatDoNotFitAndStaysValid() throws {
        // Record with a null key and a 10-byte value: 17 bytes. A null/null record: 7 bytes.
        var b = RecordBatchBuilder(capacity: RecordBatchLayout.headerSize + 41)
        b.reset(baseTimestamp: 0)
        let ten = [UInt8](repeating: 1, count: 10)
        #expect(b.add(nil, ten) == true)
        #expect(b.add(nil, ten) == true)
        #expect(b.remainingCapacity == 7)
        let sizeBefore = b.sizeInBytes
        #expect(b.add(nil, ten) == false)
        #expect(b.add(nil, ten, headers: [RecordHeader(key: "h", value: nil)]) == false)
        #expect(b.recordCount == 2)
        #expect(b.sizeInBytes == sizeBefore)
        #expect(b.add(nil, nil) == true)  // fits exactly
        #expect(b.remainingCapacity == 0)
        #expect(b.add(nil, nil) == false)
        #expect(b.add(nil, nil, headers: []) == false)

        let bytes = try b.finished(baseOffset: 5)
        #expect(bytes.count == RecordBatchLayout.headerSize + 41)
        try withBatch(bytes) { (view) throws in
            #expect(view.recordCount == 3)
            #expect(view.lastOffset == 7)
            #expect(try records(of: view).map(\.value) == [ten, ten, nil])
        }

        // Reset reuses the buffer for a fresh batch.
        b.reset(baseTimestamp: 77, producerId: 1, producerEpoch: 2, baseSequence: 3, flags: .transactional)
        #expect(b.isEmpty && b.sizeInBytes == RecordBatchLayout.headerSize)
        #expect(b.add([1], [2]) == true)
        try withBatch(try b.finished()) { (view) throws in
            #expect(view.recordCount == 1 && view.baseTimestamp == 77 && view.isTransactional)
            #expect(view.producerId == 1 && view.producerEpoch == 2 && view.baseSequence == 3)
        }
    }

    @Test func emptyBatch() throws {
        var b = RecordBatchBuilder(capacity: 128)
        b.reset(baseTimestamp: 10)
        for codec in CompressionCodec.allCases {
            let bytes = try b.finished(compression: codec)
            #expect(bytes.count == RecordBatchLayout.headerSize)
            try withBatch(bytes) { (view) throws in
                #expect(view.recordCount == 0 && view.lastOffsetDelta == 0 && !view.isCompressed)
                #expect(try records(of: view).isEmpty)
                #expect(try RecordBatch(view).records.isEmpty)
            }
        }
    }

    @Test(arguments: CompressionCodec.allCases)
    func builderCompressesWithEveryCodec(codec: CompressionCodec) throws {
        var expected: [Record] = []
        var b = RecordBatchBuilder(capacity: 64 * 1024)
        b.reset(baseTimestamp: 1_000, producerId: 5, producerEpoch: 0, baseSequence: 100)
        for i in 0..<50 {
            let key: [UInt8]? = i % 7 == 3 ? nil : Array("key-\(i % 5)".utf8)
            let value: [UInt8]? = i % 11 == 4 ? nil : Array(String(repeating: "value \(i) ", count: i % 9).utf8)
            let hs = i % 4 == 0 ? [RecordHeader(key: "n", value: [UInt8(i)])] : []
            let ok = hs.isEmpty ? b.add(key, value, timestampDelta: Int64(i)) : b.add(key, value, headers: hs, timestampDelta: Int64(i))
            #expect(ok)
            expected.append(Record(timestampDelta: Int64(i), offsetDelta: Int32(i), key: key, value: value, headers: hs))
        }
        let uncompressedSize = b.sizeInBytes
        let bytes = try b.finished(baseOffset: 300, compression: codec)
        if codec != .none { #expect(bytes.count < uncompressedSize) }  // repetitive data compresses

        try withBatch(bytes) { (view) throws in
            #expect(try view.compression == codec)
            #expect(view.isCompressed == (codec != .none))
            #expect(view.attributes.compressionBits == codec.rawValue)
            #expect(view.recordCount == 50 && view.lastOffsetDelta == 49 && view.lastOffset == 349)
            #expect(view.maxTimestamp == 1_049)
            let owned = try RecordBatch(view)
            #expect(owned.records == expected)
            #expect(try owned.encoded().count > RecordBatchLayout.headerSize)
            if codec == .none { #expect(try records(of: view) == expected) }
        }
    }

    /// Incompressible records in a tight buffer: the compressed output is larger than the
    /// capacity and the builder must grow its buffer, then keep working after `reset`.
    @Test(arguments: CompressionCodec.allCases.filter { $0 != .none })
    func compressedOutputLargerThanCapacity(codec: CompressionCodec) throws {
        var b = RecordBatchBuilder(capacity: RecordBatchLayout.headerSize + 12)
        b.reset(baseTimestamp: 0)
        #expect(b.add(nil, [0x13, 0x37, 0xC0, 0xDE, 0x42]) == true)
        let bytes = try b.finished(compression: codec)
        try withBatch(bytes) { (view) throws in
            #expect(try RecordBatch(view).records.map(\.value) == [[0x13, 0x37, 0xC0, 0xDE, 0x42]])
        }
        b.reset(baseTimestamp: 1)
        #expect(b.add([1], [2]) == true)
        try withBatch(try b.finished()) { (view) throws in
            #expect(try records(of: view).map(\.key) == [[1]])
        }
    }

    @Test(arguments: CompressionCodec.allCases)
    func ownedBatchRoundTrips(codec: CompressionCodec) throws {
        var batch = RecordBatch()
        batch.baseOffset = 1 << 40
        batch.partitionLeaderEpoch = 12
        batch.attributes = RecordBatchAttributes(compression: codec, .transactional)
        batch.lastOffsetDelta = 4  // one more than the records: compaction may leave gaps
        batch.baseTimestamp = 1_600_000_000_000
        batch.maxTimestamp = 1_600_000_000_500
        batch.producerId = 123_456
        batch.producerEpoch = 7
        batch.baseSequence = 1_000
        batch.records = [
            Record(timestampDelta: 0, offsetDelta: 0, key: Array("a".utf8), value: Array("1".utf8)),
            Record(attributes: 0, timestampDelta: 500, offsetDelta: 2, key: nil, value: nil,
                   headers: [RecordHeader(key: "h", value: nil), RecordHeader(key: "i", value: [])]),
            Record(timestampDelta: -3, offsetDelta: 4, key: [], value: binary),
        ]
        let bytes = try batch.encoded()
        try withBatch(bytes) { (view) throws in
            #expect(view.baseOffset == 1 << 40)
            #expect(view.partitionLeaderEpoch == 12)
            #expect(view.isTransactional && !view.isControl)
            #expect(try view.compression == codec)
            #expect(view.lastOffset == (1 << 40) + 4)
            #expect(view.recordCount == 3)
            #expect(try RecordBatch(view) == batch)
            if codec == .none {
                #expect(try records(of: view).map(\.offsetDelta) == [0, 2, 4])
            }
        }
    }

    @Test func controlBatches() throws {
        func controlBatch(type: Int16) throws -> [UInt8] {
            var batch = RecordBatch()
            batch.attributes = [.control, .transactional]
            batch.producerId = 77
            batch.producerEpoch = 2
            batch.baseOffset = 10
            var key = WireWriter()
            key.writeInt16(0)  // version
            key.writeInt16(type)
            var value = WireWriter()
            value.writeInt16(0)
            value.writeInt32(5)  // coordinator epoch
            batch.records = [Record(key: key.bytes, value: value.bytes)]
            let bytes = try batch.encoded()
            #expect(try withBatch(bytes) { try RecordBatch($0) } == batch)
            return bytes
        }
        for (type, kind) in [(Int16(0), ControlRecord.Kind?.some(.abort)), (1, .commit), (7, nil)] {
            try withBatch(try controlBatch(type: type)) { (view) throws in
                #expect(view.isControl && view.isTransactional)
                #expect(view.attributes.contains(.control))
                #expect(view.producerId == 77 && view.producerEpoch == 2)
                var it = view.records
                let r = try #require(try it.next())
                let control = try ControlRecord(key: try #require(r.key))
                #expect(control.version == 0)
                #expect(control.rawType == type)
                #expect(control.kind == kind)
                #expect(try it.next() == nil)
            }
        }
        // A control key cut short names the field it was reading.
        let short: [UInt8] = [0, 0, 1]
        #expect(throws: WireError(message: "ControlRecord", version: 0, field: "type", reason: .truncated(needed: 2, remaining: 1))) {
            try short.withRawBytes { (raw) throws(WireError) in _ = try ControlRecord(key: raw) }
        }
    }

    @Test func attributes() {
        let a = RecordBatchAttributes(compression: .zstd, [.transactional, .control])
        #expect(a.rawValue == 0x34)
        #expect(a.compressionBits == 4)
        #expect(RecordBatchAttributes.logAppendTime.rawValue == 8)
        #expect(RecordBatchAttributes.deleteHorizon.rawValue == 64)
    }

    @Test func setBaseOffsetAndEpochKeepTheCRCValid() throws {
        var bytes = try sampleBatch(baseOffset: 0, count: 4)
        let crcBefore = try withBatch(bytes) { $0.crc }
        bytes.withUnsafeMutableBytes { raw in
            RecordBatchView.setBaseOffset(9_876_543_210, inBatchAt: raw.baseAddress!)
            RecordBatchView.setPartitionLeaderEpoch(33, inBatchAt: raw.baseAddress!)
        }
        try withBatch(bytes) { (view) throws in
            #expect(view.baseOffset == 9_876_543_210)
            #expect(view.lastOffset == 9_876_543_213)
            #expect(view.partitionLeaderEpoch == 33)
            #expect(view.crc == crcBefore)
            #expect(try records(of: view).count == 4)
        }
        #expect(Array(bytes[0..<8]) == [0, 0, 0, 2, 0x4C, 0xB0, 0x16, 0xEA])
    }

    @Test func anyCorruptionUnderTheCRCIsDetected() throws {
        for codec in [CompressionCodec.none, .lz4] {
            let good = try sampleBatch(count: 3, compression: codec)
            for offset in RecordBatchLayout.crc..<good.count {
                for mask: UInt8 in [0x01, 0x80, 0xFF] {
                    var bad = good
                    bad[offset] ^= mask
                    let error = validationError(bad)
                    #expect(error?.field == "crc", "offset \(offset) mask \(mask)")
                    #expect(error?.message == "RecordBatch")
                    if case .invalid(let text)? = error?.reason {
                        #expect(text.contains("CRC mismatch"))
                    } else {
                        Issue.record("offset \(offset): \(String(describing: error))")
                    }
                }
            }
            // The fields outside the CRC may change freely.
            var moved = good
            moved[3] ^= 0xFF
            moved[13] ^= 0xFF
            #expect(validationError(moved) == nil)
        }
    }

    @Test(arguments: [Int8(0), 1])
    func legacyMagicIsRejectedWithAClearMessage(magic: Int8) throws {
        var bytes = try sampleBatch()
        bytes[RecordBatchLayout.magic] = UInt8(bitPattern: magic)
        let error = try #require(validationError(bytes))
        #expect(error.field == "magic")
        guard case .invalid(let text) = error.reason else {
            Issue.record("unexpected reason \(error.reason)")
            return
        }
        #expect(text.contains("legacy message set"))
        #expect(text.contains("magic \(magic)"))
        #expect(bytes.withUnsafeBytes { LegacyMessageHeader.isLegacy($0) })
        // The sequence reports the same error.
        bytes.withUnsafeBytes { raw in
            var seq = RecordBatchSequence(raw)
            #expect(throws: error) { try seq.next() }
        }
    }

    @Test func unknownMagicIsRejected() throws {
        var bytes = try sampleBatch()
        #expect(!bytes.withUnsafeBytes { LegacyMessageHeader.isLegacy($0) })
        bytes[RecordBatchLayout.magic] = 3
        let error = try #require(validationError(bytes))
        #expect(error.field == "magic")
        #expect(error.reason == .invalid("unknown magic 3"))
        #expect(!bytes.withUnsafeBytes { LegacyMessageHeader.isLegacy($0) })
    }

    @Test func truncatedBatches() throws {
        let good = try sampleBatch(count: 3)
        for cut in [0, 1, 11, 12, 16] {
            let error = validationError(Array(good.prefix(cut)))
            #expect(error == WireError(message: "RecordBatch", version: 2, field: "batchLength",
                                       reason: .truncated(needed: RecordBatchLayout.magic + 1, remaining: cut)))
        }
        for cut in [17, 20, 60, 61, good.count - 1] {
            let error = validationError(Array(good.prefix(cut)))
            #expect(error == WireError(message: "RecordBatch", version: 2, field: "batchLength",
                                       reason: .truncated(needed: good.count, remaining: cut)))
        }
        // Trailing bytes after the batch are not part of it.
        try (good + [1, 2, 3]).withUnsafeBytes { (raw) throws in
            #expect(try RecordBatchView(validating: raw).bytes.count == good.count)
        }
    }

    @Test func headerSanityChecks() throws {
        let good = try sampleBatch(count: 3)
        func edited(_ edit: (inout [UInt8]) -> Void) -> WireError? {
            var bytes = good
            edit(&bytes)
            fixCRC(&bytes)
            return validationError(bytes)
        }
        #expect(edited { _ in } == nil)
        #expect(edited { putBigEndian(Int32(-1), at: RecordBatchLayout.recordCount, in: &$0) }?.field == "recordCount")
        #expect(edited { putBigEndian(Int32(-1), at: RecordBatchLayout.lastOffsetDelta, in: &$0) }?.field == "lastOffsetDelta")
        #expect(edited { putBigEndian(Int32(1), at: RecordBatchLayout.lastOffsetDelta, in: &$0) }?.field == "lastOffsetDelta")
        #expect(edited { putBigEndian(Int32(10), at: RecordBatchLayout.lastOffsetDelta, in: &$0) } == nil)  // gaps are fine
        for bits in [Int16(5), 6, 7] {
            #expect(edited { putBigEndian(bits, at: RecordBatchLayout.attributes, in: &$0) }?.field == "attributes")
        }
        // batchLength below the header, and above maxSize.
        let short = edited { putBigEndian(Int32(48), at: RecordBatchLayout.batchLength, in: &$0) }
        #expect(short == WireError(message: "RecordBatch", version: 2, field: "batchLength", reason: .invalid("batchLength 48 below the header size")))
        let negative = edited { putBigEndian(Int32(-1), at: RecordBatchLayout.batchLength, in: &$0) }
        #expect(negative?.field == "batchLength")
        #expect(validationError(good, maxSize: good.count - 1) == WireError(
            message: "RecordBatch", version: 2, field: "batchLength", reason: .lengthTooLarge(length: good.count, remaining: good.count - 1)))
        #expect(validationError(good, maxSize: good.count) == nil)
    }

    @Test func sequenceOverConcatenatedBatches() throws {
        let parts = [
            try sampleBatch(baseOffset: 0, count: 3, tag: 1),
            try sampleBatch(baseOffset: 3, count: 1, tag: 2),
            try sampleBatch(baseOffset: 4, count: 20, compression: .gzip, tag: 3),
            try sampleBatch(baseOffset: 24, count: 0, tag: 4),
        ]
        let all = parts.flatMap { $0 }
        for validate in [true, false] {
            try all.withUnsafeBytes { (raw) throws in
                var seq = RecordBatchSequence(raw, validate: validate)
                for part in parts {
                    let view = try #require(try seq.next())
                    #expect(Array(view.bytes) == part)
                }
                #expect(try seq.next() == nil)
                #expect(seq.trailingBytes == 0)
                #expect(seq.position == all.count)
            }
            // A partial trailing batch: nil, with the leftover bytes reported.
            let next = try sampleBatch(baseOffset: 24, count: 2)
            for partial in [1, 11, 12, 30, next.count - 1] {
                try (all + next.prefix(partial)).withUnsafeBytes { (raw) throws in
                    var seq = RecordBatchSequence(raw, validate: validate)
                    var seen = 0
                    while try seq.next() != nil { seen += 1 }
                    #expect(seen == parts.count)
                    #expect(seq.trailingBytes == partial)
                    #expect(try seq.next() == nil)  // stays at the end
                }
            }
        }
        // A corrupt batch in the middle stops the walk with its error (when validating).
        var corrupt = all
        corrupt[parts[0].count + RecordBatchLayout.headerSize] ^= 1
        try corrupt.withUnsafeBytes { (raw) throws in
            var seq = RecordBatchSequence(raw)
            #expect(try seq.next() != nil)
            let error = #expect(throws: WireError.self) { try seq.next() }
            #expect(error?.field == "crc")
        }
        // A batch larger than maxBatchSize is an error, not a partial batch.
        let big = try sampleBatch(count: 10)
        #expect(big.count > 100)
        big.withUnsafeBytes { raw in
            var seq = RecordBatchSequence(UnsafeRawBufferPointer(rebasing: raw[..<100]), maxBatchSize: 80)
            let error = #expect(throws: WireError.self) { try seq.next() }
            #expect(error?.reason == .lengthTooLarge(length: big.count, remaining: 80))
        }
        // Empty input.
        try [UInt8]().withUnsafeBytes { (raw) throws in
            var seq = RecordBatchSequence(raw)
            #expect(try seq.next() == nil)
            #expect(seq.trailingBytes == 0)
        }
    }

    @Test func legacyMessageHeader() throws {
        var w = WireWriter()
        w.writeInt64(77)  // offset
        w.writeInt32(32)  // message size
        w.writeUInt32(0xDEAD_BEEF)  // crc
        w.writeInt8(1)  // magic
        w.writeInt8(2)  // attributes (snappy)
        w.writeInt64(1_500_000_000_000)  // timestamp (magic 1)
        w.writeNullableBytes(nil, compact: false)  // key
        w.writeNullableBytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], compact: false)  // value
        #expect(w.count == 12 + 32)
        let bytes = w.bytes
        let header = try bytes.withRawBytes { (raw) throws(WireError) in try LegacyMessageHeader(parsing: raw) }
        #expect(header.offset == 77)
        #expect(header.messageSize == 32)
        #expect(header.crc == 0xDEAD_BEEF)
        #expect(header.magic == 1)
        #expect(header.attributes == 2)
        #expect(bytes.withUnsafeBytes { LegacyMessageHeader.isLegacy($0) })

        // Magic 2 is not a legacy message; a short header names the field it stopped at.
        var v2 = bytes
        v2[16] = 2
        #expect(throws: WireError(message: "MessageSet", version: 0, field: "magic", reason: .invalid("magic 2 is not a legacy message"))) {
            try v2.withRawBytes { (raw) throws(WireError) in _ = try LegacyMessageHeader(parsing: raw) }
        }
        #expect(throws: WireError(message: "MessageSet", version: 0, field: "crc", reason: .truncated(needed: 4, remaining: 2))) {
            try Array(bytes.prefix(14)).withRawBytes { (raw) throws(WireError) in _ = try LegacyMessageHeader(parsing: raw) }
        }
        #expect(!Array(bytes.prefix(16)).withUnsafeBytes { LegacyMessageHeader.isLegacy($0) })
    }
}
