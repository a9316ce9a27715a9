import Testing
import KafkaWire
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Bounded, deterministic fuzzing of the decoders that see untrusted bytes. Every decoder here
// throws only `WireError` (typed throws); a trap or an out-of-bounds read is the failure this
// file looks for. Inputs are copied into exact-size allocations, and every slice a decoder
// hands out is checked to lie inside the bytes it was given (so an out-of-bounds slice is
// caught even without a sanitizer).

/// Multiplies the iteration counts (`APUS_FUZZ_SCALE=50 swift test --filter FuzzTests` for a
/// longer run, e.g. under `--sanitize=address`); 1 by default, which keeps this file to a few
/// seconds in a debug build.
private let fuzzScale = max(1, getenv("APUS_FUZZ_SCALE").flatMap { Int(String(cString: $0)) } ?? 1)

// MARK: - Deterministic randomness

/// SplitMix64.
private struct FuzzRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 { SplitMix64.step(&state) }
    /// 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    static let interestingBytes: [UInt8] = [0x00, 0x01, 0x02, 0x7E, 0x7F, 0x80, 0x81, 0xFE, 0xFF]
    mutating func interestingByte() -> UInt8 {
        chance(50) ? pick(Self.interestingBytes) : UInt8(truncatingIfNeeded: next())
    }
}

// MARK: - Encoding helpers

private func zigzagVarint(_ value: Int64) -> [UInt8] {
    var w = WireWriter()
    w.writeVarlong(value)
    return w.bytes
}

/// Varints that stress length handling: edges, negatives, and overlong encodings.
private func interestingVarint(_ rng: inout FuzzRandom, near: Int) -> [UInt8] {
    switch rng.below(6) {
    case 0: return [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]  // 6 bytes: overlong for an int32
    case 1: return [UInt8](repeating: 0x80, count: 10) + [0x01]  // 11 bytes
    case 2: return zigzagVarint(Int64(near + rng.below(5) - 2))
    case 3: return zigzagVarint(Int64(truncatingIfNeeded: rng.next()))
    default:
        let values: [Int64] = [0, 1, -1, -2, 2, 63, 64, -65, 127, 128, 255, 16_384,
                               Int64(Int32.max), Int64(Int32.min), Int64(Int32.max) + 1, Int64.max, Int64.min]
        return zigzagVarint(rng.pick(values))
    }
}

private func putBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
    guard offset + MemoryLayout<T>.size <= bytes.count else { return }
    withUnsafeBytes(of: value.bigEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
}

/// Makes the batch header agree with the buffer: batchLength = count - 12, then the CRC.
/// This gets mutated bytes past the size and CRC checks, to the records.
private func fixLengthAndCRC(_ bytes: inout [UInt8]) {
    guard bytes.count >= RecordBatchLayout.headerSize else { return }
    putBigEndian(Int32(bytes.count - RecordBatchLayout.logOverhead), at: RecordBatchLayout.batchLength, in: &bytes)
    fixCRC(&bytes)
}

private func fixCRC(_ bytes: inout [UInt8]) {
    guard bytes.count >= RecordBatchLayout.headerSize else { return }
    let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributes...])) }
    putBigEndian(crc, at: RecordBatchLayout.crc, in: &bytes)
}

/// Runs `body` over a copy of `bytes` in an allocation of exactly that size.
private func withExactCopy<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let p = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { p.deallocate() }
    bytes.withUnsafeBytes { if !$0.isEmpty { p.copyMemory(from: $0) } }
    return body(UnsafeRawBufferPointer(p))
}

// MARK: - Corpus

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// Records with null/empty/binary keys and values, with and without headers.
private func corpusRecords(variant: Int) -> [Record] {
    var records: [Record] = []
    for i in 0..<(3 + variant * 2) {
        let key: [UInt8]? = i % 3 == 0 ? nil : (i % 3 == 1 ? [] : Array("key-\(i)".utf8))
        let value: [UInt8]? = i % 4 == 3 ? nil : (0..<(i * 7 % 40)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ i) }
        let headers: [RecordHeader] = i % 2 == 0 ? [] : [
            RecordHeader(key: "h\(i)", value: [UInt8(i)]),
            RecordHeader(key: "", value: nil),
        ]
        records.append(Record(timestampDelta: Int64(i * 3), offsetDelta: Int32(i), key: key, value: value, headers: headers))
    }
    return records
}

