#if canImport(Glibc)
import Glibc
#endif
import CLZ4
import CSnappy
import CZstd
import KafkaWire
import Testing

/// Deterministic random bytes (SplitMix64) so failures reproduce.
private struct CodecTestRandom {
    var state: UInt64
    mutating func next() -> UInt64 { SplitMix64.step(&state) }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= count { buf.storeBytes(of: next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < count { buf[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
        return out
    }
    /// JSON-ish records, compressible like real Kafka payloads.
    mutating func text(_ count: Int) -> [UInt8] {
        let words = ["order", "user", "id", "amount", "currency", "EUR", "status", "shipped",
                     "timestamp", "region", "eu-west-1", "true", "false", "null", "items"]
        var out = [UInt8]()
        out.reserveCapacity(count + 64)
        while out.count < count {
            out += Array("{\"\(words[below(words.count)])\":\"\(words[below(words.count)])-\(below(100_000))\",\"n\":\(below(1000))}\n".utf8)
        }
        return Array(out[..<count])
    }
}

/// Byte equality via memcmp (Array == crawls in debug builds).
private func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in
        x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

private let compressing: [CompressionCodec] = [.gzip, .snappy, .lz4, .zstd]

/// Decompresses and checks the contract: either a CompressionError, or output within the limit.
/// (Typed-throws closures handed to rethrows APIs crash Swift 6.3.1's IRGen: hence Result.)
private func decodeHostile(_ codec: CompressionCodec, _ input: [UInt8], limit: Int) -> [UInt8]? {
    var out: [UInt8] = [9, 9, 9]
    let result = input.withUnsafeBytes { raw in
        Result { () throws(CompressionError) in try codec.decompress(raw, appendingTo: &out, limit: limit) }
    }
    if case .failure(let error) = result {
        #expect(out == [9, 9, 9], "output restored after \(error)")
        return nil
    }
    #expect(out.count - 3 <= limit)
    return Array(out[3...])
}

@Suite struct CompressionTests {
    @Test func codecFromAttributes() throws {
        for codec in CompressionCodec.allCases {
            #expect(try CompressionCodec(attributes: Int16(codec.rawValue)) == codec)
            #expect(try CompressionCodec(attributes: Int16(codec.rawValue) | 0x0030) == codec)
        }
        for bad in [5, 6, 7, 0x7F] as [Int16] {
            #expect(throws: CompressionError(codec: nil, reason: .unsupportedCodec(UInt8(bad & 7)))) {
                try CompressionCodec(attributes: bad)
            }
        }
    }

    @Test(arguments: CompressionCodec.allCases)
    func roundTrips(codec: CompressionCodec) throws {
        var rng = CodecTestRandom(state: UInt64(codec.rawValue) + 1)
        let inputs: [[UInt8]] = [
            [], [0x41], rng.bytes(1000), rng.text(100_000), rng.bytes(3 << 20), rng.text(3 << 20),
            [UInt8](repeating: 0, count: 4 << 20), rng.bytes(32 * 1024), rng.bytes(64 * 1024 + 1),
        ]
        for input in inputs {
            // Append after existing bytes, to check offsets are honoured.
            var packed: [UInt8] = [1, 2, 3]
            try input.withUnsafeBytes { raw in
                Result { () throws(CompressionError) in try codec.compress(raw, appendingTo: &packed) }
            }.get()
            #expect(Array(packed[..<3]) == [1, 2, 3])
            var unpacked: [UInt8] = [7]
            try packed.withUnsafeBytes { raw in
                Result { () throws(CompressionError) in
                    try codec.decompress(UnsafeRawBufferPointer(rebasing: raw[3...]), appendingTo: &unpacked,
                                         limit: input.count)
                }
            }.get()
            #expect(unpacked.first == 7)
            #expect(unpacked.count == input.count + 1)
            #expect(same(Array(unpacked[1...]), input), "\(codec) \(input.count) bytes")
        }
    }

    @Test(arguments: compressing)
    func limitIsEnforced(codec: CompressionCodec) throws {
        var rng = CodecTestRandom(state: 99)
        let input = rng.text(200_000)
        let packed = try codec.compress(input)
        #expect(same(try codec.decompress(packed, limit: input.count), input))
        #expect(throws: CompressionError(codec: codec, reason: .outputLimitExceeded(limit: input.count - 1))) {
            _ = try codec.decompress(packed, limit: input.count - 1)
        }
        #expect(throws: CompressionError(codec: codec, reason: .outputLimitExceeded(limit: 0))) {
            _ = try codec.decompress(packed, limit: 0)
        }
        // A zip bomb: 64 MiB of zeros must stop at the limit.
        let bomb = try codec.compress([UInt8](repeating: 0, count: 64 << 20))
        #expect(throws: CompressionError(codec: codec, reason: .outputLimitExceeded(limit: 1 << 20))) {
            _ = try codec.decompress(bomb, limit: 1 << 20)
        }
    }

    @Test func noneCodec() throws {
        #expect(try CompressionCodec.none.compress([1, 2, 3]) == [1, 2, 3])
        #expect(try CompressionCodec.none.decompress([1, 2, 3], limit: 3) == [1, 2, 3])
        #expect(throws: CompressionError(codec: CompressionCodec.none, reason: .outputLimitExceeded(limit: 2))) {
            _ = try CompressionCodec.none.decompress([1, 2, 3], limit: 2)
        }
    }

    @Test func emptyInputIsCorrupt() {
        for codec in compressing {
            #expect(decodeHostile(codec, [], limit: 100) == nil)
        }
    }

    // MARK: Framing as Kafka's Java client writes it

    @Test func gzipWritesGzip() throws {
        let packed = try CompressionCodec.gzip.compress(Array("hello".utf8))
        #expect(Array(packed[..<3]) == [0x1F, 0x8B, 0x08])
    }

    @Test func snappyWritesXerialFraming() throws {
        var rng = CodecTestRandom(state: 5)
        let input = rng.bytes(100_000)
        let packed = try CompressionCodec.snappy.compress(input)
        #expect(Array(packed[..<16]) == [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1])
        // Walk the blocks: 32 KiB of input each (4 blocks for 100,000 bytes).
        var pos = 16
        var blocks = 0
        while pos < packed.count {
            let length = packed[pos..<(pos + 4)].reduce(0) { $0 << 8 | Int($1) }
            pos += 4 + length
            blocks += 1
        }
        #expect(pos == packed.count)
        #expect(blocks == 4)
        #expect(try CompressionCodec.snappy.compress([]).count == 16)
    }

    @Test func lz4WritesKafkaFrame() throws {
        let packed = try CompressionCodec.lz4.compress(Array("hello hello hello".utf8))
        // Magic, FLG = version 01 + independent blocks, BD = 64 KiB blocks.
        #expect(Array(packed[..<6]) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40])
    }

    @Test func zstdWritesFrame() throws {
        let packed = try CompressionCodec.zstd.compress(Array("hello".utf8))
        #expect(Array(packed[..<4]) == [0x28, 0xB5, 0x2F, 0xFD])
    }

    // MARK: Other writers' framing

    @Test func rawSnappyIsAccepted() throws {
        // Hand-made block: length 16, literal "abcd", copy 11 bytes from offset 4, literal "d".
        let block: [UInt8] = [0x10, 0x0C, 0x61, 0x62, 0x63, 0x64, 0x1D, 0x04, 0x00, 0x64]
        #expect(try CompressionCodec.snappy.decompress(block, limit: 16) == Array("abcdabcdabcdabcd".utf8))

        // A large raw block, as librdkafka sends it.
        var rng = CodecTestRandom(state: 11)
        let input = rng.text(1 << 20)
        var raw = [UInt8](repeating: 0, count: snappy_max_compressed_length(input.count))
        var rawLength = raw.count
        let status = input.withUnsafeBytes { src in
            raw.withUnsafeMutableBytes { dst in
                snappy_compress(src.baseAddress!.assumingMemoryBound(to: CChar.self), src.count,
                                dst.baseAddress!.assumingMemoryBound(to: CChar.self), &rawLength)
            }
        }
        #expect(status == SNAPPY_OK)
        raw.removeLast(raw.count - rawLength)
        #expect(same(try CompressionCodec.snappy.decompress(raw, limit: input.count), input))
    }

    @Test func concatenatedStreams() throws {
        var rng = CodecTestRandom(state: 3)
        let a = rng.text(70_000)
        let b = rng.bytes(5_000)
        for codec in compressing {
            let joined = try codec.compress(a) + codec.compress(b)
            #expect(same(try codec.decompress(joined, limit: a.count + b.count), a + b), "\(codec)")
        }
    }

    /// LZ4 frames with the options Kafka doesn't write: content size, block and content
    /// checksums, linked blocks, bigger blocks.
    @Test func lz4FrameVariants() throws {
        var rng = CodecTestRandom(state: 17)
        let input = rng.text(600_000)
        var all: [UInt8] = []
        for (linked, checksums, contentSize, blockSize) in [
            (true, true, true, LZ4F_max256KB), (true, false, false, LZ4F_max64KB),
            (false, true, false, LZ4F_max4MB), (false, false, true, LZ4F_max1MB),
        ] {
            var prefs = LZ4F_preferences_t()
            prefs.frameInfo.blockMode = linked ? LZ4F_blockLinked : LZ4F_blockIndependent
            prefs.frameInfo.blockSizeID = blockSize
            prefs.frameInfo.contentChecksumFlag = checksums ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum
            prefs.frameInfo.blockChecksumFlag = checksums ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum
            prefs.frameInfo.contentSize = contentSize ? UInt64(input.count) : 0
            var frame = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(input.count, &prefs))
            let n = input.withUnsafeBytes { src in
                frame.withUnsafeMutableBytes { dst in
                    LZ4F_compressFrame(dst.baseAddress, dst.count, src.baseAddress, src.count, &prefs)
                }
            }
            #expect(LZ4F_isError(n) == 0)
            frame.removeLast(frame.count - n)
            all += frame
            #expect(same(try CompressionCodec.lz4.decompress(frame, limit: input.count), input))
            if contentSize {
                #expect(throws: CompressionError(codec: .lz4, reason: .outputLimitExceeded(limit: 1000))) {
                    _ = try CompressionCodec.lz4.decompress(frame, limit: 1000)
                }
            }
            if checksums {  // a flipped literal byte deep inside must be caught
                var bad = frame
                bad[bad.count / 2] ^= 0x01
                #expect(decodeHostile(.lz4, bad, limit: input.count) == nil)
            }
        }
        // All four frames back to back, with and without content sizes.
        let four = try CompressionCodec.lz4.decompress(all, limit: 4 * input.count)
        #expect(same(four, input + input + input + input))
    }

    /// A zstd frame without the content size, as streaming encoders (zstd-jni) write it, and
    /// one with a checksum.
    @Test func zstdStreamedFrame() throws {
        var rng = CodecTestRandom(state: 23)
        let input = rng.text(500_000)
        guard let cctx = ZSTD_createCCtx() else { Issue.record("no cctx"); return }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 19)
        var frame = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let written = input.withUnsafeBytes { src in
            frame.withUnsafeMutableBytes { dst -> Int in
                var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                // Streaming without a pledged size: the header carries no content size.
                while inBuf.pos < inBuf.size {
                    _ = ZSTD_compressStream2(cctx, &outBuf, &inBuf, ZSTD_e_continue)
                }
                while ZSTD_compressStream2(cctx, &outBuf, &inBuf, ZSTD_e_end) > 0 {}
                return outBuf.pos
            }
        }
        frame.removeLast(frame.count - written)
        let size = frame.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        #expect(size == UInt64.max)  // ZSTD_CONTENTSIZE_UNKNOWN
        #expect(same(try CompressionCodec.zstd.decompress(frame, limit: input.count), input))
        #expect(throws: CompressionError(codec: .zstd, reason: .outputLimitExceeded(limit: input.count - 1))) {
            _ = try CompressionCodec.zstd.decompress(frame, limit: input.count - 1)
        }
        var bad = frame
        bad[bad.count / 2] ^= 0x10
        #expect(decodeHostile(.zstd, bad, limit: input.count) == nil)
    }

    /// Cached per-thread contexts must decode correctly after aborted, corrupt and truncated runs.
    @Test(arguments: compressing)
    func contextsRecoverAfterFailures(codec: CompressionCodec) throws {
        var rng = CodecTestRandom(state: 4000 + UInt64(codec.rawValue))
        let input = rng.text(300_000)
        let packed = try codec.compress(input)
        for round in 0..<4 {
            _ = decodeHostile(codec, Array(packed[..<(packed.count / 2)]), limit: input.count)
            _ = decodeHostile(codec, packed, limit: 1000 * round)
            var bad = packed
            bad[packed.count / 3] ^= 0xFF
            _ = decodeHostile(codec, bad, limit: input.count)
            #expect(same(try codec.decompress(packed, limit: input.count), input), "round \(round)")
            #expect(same(try codec.decompress(codec.compress(input, level: nil), limit: input.count), input))
        }
    }

    // MARK: Hostile input

    @Test(arguments: compressing)
    func randomBytesAreRejectedSafely(codec: CompressionCodec) {
        var rng = CodecTestRandom(state: 1000 + UInt64(codec.rawValue))
        let prefixes: [[UInt8]] = [
            [], [0x1F, 0x8B, 0x08, 0x00], [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1],
            [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82], [0x28, 0xB5, 0x2F, 0xFD],
        ]
        for i in 0..<2000 {
            let junk = prefixes[i % prefixes.count] + rng.bytes(rng.below(i < 1000 ? 64 : 4096))
            _ = decodeHostile(codec, junk, limit: 1 << 20)
        }
    }

    @Test(arguments: compressing)
    func truncationsAreRejected(codec: CompressionCodec) throws {
        var rng = CodecTestRandom(state: 2000 + UInt64(codec.rawValue))
        let input = rng.text(150_000)
        let packed = try codec.compress(input)
        var cuts = Array(0..<min(packed.count, 300))
        for _ in 0..<300 { cuts.append(rng.below(packed.count)) }
        cuts += (1...8).map { packed.count - $0 }
        for cut in cuts where cut < packed.count {
            let result = decodeHostile(codec, Array(packed[..<cut]), limit: input.count)
            if let result {
                // Only xerial snappy can end cleanly at a block boundary: a shorter prefix.
                #expect(codec == .snappy, "\(codec) accepted a stream cut at \(cut)")
                #expect(same(Array(input[..<result.count]), result))
            }
        }
    }

    @Test(arguments: compressing)
    func bitFlipsAreHandledSafely(codec: CompressionCodec) throws {
        var rng = CodecTestRandom(state: 3000 + UInt64(codec.rawValue))
        let input = rng.text(100_000)
        let packed = try codec.compress(input)
        for i in 0..<1500 {
            var bad = packed
            let flips = i < 1000 ? 1 : 1 + rng.below(8)
            for _ in 0..<flips {
                let at = i < 200 ? rng.below(min(32, bad.count)) : rng.below(bad.count)  // headers too
                bad[at] ^= UInt8(1) << UInt8(rng.below(8))
            }
            _ = decodeHostile(codec, bad, limit: input.count + 1000)
        }
    }
}
