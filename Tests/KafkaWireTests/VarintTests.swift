import Testing
import KafkaWire

/// SplitMix64: deterministic values so a failure reproduces.
private struct VarintTestRandom {
    var state: UInt64
    mutating func next() -> UInt64 { SplitMix64.step(&state) }
    /// A value of a random bit width (so short and long varints are equally common), random sign.
    mutating func int64() -> Int64 {
        let width = Int(next() % 64)
        let magnitude = Int64(bitPattern: next() >> UInt64(63 - width))
        return next() & 1 == 0 ? magnitude : ~magnitude
    }
}

/// Reads one value with `read` from `bytes`; returns it and the bytes consumed.
private func decode<T>(
    _ bytes: [UInt8], field: StaticString = "value", _ read: (inout WireReader) throws(WireError) -> T
) throws(WireError) -> (value: T, consumed: Int) {
    try bytes.withRawBytes { (raw) throws(WireError) in
        var r = WireReader(raw)
        r.message = "VarintTest"
        r.field = field
        let v = try read(&r)
        return (v, r.position)
    }
}

/// Encodes with the raw-pointer `Varint.put`.
private func putSigned(_ value: Int64) -> [UInt8] {
    var out = [UInt8](repeating: 0xAA, count: 16)
    let n = out.withUnsafeMutableBytes { Varint.put(signed: value, at: $0.baseAddress!) }
    return Array(out[..<n])
}

/// Decodes with the raw-pointer `Varint.read`; returns the value and the index it stopped at.
private func readSigned(_ bytes: [UInt8], maxBytes: Int) -> (value: Int64?, index: Int) {
    bytes.withUnsafeBytes { raw in
        var i = 0
        // A non-null pointer even for no bytes (the reader never dereferences past `end`).
        let p = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 0x10)!
        let v = Varint.read(signed: p, &i, end: raw.count, maxBytes: maxBytes)
        return (v, i)
    }
}

private func writer(_ body: (inout WireWriter) -> Void) -> [UInt8] {
    var w = WireWriter()
    body(&w)
    return w.bytes
}