/// The same records written by the builder (hot path) with `codec`.
private func builtBatch(variant: Int, codec: CompressionCodec) throws -> [UInt8] {
    var b = RecordBatchBuilder(capacity: 8192)
    b.reset(baseTimestamp: 1_000 + Int64(variant), producerId: 3, producerEpoch: 1, baseSequence: 5)
    for r in corpusRecords(variant: variant) {
        let ok = withOptionalBytes(r.key) { k in
            withOptionalBytes(r.value) { v in
                r.headers.isEmpty
                    ? b.append(key: k, value: v, timestampDelta: r.timestampDelta)
                    : b.append(key: k, value: v, headers: r.headers, timestampDelta: r.timestampDelta)
            }
        }
        #expect(ok)
    }
    return Array(try b.finish(baseOffset: Int64(variant * 100), compression: codec))
}

/// A commit marker: a control batch.
private func controlBatch() throws -> [UInt8] {
    var batch = RecordBatch()
    batch.attributes = [.control, .transactional]
    batch.producerId = 9
    batch.producerEpoch = 0
    batch.records = [Record(key: [0, 0, 0, 1], value: [0, 0, 0, 0, 0, 4])]
    return try batch.encoded()
}

private func uncompressedCorpus() throws -> [[UInt8]] {
    var corpus = try (0..<4).map { try builtBatch(variant: $0, codec: .none) }
    corpus.append(try controlBatch())
    var empty = RecordBatchBuilder(capacity: 64 + RecordBatchLayout.headerSize)
    empty.reset(baseTimestamp: 0)
    corpus.append(Array(try empty.finish()))
    return corpus
}

// MARK: - Exercising the decoders

/// What a fuzz run saw; `violations` must stay empty.
private struct FuzzStats {
    var validBatches = 0
    var rejectedBatches = 0
    var records = 0
    var recordErrors = 0
    var decodedBatches = 0
    var decodeErrors = 0
    var errorFields: Set<String> = []
    var violations: [String] = []

    mutating func violation(_ text: @autoclosure () -> String) {
        if violations.count < 20 { violations.append(text()) }
    }
}

/// True if `inner` lies inside `outer` (an empty slice may sit at its end).
private func inside(_ inner: UnsafeRawBufferPointer?, _ outer: UnsafeRawBufferPointer) -> Bool {
    guard let inner, let start = inner.baseAddress else { return true }
    guard let base = outer.baseAddress else { return inner.isEmpty }
    let s = UInt(bitPattern: start), b = UInt(bitPattern: base)
    return s >= b && s + UInt(inner.count) <= b + UInt(outer.count)
}

private let recordFields: Set<String> = [
    "length", "attributes", "timestampDelta", "offsetDelta", "key", "value", "headers", "headerKey", "headerValue",
]

/// Iterates every record (and header) of an uncompressed records section.
/// Returns the number of records read, or nil if the iterator threw.
@discardableResult
private func exerciseRecords(_ section: UnsafeRawBufferPointer, count: Int, _ stats: inout FuzzStats) -> Int? {
    var it = RecordIterator(records: section, count: count)
    var n = 0
    do throws(WireError) {
        while let r = try it.next() {
            n += 1
            if n > count { stats.violation("iterator yielded \(n) records for count \(count)"); return n }
            if !inside(r.key, section) || !inside(r.value, section) || !inside(r.headerBytes, section) {
                stats.violation("record \(n) slice outside its section")
            }
            if r.headerCount < 0 || r.headerCount > r.headerBytes.count / 2 {
                stats.violation("header count \(r.headerCount) for \(r.headerBytes.count) bytes")
            }
            var headers = r.headers
            var h = 0
            while let (k, v) = try headers.next() {
                h += 1
                if !inside(k, r.headerBytes) || !inside(v, r.headerBytes) { stats.violation("header slice outside the record") }
                if h > r.headerCount { stats.violation("more headers than the count"); break }
            }
            if h != r.headerCount { stats.violation("\(h) headers for count \(r.headerCount)") }
            let owned = try Record(r)
            if owned.key?.count != r.key?.count || owned.value?.count != r.value?.count { stats.violation("Record copy differs") }
            stats.records += 1
        }
        if n != max(count, 0) { stats.violation("iterator ended after \(n) of \(count) records without an error") }
        if it.trailingBytes < 0 || it.trailingBytes > section.count { stats.violation("trailingBytes \(it.trailingBytes)") }
        return n
    } catch {
        stats.recordErrors += 1
        stats.errorFields.insert(error.field)
        if error.message != "Record" || !recordFields.contains(error.field) { stats.violation("unexpected record error \(error)") }
        return nil
    }
}

