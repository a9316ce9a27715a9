import CLZ4

/// LZ4 frame format (KIP-57, Kafka ≥ 0.10): written as the Java client does (64 KiB independent
/// blocks, no checksums, no content size); any valid frame sequence is read.
enum LZ4 {
    static let frameMagic: UInt32 = 0x184D_2204

    static func compress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], level: Int?
    ) throws(CompressionError) {
        var prefs = LZ4F_preferences_t()
        prefs.frameInfo.blockSizeID = LZ4F_max64KB
        prefs.frameInfo.blockMode = LZ4F_blockIndependent
        prefs.compressionLevel = Int32(clamping: level ?? 0)
        let bound = LZ4F_compressFrameBound(input.count, &prefs)
        let start = output.count
        growOutput(&output, by: bound)
        var dummy: UInt8 = 0
        let written = withUnsafeMutablePointer(to: &dummy) { dummyPtr in
            output.withUnsafeMutableBytes { buf in
                LZ4F_compressFrame(
                    buf.baseAddress!.advanced(by: start), bound,
                    input.baseAddress ?? UnsafeRawPointer(dummyPtr), input.count, &prefs)
            }
        }
        guard LZ4F_isError(written) == 0 else {
            output.removeLast(output.count - start)
            let name = String(cString: LZ4F_getErrorName(written))
            throw CompressionError(codec: .lz4, reason: .libraryFailure("LZ4F_compressFrame: \(name)"))
        }
        output.removeLast(bound - written)
    }

    static func decompress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        let contexts = CodecContexts.current
        guard let dctx = contexts.lz4Decompressor() else {
            throw CompressionError(codec: .lz4, reason: .libraryFailure("cannot create LZ4F context"))
        }

        // The frame header may carry the content size (FLG bit 3, 8 bytes LE after FLG and BD).
        var claimed: Int? = nil
        if input.count >= 15,
           UInt32(littleEndian: input.loadUnaligned(as: UInt32.self)) == frameMagic,
           input[4] & 0x08 != 0 {
            let size = UInt64(littleEndian: input.loadUnaligned(fromByteOffset: 6, as: UInt64.self))
            claimed = size > UInt64(Int.max) ? Int.max : Int(size)
        }
        // A context left mid-frame keeps stale state through LZ4F_resetDecompressionContext
        // (seen with content-size frames in lz4 1.9.4): drop it after any failure.
        do throws(CompressionError) {
            try decodeStreaming(
                .lz4, input, appendingTo: &output, limit: limit,
                hint: initialOutputGuess(claimed: claimed, inputCount: input.count, limit: limit)
            ) { src, dst in
                var dstSize = dst.count
                var srcSize = src.count
                let hint = LZ4F_decompress(dctx, dst.baseAddress, &dstSize, src.baseAddress, &srcSize, nil)
                if LZ4F_isError(hint) != 0 {
                    let name = String(cString: LZ4F_getErrorName(hint))
                    return DecodeStep(consumed: srcSize, produced: dstSize, status: .failed(name))
                }
                return DecodeStep(
                    consumed: srcSize, produced: dstSize, status: hint == 0 ? .frameDone : .needsMore)
            }
        } catch {
            contexts.discardLZ4Decompressor()
            throw error
        }
    }
}
