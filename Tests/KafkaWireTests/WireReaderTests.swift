import Testing
import KafkaWire

/// Runs `body` on a reader over `bytes` (message "Test", version 3).
private func reading<T>(
    _ bytes: [UInt8], _ body: (inout WireReader) throws(WireError) -> T
) throws(WireError) -> T {
    try bytes.withRawBytes { (raw) throws(WireError) in
        var r = WireReader(raw)
        r.message = "Test"
        r.version = 3
        return try body(&r)
    }
}

/// The error `body` throws on a reader over `bytes`, or nil if it does not throw.
private func failure<T>(_ bytes: [UInt8], _ body: (inout WireReader) throws(WireError) -> T) -> WireError? {
    do {
        _ = try reading(bytes, body)
        return nil
    } catch {
        return error
    }
}

private func writer(_ body: (inout WireWriter) -> Void) -> [UInt8] {
    var w = WireWriter()
    body(&w)
    return w.bytes
}

private func expectError(
    _ error: WireError?, field: String, _ reason: WireError.Reason, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(error == WireError(message: "Test", version: 3, field: field, reason: reason), sourceLocation: sourceLocation)
}

@Suite struct WireReaderTests {
    @Test func fixedWidthIsBigEndianAndRoundTrips() throws {
        let uuid = KafkaUUID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
        let bytes = writer { w in
            w.writeInt8(-2)
            w.writeInt16(0x0102)
            w.writeInt32(0x0304_0506)
            w.writeInt64(-1)
            w.writeUInt16(0xFFFE)
            w.writeUInt32(0xDEAD_BEEF)
            w.writeBool(true)
            w.writeBool(false)
            w.writeFloat64(-1.5)
            w.writeUUID(uuid)
        }
        #expect(bytes.count == 1 + 2 + 4 + 8 + 2 + 4 + 1 + 1 + 8 + 16)
        #expect(Array(bytes[0..<7]) == [0xFE, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
        #expect(Array(bytes[17..<21]) == [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(Array(bytes[23..<31]) == [0xBF, 0xF8, 0, 0, 0, 0, 0, 0])  // IEEE 754 -1.5
        try reading(bytes) { (r) throws(WireError) in
            #expect(try r.readInt8() == -2)
            #expect(try r.readInt16() == 0x0102)
            #expect(try r.readInt32() == 0x0304_0506)
            #expect(try r.readInt64() == -1)
            #expect(try r.readUInt16() == 0xFFFE)
            #expect(try r.readUInt32() == 0xDEAD_BEEF)
            #expect(try r.readBool() == true)
            #expect(try r.readBool() == false)
            #expect(try r.readFloat64() == -1.5)
            #expect(try r.readUUID() == uuid)
            #expect(r.isAtEnd)
            #expect(r.remaining == 0)
        }
        #expect(uuid.description == "0123456789abcdeffedcba9876543210")
        #expect(KafkaUUID.zero.description == String(repeating: "0", count: 32))
    }