/// The decompression limit for fuzzed batches: well above what the corpus decompresses to
/// (< 1 KiB), and small because the codecs zero-fill output buffers sized by it (up to 1 MiB
/// for a garbage header, 64 KiB steps when growing), which is slow in a debug build.
private let decompressionLimit = 8 << 10

/// Validates a buffer as a batch; when it passes, iterates and decodes it fully. Also walks
/// it as a batch sequence, validating and not. Returns whether validation passed.
@discardableResult
private func exerciseBatch(_ raw: UnsafeRawBufferPointer, _ stats: inout FuzzStats) -> Bool {
    var valid = false
    do throws(WireError) {
        let view = try RecordBatchView(validating: raw)
        valid = true
        stats.validBatches += 1
        if !inside(view.bytes, raw) || view.bytes.count != Int(view.batchLength) + RecordBatchLayout.logOverhead
            || view.bytes.count < RecordBatchLayout.headerSize || view.recordCount < 0 {
            stats.violation("validated view out of shape")
        }
        if !view.isCompressed {
            exerciseRecords(view.recordsSection, count: Int(view.recordCount), &stats)
        }
        do throws(WireError) {
            let batch = try RecordBatch(view, decompressionLimit: decompressionLimit)
            stats.decodedBatches += 1
            if batch.records.count != Int(view.recordCount) { stats.violation("decoded \(batch.records.count) of \(view.recordCount)") }
        } catch {
            stats.decodeErrors += 1
            stats.errorFields.insert(error.field)
            if error.message != "RecordBatch" && error.message != "Record" { stats.violation("unexpected decode error \(error)") }
        }
    } catch {
        stats.rejectedBatches += 1
        stats.errorFields.insert(error.field)
        if error.message != "RecordBatch" { stats.violation("unexpected validation error \(error)") }
    }

    for validate in [true, false] {
        var seq = RecordBatchSequence(raw, validate: validate)
        var last = 0
        do throws(WireError) {
            while let view = try seq.next() {
                if !inside(view.bytes, raw) || seq.position <= last || seq.position > raw.count {
                    stats.violation("sequence out of shape")
                    break
                }
                last = seq.position
                // Unvalidated views: the iterator must be safe with any header values.
                if !validate && !view.isCompressed {
                    exerciseRecords(view.recordsSection, count: Int(view.recordCount), &stats)
                }
            }
            if seq.trailingBytes != raw.count - seq.position { stats.violation("trailingBytes") }
        } catch {
            if error.message != "RecordBatch" { stats.violation("unexpected sequence error \(error)") }
        }
    }
    return valid
}

// MARK: - Mutations

private enum Mutation: CaseIterable {
    case bitFlip, overwrite, truncate, headerField, varintSplice, insert, delete, duplicate
}