/// Kafka's zigzag varints (ByteUtils.writeVarint / writeVarlong), byte for byte.
private let varintVectors: [(Int32, [UInt8])] = [
    (0, [0x00]),
    (-1, [0x01]),
    (1, [0x02]),
    (-2, [0x03]),
    (2, [0x04]),
    (63, [0x7E]),
    (-64, [0x7F]),
    (64, [0x80, 0x01]),
    (-65, [0x81, 0x01]),
    (300, [0xD8, 0x04]),
    (8191, [0xFE, 0x7F]),
    (-8192, [0xFF, 0x7F]),
    (8192, [0x80, 0x80, 0x01]),
    (Int32.max, [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
    (Int32.min, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
]

private let varlongVectors: [(Int64, [UInt8])] = [
    (0, [0x00]),
    (-1, [0x01]),
    (1, [0x02]),
    (63, [0x7E]),
    (-64, [0x7F]),
    (64, [0x80, 0x01]),
    (Int64(Int32.max), [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
    (Int64(Int32.min), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    (Int64(Int32.max) + 1, [0x80, 0x80, 0x80, 0x80, 0x10]),
    (1_700_000_000_000, [0x80, 0xA0, 0xAB, 0xFE, 0xF9, 0x62]),
    (Int64.max, [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    (Int64.min, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
]

@Suite struct VarintTests {
    @Test(arguments: varintVectors)
    func knownVarintEncodings(value: Int32, expected: [UInt8]) throws {
        #expect(writer { $0.writeVarint(value) } == expected)
        // The int32 encoding is the int64 encoding of the same number.
        #expect(writer { $0.writeVarlong(Int64(value)) } == expected)
        #expect(putSigned(Int64(value)) == expected)
        #expect(Varint.size(signed: Int64(value)) == expected.count)

        let decoded = try decode(expected) { (r) throws(WireError) in try r.readVarint() }
        #expect(decoded.value == value)
        #expect(decoded.consumed == expected.count)
        let raw = readSigned(expected, maxBytes: 5)
        #expect(raw.value == Int64(value))
        #expect(raw.index == expected.count)
    }

    @Test(arguments: varlongVectors)
    func knownVarlongEncodings(value: Int64, expected: [UInt8]) throws {
        #expect(writer { $0.writeVarlong(value) } == expected)
        #expect(putSigned(value) == expected)
        #expect(Varint.size(signed: value) == expected.count)

        let decoded = try decode(expected) { (r) throws(WireError) in try r.readVarlong() }
        #expect(decoded.value == value)
        #expect(decoded.consumed == expected.count)
        let raw = readSigned(expected, maxBytes: 10)
        #expect(raw.value == value)
        #expect(raw.index == expected.count)
    }

    @Test func knownUnsignedVarints() throws {
        let vectors: [(UInt32, [UInt8])] = [
            (0, [0x00]),
            (1, [0x01]),
            (127, [0x7F]),
            (128, [0x80, 0x01]),
            (300, [0xAC, 0x02]),
            (16_383, [0xFF, 0x7F]),
            (16_384, [0x80, 0x80, 0x01]),
            (UInt32.max, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ]
        for (value, expected) in vectors {
            #expect(writer { $0.writeUnsignedVarint(value) } == expected, "\(value)")
            #expect(Varint.size(unsigned: UInt64(value)) == expected.count, "\(value)")
            let decoded = try decode(expected) { (r) throws(WireError) in try r.readUnsignedVarint() }
            #expect(decoded.value == value)
            #expect(decoded.consumed == expected.count)
        }
    }

    @Test func zigzag() {
        #expect(Varint.zigzag(0) == 0)
        #expect(Varint.zigzag(-1) == 1)
        #expect(Varint.zigzag(1) == 2)
        #expect(Varint.zigzag(-64) == 127)
        #expect(Varint.zigzag(Int64.max) == UInt64.max - 1)
        #expect(Varint.zigzag(Int64.min) == UInt64.max)
    }

    @Test func unsignedSizeBoundaries() {
        #expect(Varint.size(unsigned: 0) == 1)
        for k in 1...9 {
            let boundary = UInt64(1) << UInt64(7 * k)
            #expect(Varint.size(unsigned: boundary - 1) == k, "2^\(7 * k) - 1")
            #expect(Varint.size(unsigned: boundary) == k + 1, "2^\(7 * k)")
        }
        #expect(Varint.size(unsigned: UInt64.max) == 10)
    }

    @Test func overlongVarintsAreRejected() throws {
        let overlong32: [[UInt8]] = [
            [0x80, 0x80, 0x80, 0x80, 0x10],  // 5th byte carries bit 32
            [0xFF, 0xFF, 0xFF, 0xFF, 0x1F],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x00],  // 6 bytes
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ]
        for bytes in overlong32 {
            #expect(throws: WireError(message: "VarintTest", version: 0, field: "count", reason: .malformedVarint)) {
                try decode(bytes, field: "count") { (r) throws(WireError) in try r.readUnsignedVarint() }
            }
            #expect(throws: WireError(message: "VarintTest", version: 0, field: "offsetDelta", reason: .malformedVarint)) {
                try decode(bytes, field: "offsetDelta") { (r) throws(WireError) in try r.readVarint() }
            }
        }
        let overlong64: [[UInt8]] = [
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],  // 10th byte carries bit 64
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],  // 11 bytes
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7F],
        ]
        for bytes in overlong64 {
            #expect(throws: WireError(message: "VarintTest", version: 0, field: "timestamp", reason: .malformedVarint)) {
                try decode(bytes, field: "timestamp") { (r) throws(WireError) in try r.readVarlong() }
            }
        }
        // The raw-pointer reader limits the byte count (it does not check the 10th byte's value,
        // like Kafka's own ByteUtils.readVarlong).
        #expect(readSigned(overlong64[1], maxBytes: 10).value == nil)
        // A 5-byte varint is fine for a varlong, and a 10-byte one ending in 0x01 is accepted.
        #expect(try decode([0x80, 0x80, 0x80, 0x80, 0x10]) { (r) throws(WireError) in try r.readVarlong() }.value == 1 << 31)
        #expect(try decode([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) { (r) throws(WireError) in try r.readVarlong() }.value == 1 << 62)
        // Varint.read stops after maxBytes continuation bytes.
        #expect(readSigned([0x80, 0x80, 0x80, 0x80, 0x80, 0x00], maxBytes: 5).value == nil)
        #expect(readSigned([0x80, 0x80, 0x80, 0x80, 0x80, 0x00], maxBytes: 6).value == 0)
        #expect(readSigned([0x80, 0x01], maxBytes: 1).value == nil)
    }

    @Test func truncatedVarints() {
        for bytes: [UInt8] in [[], [0x80], [0xFF, 0xFF], [0x80, 0x80, 0x80, 0x80]] {
            #expect(throws: WireError(message: "VarintTest", version: 0, field: "length", reason: .truncated(needed: 1, remaining: 0))) {
                try decode(bytes, field: "length") { (r) throws(WireError) in try r.readVarint() }
            }
            #expect(throws: WireError(message: "VarintTest", version: 0, field: "length", reason: .truncated(needed: 1, remaining: 0))) {
                try decode(bytes, field: "length") { (r) throws(WireError) in try r.readVarlong() }
            }
            let raw = readSigned(bytes, maxBytes: 10)
            #expect(raw.value == nil)
            #expect(raw.index == bytes.count)
        }
    }

    @Test func consecutiveVarintsReadInOrder() throws {
        let values: [Int64] = [0, -1, 300, Int64.min, 7, Int64.max, -8192]
        let bytes = writer { w in for v in values { w.writeVarlong(v) } }
        let decoded = try decode(bytes) { (r) throws(WireError) in
            var out: [Int64] = []
            while !r.isAtEnd { out.append(try r.readVarlong()) }
            return out
        }
        #expect(decoded.value == values)
        #expect(decoded.consumed == bytes.count)
    }

    /// `Varint.put/size/read` (record hot path) agree with `WireWriter`/`WireReader`.
    @Test(arguments: [UInt64(1), 42, 0xDEAD_BEEF])
    func rawVarintAgreesWithWriterAndReader(seed: UInt64) throws {
        var rng = VarintTestRandom(state: seed)
        for _ in 0..<3_000 {
            let v = rng.int64()
            let written = writer { $0.writeVarlong(v) }
            #expect(putSigned(v) == written, "\(v)")
            #expect(Varint.size(signed: v) == written.count, "\(v)")
            #expect(Varint.size(unsigned: Varint.zigzag(v)) == written.count, "\(v)")
            let decoded = try decode(written) { (r) throws(WireError) in try r.readVarlong() }
            #expect(decoded.value == v)
            #expect(decoded.consumed == written.count)
            let raw = readSigned(written, maxBytes: 10)
            #expect(raw.value == v)
            #expect(raw.index == written.count)

            let v32 = Int32(truncatingIfNeeded: v)
            let written32 = writer { $0.writeVarint(v32) }
            #expect(written32 == putSigned(Int64(v32)), "\(v32)")
            let decoded32 = try decode(written32) { (r) throws(WireError) in try r.readVarint() }
            #expect(decoded32.value == v32)
            #expect(readSigned(written32, maxBytes: 5).value == Int64(v32))

            let u = UInt32(truncatingIfNeeded: v)
            let writtenU = writer { $0.writeUnsignedVarint(u) }
            var rawU = [UInt8](repeating: 0, count: 10)
            let n = rawU.withUnsafeMutableBytes { Varint.put(unsigned: UInt64(u), at: $0.baseAddress!) }
            #expect(Array(rawU[..<n]) == writtenU)
            #expect(try decode(writtenU) { (r) throws(WireError) in try r.readUnsignedVarint() }.value == u)
        }
    }
}