    @Test func truncatedFixedWidthNamesFieldAndKeepsPosition() throws {
        try reading([1, 2, 3]) { (r) throws(WireError) in
            r.field = "partitionIndex"
            #expect(throws: WireError(message: "Test", version: 3, field: "partitionIndex", reason: .truncated(needed: 4, remaining: 3))) {
                try r.readInt32()
            }
            #expect(r.position == 0)
            r.field = "uuid"
            #expect(throws: WireError(message: "Test", version: 3, field: "uuid", reason: .truncated(needed: 8, remaining: 3))) {
                try r.readUUID()
            }
            #expect(try r.readInt16() == 0x0102)
            r.field = "tail"
            #expect(throws: WireError(message: "Test", version: 3, field: "tail", reason: .truncated(needed: 2, remaining: 1))) {
                try r.readRawBytes(2)
            }
            #expect(throws: WireError(message: "Test", version: 3, field: "tail", reason: .truncated(needed: 5, remaining: 1))) {
                try r.skip(5)
            }
            try r.skip(1)
            #expect(r.isAtEnd)
        }
        let e = WireError(message: "Produce", version: 9, field: "acks", reason: .truncated(needed: 2, remaining: 0))
        #expect(e.description.contains("Produce v9 field acks"))
    }

    @Test func stringEncodings() throws {
        let s = "héllo"  // 6 UTF-8 bytes
        let utf8 = Array(s.utf8)
        #expect(writer { $0.writeString(s, compact: false) } == [0x00, 0x06] + utf8)
        #expect(writer { $0.writeString(s, compact: true) } == [0x07] + utf8)
        #expect(writer { $0.writeNullableString(nil, compact: false) } == [0xFF, 0xFF])
        #expect(writer { $0.writeNullableString(nil, compact: true) } == [0x00])
        #expect(writer { $0.writeNullableString("", compact: true) } == [0x01])
        #expect(writer { $0.writeNullableString("", compact: false) } == [0x00, 0x00])
        #expect(writer { $0.writeBytes([9, 8], compact: false) } == [0, 0, 0, 2, 9, 8])
        #expect(writer { $0.writeBytes([9, 8], compact: true) } == [3, 9, 8])
        #expect(writer { $0.writeNullableBytes(nil, compact: false) } == [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(writer { $0.writeNullableBytes(nil, compact: true) } == [0x00])
        // A compact length of 200 + 1 takes two varint bytes.
        let long = String(repeating: "x", count: 200)
        #expect(Array(writer { $0.writeString(long, compact: true) }.prefix(2)) == [0xC9, 0x01])
        #expect(try reading(writer { $0.writeString(long, compact: true) }) { (r) throws(WireError) in try r.readString(compact: true) } == long)
    }

    /// Every nullable/non-null form written by WireWriter reads back, in sequence.
    @Test(arguments: [false, true])
    func nullableRoundTrips(compact: Bool) throws {
        let strings: [String?] = [nil, "", "a", "ünïcödé", String(repeating: "k", count: 300)]
        let byteValues: [[UInt8]?] = [nil, [], [0], [0xFF, 0x00, 0x80], Array(repeating: 7, count: 129)]
        let bytes = writer { w in
            for s in strings { w.writeNullableString(s, compact: compact) }
            for b in byteValues { w.writeNullableBytes(b, compact: compact) }
            w.writeString("end", compact: compact)
            w.writeBytes([1, 2, 3], compact: compact)
        }
        try reading(bytes) { (r) throws(WireError) in
            for s in strings { #expect(try r.readNullableString(compact: compact) == s) }
            for b in byteValues { #expect(try r.readNullableBytes(compact: compact) == b) }
            #expect(try r.readString(compact: compact) == "end")
            #expect(try r.readBytes(compact: compact) == [1, 2, 3])
            #expect(r.isAtEnd)
        }
    }

    @Test func classicStringErrors() throws {
        // Null where a string is required.
        expectError(failure([0xFF, 0xFF]) { (r) throws(WireError) in r.field = "topic"; return try r.readString(compact: false) },
                    field: "topic", .negativeLength(-1))
        #expect(try reading([0xFF, 0xFF]) { (r) throws(WireError) in try r.readNullableString(compact: false) } == nil)
        // Negative lengths other than -1 are never valid.
        expectError(failure([0xFF, 0xFE]) { (r) throws(WireError) in r.field = "topic"; return try r.readString(compact: false) },
                    field: "topic", .negativeLength(-2))
        expectError(failure([0x80, 0x00]) { (r) throws(WireError) in r.field = "groupId"; return try r.readNullableString(compact: false) },
                    field: "groupId", .negativeLength(-32768))
        // Longer than the bytes left.
        expectError(failure([0x00, 0x0A, 0x61, 0x62, 0x63]) { (r) throws(WireError) in r.field = "topic"; return try r.readString(compact: false) },
                    field: "topic", .lengthTooLarge(length: 10, remaining: 3))
        expectError(failure([0x7F, 0xFF]) { (r) throws(WireError) in r.field = "topic"; return try r.readNullableString(compact: false) },
                    field: "topic", .lengthTooLarge(length: 32767, remaining: 0))
        // The length itself is cut off.
        expectError(failure([0x00]) { (r) throws(WireError) in r.field = "clientId"; return try r.readString(compact: false) },
                    field: "clientId", .truncated(needed: 2, remaining: 1))
    }

    @Test func compactStringErrors() throws {
        expectError(failure([0x00]) { (r) throws(WireError) in r.field = "name"; return try r.readString(compact: true) },
                    field: "name", .negativeLength(-1))
        #expect(try reading([0x00]) { (r) throws(WireError) in try r.readNullableString(compact: true) } == nil)
        expectError(failure([0x0B, 0x61, 0x62, 0x63]) { (r) throws(WireError) in r.field = "name"; return try r.readString(compact: true) },
                    field: "name", .lengthTooLarge(length: 10, remaining: 3))
        // Length varint of UInt32.max: far beyond the input.
        expectError(failure([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) { (r) throws(WireError) in r.field = "name"; return try r.readNullableString(compact: true) },
                    field: "name", .lengthTooLarge(length: Int(UInt32.max) - 1, remaining: 0))
        expectError(failure([]) { (r) throws(WireError) in r.field = "name"; return try r.readString(compact: true) },
                    field: "name", .truncated(needed: 1, remaining: 0))
        expectError(failure([0x81]) { (r) throws(WireError) in r.field = "name"; return try r.readString(compact: true) },
                    field: "name", .truncated(needed: 1, remaining: 0))
        expectError(failure([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) { (r) throws(WireError) in r.field = "name"; return try r.readString(compact: true) },
                    field: "name", .malformedVarint)
    }

    @Test func bytesErrors() throws {
        // Classic: int32 length.
        expectError(failure([0xFF, 0xFF, 0xFF, 0xFF]) { (r) throws(WireError) in r.field = "records"; return try r.readBytes(compact: false) },
                    field: "records", .negativeLength(-1))
        #expect(try reading([0xFF, 0xFF, 0xFF, 0xFF]) { (r) throws(WireError) in try r.readNullableBytes(compact: false) } == nil)
        expectError(failure([0xFF, 0xFF, 0xFF, 0xFB]) { (r) throws(WireError) in r.field = "records"; return try r.readNullableBytes(compact: false) },
                    field: "records", .negativeLength(-5))
        expectError(failure([0x00, 0x00, 0x00, 0x64, 0x01, 0x02]) { (r) throws(WireError) in r.field = "records"; return try r.readBytes(compact: false) },
                    field: "records", .lengthTooLarge(length: 100, remaining: 2))
        expectError(failure([0x00, 0x00, 0x00]) { (r) throws(WireError) in r.field = "records"; return try r.readBytes(compact: false) },
                    field: "records", .truncated(needed: 4, remaining: 3))
        // Compact: unsigned varint N+1.
        expectError(failure([0x00]) { (r) throws(WireError) in r.field = "metadata"; return try r.readBytes(compact: true) },
                    field: "metadata", .negativeLength(-1))
        #expect(try reading([0x00]) { (r) throws(WireError) in try r.readNullableBytes(compact: true) } == nil)
        #expect(try reading([0x01]) { (r) throws(WireError) in try r.readNullableBytes(compact: true) } == [])
        expectError(failure([0x04, 0x01, 0x02]) { (r) throws(WireError) in r.field = "metadata"; return try r.readNullableBytes(compact: true) },
                    field: "metadata", .lengthTooLarge(length: 3, remaining: 2))
        expectError(failure([0x80]) { (r) throws(WireError) in r.field = "metadata"; return try r.readBytes(compact: true) },
                    field: "metadata", .truncated(needed: 1, remaining: 0))
    }

    @Test(arguments: [false, true])
    func arrays(compact: Bool) throws {
        let values: [Int32] = [7, -1, Int32.max]
        let bytes = writer { w in
            w.writeLength(values.count, compact: compact, wide: true)
            for v in values { w.writeInt32(v) }
            w.writeLength(nil, compact: compact, wide: true)
            w.writeLength(0, compact: compact, wide: true)
        }
        try reading(bytes) { (r) throws(WireError) in
            #expect(try r.readArray(compact: compact, minElementSize: 4) { (e) throws(WireError) in try e.readInt32() } == values)
            #expect(try r.readNullableArray(compact: compact, minElementSize: 4) { (e) throws(WireError) in try e.readInt32() } == nil)
            #expect(try r.readArray(compact: compact, minElementSize: 4) { (e) throws(WireError) in try e.readInt32() } == [])
            #expect(r.isAtEnd)
        }
    }

    @Test(arguments: [false, true])
    func arrayErrors(compact: Bool) {
        func array(_ count: Int?, _ payload: [UInt8]) -> [UInt8] {
            writer { $0.writeLength(count, compact: compact, wide: true) } + payload
        }
        let readInt32s: (inout WireReader) throws(WireError) -> [Int32] = { (r) throws(WireError) in
            r.field = "partitions"
            return try r.readArray(compact: compact, minElementSize: 4) { (e) throws(WireError) in try e.readInt32() }
        }
        // Null where an array is required.
        expectError(failure(array(nil, []), readInt32s), field: "partitions", .negativeLength(-1))
        // 5 elements of at least 4 bytes cannot fit in 8 bytes: rejected before any element is read.
        expectError(failure(array(5, [UInt8](repeating: 0, count: 8)), readInt32s),
                    field: "partitions", .lengthTooLarge(length: 5, remaining: 8))
        // An element that fails reports the element's field.
        let elementFails = failure(array(2, [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3])) { (r) throws(WireError) in
            try r.readArray(compact: compact, minElementSize: 4) { (e) throws(WireError) in
                e.field = "partitionIndex"
                _ = try e.readInt32()
                e.field = "leaderEpoch"
                return try e.readInt32()
            }
        }
        expectError(elementFails, field: "leaderEpoch", .truncated(needed: 4, remaining: 0))
        if !compact {
            expectError(failure([0xFF, 0xFF, 0xFF, 0xFD], readInt32s), field: "partitions", .negativeLength(-3))
            expectError(failure([0x7F, 0xFF, 0xFF, 0xFF], readInt32s),
                        field: "partitions", .lengthTooLarge(length: Int(Int32.max), remaining: 0))
        } else {
            expectError(failure([0xFF, 0xFF, 0xFF, 0xFF, 0x0F], readInt32s),
                        field: "partitions", .lengthTooLarge(length: Int(UInt32.max) - 1, remaining: 0))
        }
    }

    @Test func taggedFields() throws {
        let bytes = writer { w in
            w.writeUnsignedVarint(2)
            w.writeTaggedField(tag: 0) { $0.writeInt32(0x0A0B_0C0D) }
            w.writeTaggedField(tag: 300) { $0.writeString("x", compact: true) }
            w.writeInt8(99)
        }
        #expect(Array(bytes.prefix(7)) == [0x02, 0x00, 0x04, 0x0A, 0x0B, 0x0C, 0x0D])
        try reading(bytes) { (r) throws(WireError) in
            #expect(try r.readTaggedFieldCount() == 2)
            #expect(try r.readUnsignedVarint() == 0)
            var sub = try r.taggedFieldReader()
            #expect(sub.message.description == "Test")
            #expect(try sub.readInt32() == 0x0A0B_0C0D)
            #expect(sub.isAtEnd)
            #expect(throws: WireError.self) { try sub.readInt8() }  // bounded to the field
            #expect(try r.readUnsignedVarint() == 300)
            var sub2 = try r.taggedFieldReader()
            #expect(try sub2.readString(compact: true) == "x")
            #expect(try r.readInt8() == 99)
        }
        // skipTaggedFields lands on what follows.
        #expect(try reading(bytes) { (r) throws(WireError) in try r.skipTaggedFields(); return try r.readInt8() } == 99)
        // Sizes beyond the input.
        expectError(failure([0x01, 0x00, 0x05, 0x01]) { (r) throws(WireError) in r.field = "_tagged"; try r.skipTaggedFields() },
                    field: "_tagged", .lengthTooLarge(length: 5, remaining: 1))
        expectError(failure([0x03, 0x00, 0x00]) { (r) throws(WireError) in r.field = "_tagged"; try r.skipTaggedFields() },
                    field: "_tagged", .lengthTooLarge(length: 3, remaining: 2))
        expectError(failure([0x05, 0x01]) { (r) throws(WireError) in r.field = "_tagged"; try r.skipTaggedField() },
                    field: "_tagged", .truncated(needed: 5, remaining: 1))
    }

    @Test func slicedReaderInheritsContextAndBounds() throws {
        try reading([1, 2, 3, 4, 5, 6]) { (r) throws(WireError) in
            r.field = "inner"
            _ = try r.readInt8()
            var sub = WireReader(slicing: r, count: 2)
            #expect(sub.remaining == 2)
            #expect(try sub.readInt16() == 0x0203)
            #expect(throws: WireError(message: "Test", version: 3, field: "inner", reason: .truncated(needed: 1, remaining: 0))) {
                try sub.readInt8()
            }
            #expect(r.position == 1)
        }
    }
}