/// Applies one random mutation; `from` keeps the bytes before it intact (e.g. the header).
private func mutate(_ bytes: inout [UInt8], _ rng: inout FuzzRandom, from: Int = 0, kinds: [Mutation] = Mutation.allCases) {
    let lo = min(from, bytes.count)
    let span = bytes.count - lo
    switch rng.pick(kinds) {
    case .bitFlip:
        guard span > 0 else { return }
        bytes[lo + rng.below(span)] ^= UInt8(1) << UInt8(rng.below(8))
    case .overwrite:
        guard span > 0 else { return }
        for _ in 0...rng.below(3) { bytes[lo + rng.below(span)] = rng.interestingByte() }
    case .truncate:
        bytes.removeLast(rng.chance(50) ? rng.below(span + 1) : min(span, 1 + rng.below(4)))
    case .headerField:
        // Length and count fields of the batch header.
        let fields: [(Int, Int)] = [
            (RecordBatchLayout.batchLength, 4), (RecordBatchLayout.recordCount, 4),
            (RecordBatchLayout.lastOffsetDelta, 4), (RecordBatchLayout.attributes, 2),
        ]
        let (offset, size) = rng.pick(fields)
        guard offset >= lo else { return }
        let values: [Int64] = [0, 1, -1, 2, 48, 49, 50, Int64(bytes.count), Int64(bytes.count - 12), Int64(bytes.count - 11),
                               Int64(Int32.max), Int64(Int32.min), Int64(Int16.max), 5, 6, 7, 0x25, 1_000_000]
        let v = rng.chance(70) ? rng.pick(values) : Int64(Int32(truncatingIfNeeded: rng.next()))
        if size == 4 { putBigEndian(Int32(truncatingIfNeeded: v), at: offset, in: &bytes) } else { putBigEndian(Int16(truncatingIfNeeded: v), at: offset, in: &bytes) }
    case .varintSplice:
        // Replace 1-3 bytes with a varint (a record length, key length, header count...).
        guard span > 0 else { return }
        let at = lo + rng.below(span)
        let n = min(1 + rng.below(3), bytes.count - at)
        bytes.replaceSubrange(at..<(at + n), with: interestingVarint(&rng, near: bytes.count - at))
    case .insert:
        let at = lo + rng.below(span + 1)
        bytes.insert(contentsOf: rng.chance(50) ? rng.bytes(1 + rng.below(8)) : interestingVarint(&rng, near: 0), at: at)
    case .delete:
        guard span > 0 else { return }
        let at = lo + rng.below(span)
        bytes.removeSubrange(at..<min(bytes.count, at + 1 + rng.below(8)))
    case .duplicate:
        guard span > 1 else { return }
        let at = lo + rng.below(span)
        let chunk = Array(bytes[at..<min(bytes.count, at + 1 + rng.below(16))])
        bytes.insert(contentsOf: chunk, at: lo + rng.below(span))
    }
}

private func expectClean(_ stats: FuzzStats, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(stats.violations.isEmpty, "\(stats.violations)", sourceLocation: sourceLocation)
}

// MARK: - Tests

@Suite struct FuzzTests {
    /// Random buffers, some dressed up as batches (magic 2, matching length, valid CRC) so
    /// that the record iterator sees random records.
    @Test(arguments: [UInt64(1), 2])
    func randomBuffers(seed: UInt64) {
        var rng = FuzzRandom(seed: seed)
        var stats = FuzzStats()
        for _ in 0..<(2_500 * fuzzScale) {
            var bytes = rng.bytes(rng.below(rng.chance(20) ? 4_000 : 200))
            if rng.chance(60) && bytes.count >= RecordBatchLayout.headerSize {
                bytes[RecordBatchLayout.magic] = 2
                bytes[RecordBatchLayout.attributes] = 0
                bytes[RecordBatchLayout.attributes + 1] &= rng.chance(70) ? 0xF0 : 0xF7
                let count = Int32(rng.below(20))
                putBigEndian(count, at: RecordBatchLayout.recordCount, in: &bytes)
                putBigEndian(count + Int32(rng.below(3)), at: RecordBatchLayout.lastOffsetDelta, in: &bytes)
                fixLengthAndCRC(&bytes)
            }
            withExactCopy(bytes) { raw in
                exerciseBatch(raw, &stats)
                exerciseRecords(raw, count: rng.below(50), &stats)
                let headers = RecordView(attributes: 0, timestampDelta: 0, offsetDelta: 0, key: nil, value: nil,
                                         headerCount: rng.chance(50) ? rng.below(10) : Int(Int32.max), headerBytes: raw)
                var it = headers.headers
                do throws(WireError) {
                    while let (k, v) = try it.next() {
                        if !inside(k, raw) || !inside(v, raw) { stats.violation("header outside its bytes") }
                    }
                } catch {
                    if error.message != "Record" { stats.violation("unexpected header error \(error)") }
                }
            }
        }
        expectClean(stats)
        // Both outcomes were reached: the dressed-up buffers validate, the others do not.
        #expect(stats.validBatches > 100)
        #expect(stats.rejectedBatches > 100)
        #expect(stats.recordErrors > 100)
    }

    /// Mutated uncompressed batches, with and without the CRC fixed up afterwards.
    @Test(arguments: [UInt64(11), 12, 13])
    func mutatedUncompressedBatches(seed: UInt64) throws {
        let corpus = try uncompressedCorpus()
        var rng = FuzzRandom(seed: seed)
        var stats = FuzzStats()
        var crcCaught = 0
        for _ in 0..<(1_500 * fuzzScale) {
            let original = rng.pick(corpus)
            var bytes = original
            for _ in 0...rng.below(3) { mutate(&bytes, &rng) }
            let fixed = rng.chance(60)
            if fixed {
                if rng.chance(80) { fixLengthAndCRC(&bytes) } else { fixCRC(&bytes) }
            }
            let valid = withExactCopy(bytes) { exerciseBatch($0, &stats) }
            // Without the fix-up, a change under the CRC that keeps the size is always caught.
            if !fixed && bytes.count == original.count && bytes[..<RecordBatchLayout.crc] == original[..<RecordBatchLayout.crc]
                && bytes != original {
                crcCaught += 1
                if valid { stats.violation("corruption under the CRC was accepted") }
            }
        }
        expectClean(stats)
        #expect(crcCaught > 50)
        #expect(stats.validBatches > 100)
        #expect(stats.rejectedBatches > 100)
        #expect(stats.recordErrors > 50)  // corrupt records reached the iterator
        #expect(stats.records > 1_000)
        #expect(stats.errorFields.isSuperset(of: ["crc", "batchLength", "length"]))
    }

    /// The record iterator straight over mutated records sections: no batch, no CRC, any count.
    @Test(arguments: [UInt64(21), 22])
    func recordIteratorOverMutatedSections(seed: UInt64) throws {
        let sections = try (0..<4).map { Array(try builtBatch(variant: $0, codec: .none)[RecordBatchLayout.headerSize...]) }
        let counts = (0..<4).map { corpusRecords(variant: $0).count }
        var rng = FuzzRandom(seed: seed)
        var stats = FuzzStats()
        var unchanged = 0
        for _ in 0..<(5_000 * fuzzScale) {
            let which = rng.below(sections.count)
            var section = sections[which]
            let mutations = rng.below(4)  // 0: the intact section
            for _ in 0..<mutations { mutate(&section, &rng, kinds: [.bitFlip, .overwrite, .truncate, .varintSplice, .insert, .delete, .duplicate]) }
            let count: Int
            switch rng.below(6) {
            case 0: count = Int(Int32.max)
            case 1: count = rng.below(counts[which] + 3)
            case 2: count = -1
            default: count = counts[which]
            }
            withExactCopy(section) { raw in
                let n = exerciseRecords(raw, count: count, &stats)
                if mutations == 0 && count == counts[which] {
                    unchanged += 1
                    if n != count { stats.violation("intact section read \(String(describing: n)) of \(count) records") }
                }
                if count == Int(Int32.max) && n != nil { stats.violation("read \(Int32.max) records from \(raw.count) bytes") }
            }
        }
        expectClean(stats)
        #expect(unchanged > 100)
        #expect(stats.recordErrors > 1_000)
        #expect(stats.records > 5_000)
        // Errors came from across the record's fields.
        #expect(stats.errorFields.isSuperset(of: ["length", "key", "value", "headers", "headerKey"]))
    }

    /// The header iterator over mutated header bytes taken from real records.
    @Test func headerIteratorOverMutatedHeaders() throws {
        var rng = FuzzRandom(seed: 31)
        var stats = FuzzStats()
        var encoded: [[UInt8]] = []
        for headers in [[RecordHeader(key: "a", value: [1, 2, 3])],
                        [RecordHeader(key: "trace", value: nil), RecordHeader(key: "", value: []), RecordHeader(key: "k", value: [0xFF])]] {
            var w = WireWriter()
            for h in headers {
                w.writeVarint(Int32(h.key.utf8.count))
                w.bytes.append(contentsOf: h.key.utf8)
                if let v = h.value { w.writeVarint(Int32(v.count)); w.bytes.append(contentsOf: v) } else { w.writeVarint(-1) }
            }
            encoded.append(w.bytes)
        }
        var complete = 0
        for _ in 0..<(5_000 * fuzzScale) {
            var bytes = rng.pick(encoded)
            for _ in 0..<rng.below(4) { mutate(&bytes, &rng, kinds: [.bitFlip, .overwrite, .truncate, .varintSplice, .insert, .delete]) }
            let count = rng.chance(20) ? Int(Int32.max) : rng.below(5)
            withExactCopy(bytes) { raw in
                let view = RecordView(attributes: 0, timestampDelta: 0, offsetDelta: 0, key: nil, value: nil,
                                      headerCount: count, headerBytes: raw)
                var it = view.headers
                var n = 0
                do throws(WireError) {
                    while let (k, v) = try it.next() {
                        n += 1
                        if !inside(k, raw) || !inside(v, raw) { stats.violation("header slice outside its bytes") }
                    }
                    if n != count { stats.violation("\(n) headers for count \(count)") }
                    complete += 1
                } catch {
                    stats.recordErrors += 1
                    stats.errorFields.insert(error.field)
                    if !["headerKey", "headerValue"].contains(error.field) { stats.violation("unexpected header error \(error)") }
                }
            }
        }
        expectClean(stats)
        #expect(complete > 500)
        #expect(stats.recordErrors > 500)
        #expect(stats.errorFields == ["headerKey", "headerValue"])
    }

    /// Mutated compressed batches with the length and CRC fixed, so every one validates and
    /// reaches the decompressor; and valid compression of mutated records, so the decompressed
    /// bytes reach the record decoder.
    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func mutatedCompressedBatches(codec: CompressionCodec) throws {
        let batches = try (0..<3).map { try builtBatch(variant: $0, codec: codec) }
        let plainSections = try (0..<3).map { Array(try builtBatch(variant: $0, codec: .none)[RecordBatchLayout.headerSize...]) }
        var rng = FuzzRandom(seed: 41 &+ UInt64(codec.rawValue))
        var stats = FuzzStats()
        for _ in 0..<(400 * fuzzScale) {
            var bytes = rng.pick(batches)
            for _ in 0...rng.below(2) {
                mutate(&bytes, &rng, from: RecordBatchLayout.headerSize, kinds: [.bitFlip, .overwrite, .truncate, .varintSplice, .insert, .delete, .duplicate])
            }
            fixLengthAndCRC(&bytes)
            let valid = withExactCopy(bytes) { exerciseBatch($0, &stats) }
            if !valid { stats.violation("a compressed batch with a fixed CRC failed validation") }
        }
        let corruptCompressed = stats
        #expect(corruptCompressed.validBatches == 400 * fuzzScale)
        #expect(corruptCompressed.decodeErrors > 100)

        for _ in 0..<(300 * fuzzScale) {
            let which = rng.below(batches.count)
            var plain = plainSections[which]
            for _ in 0...rng.below(2) { mutate(&plain, &rng, kinds: [.bitFlip, .overwrite, .truncate, .varintSplice, .insert, .delete]) }
            var bytes = Array(batches[which][..<RecordBatchLayout.headerSize])
            bytes.append(contentsOf: try codec.compress(plain))
            fixLengthAndCRC(&bytes)
            let valid = withExactCopy(bytes) { exerciseBatch($0, &stats) }
            if !valid { stats.violation("a recompressed batch failed validation") }
        }
        expectClean(stats)
        #expect(stats.validBatches == 700 * fuzzScale)
        #expect(stats.decodedBatches > corruptCompressed.decodedBatches)  // some mutations keep records decodable
        #expect(stats.decodeErrors > corruptCompressed.decodeErrors + 50)  // and many do not
    }

    /// Every truncation of a batch: rejected as truncated; with the length and CRC fixed up,
    /// it validates but its records cannot all be read.
    @Test func everyTruncation() throws {
        let good = try builtBatch(variant: 3, codec: .none)
        let count = corpusRecords(variant: 3).count
        var stats = FuzzStats()
        for cut in 0..<good.count {
            let prefix = Array(good[..<cut])
            withExactCopy(prefix) { raw in
                do throws(WireError) {
                    _ = try RecordBatchView(validating: raw)
                    stats.violation("prefix \(cut) validated")
                } catch {
                    guard case .truncated = error.reason, error.field == "batchLength" else {
                        stats.violation("prefix \(cut): \(error)")
                        return
                    }
                }
                var seq = RecordBatchSequence(raw)
                if (try? seq.next()) != nil || seq.trailingBytes != cut {
                    stats.violation("sequence over prefix \(cut) did not report a partial batch")
                }
            }
            guard cut >= RecordBatchLayout.headerSize else { continue }
            var fixed = prefix
            fixLengthAndCRC(&fixed)
            withExactCopy(fixed) { raw in
                guard let view = try? RecordBatchView(validating: raw) else {
                    stats.violation("fixed prefix \(cut) did not validate")
                    return
                }
                if exerciseRecords(view.recordsSection, count: count, &stats) != nil {
                    stats.violation("fixed prefix \(cut) yielded all \(count) records")
                }
                if (try? RecordBatch(view)) != nil { stats.violation("fixed prefix \(cut) decoded") }
            }
        }
        expectClean(stats)
        #expect(stats.recordErrors == good.count - RecordBatchLayout.headerSize)
    }

    /// WireReader primitives in random order over random bytes: only WireError, never a read
    /// past the end, and the position only moves forward within the buffer.
    @Test(arguments: [UInt64(51), 52])
    func wireReaderPrimitives(seed: UInt64) {
        var rng = FuzzRandom(seed: seed)
        var stats = FuzzStats()
        var reads = 0
        var errors = 0
        var reasons: Set<String> = []
        for _ in 0..<(3_000 * fuzzScale) {
            var bytes = rng.bytes(rng.below(64))
            // Sprinkle small lengths so that strings and arrays sometimes succeed.
            for _ in 0..<rng.below(4) where !bytes.isEmpty { bytes[rng.below(bytes.count)] = UInt8(rng.below(8)) }
            withExactCopy(bytes) { raw in
                var r = WireReader(raw)
                r.message = "Fuzz"
                var steps = 0
                while steps < 40 {
                    steps += 1
                    let before = r.position
                    let compact = rng.chance(50)
                    do throws(WireError) {
                        switch rng.below(17) {
                        case 0: _ = try r.readInt8()
                        case 1: _ = try r.readInt16()
                        case 2: _ = try r.readInt32()
                        case 3: _ = try r.readInt64()
                        case 4: _ = try r.readUUID()
                        case 5: _ = try r.readFloat64()
                        case 6: _ = try r.readUnsignedVarint()
                        case 7: _ = try r.readVarint()
                        case 8: _ = try r.readVarlong()
                        case 9:
                            let s = try r.readNullableString(compact: compact)
                            if let s, s.utf8.count > 3 * (r.position - before) { stats.violation("string longer than its bytes") }
                        case 10: _ = try r.readString(compact: compact)
                        case 11:
                            let b = try r.readNullableBytes(compact: compact)
                            if let b, b.count > r.position - before { stats.violation("bytes longer than their input") }
                        case 12: _ = try r.readBytes(compact: compact)
                        case 13:
                            _ = try r.readNullableArray(compact: compact, minElementSize: 2) { (e) throws(WireError) in try e.readInt16() }
                        case 14:
                            _ = try r.readArray(compact: compact, minElementSize: 1) { (e) throws(WireError) in try e.readString(compact: compact) }
                        case 15: try r.skipTaggedFields()
                        default:
                            var sub = try r.taggedFieldReader()
                            while !sub.isAtEnd { _ = try sub.readInt8() }
                            if sub.end > r.end { stats.violation("tagged field reader beyond its parent") }
                        }
                        reads += 1
                    } catch {
                        errors += 1
                        reasons.insert("\(error.reason)".prefix(while: { $0 != "(" }).description)
                        if error.message != "Fuzz" { stats.violation("error lost the message name: \(error)") }
                        break
                    }
                    if r.position < before || r.position > r.end { stats.violation("position \(r.position) outside 0...\(r.end)") }
                    if r.isAtEnd { break }
                }
            }
        }
        expectClean(stats)
        #expect(reads > 3_000)
        #expect(errors > 1_000)
        #expect(reasons.isSuperset(of: ["truncated", "negativeLength", "lengthTooLarge", "malformedVarint"]))
    }
}
