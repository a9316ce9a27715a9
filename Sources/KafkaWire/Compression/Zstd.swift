import CZstd

/// Zstandard frames (KIP-110). Decoded with the streaming API, since frames written by
/// streaming encoders (zstd-jni) carry no content size.
enum Zstd {
    static func compress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], level: Int?
    ) throws(CompressionError) {
        let bound = ZSTD_compressBound(input.count)
        guard ZSTD_isError(bound) == 0 else {
            throw CompressionError(codec: .zstd, reason: .libraryFailure("input too large"))
        }
        let contexts = CodecContexts.current
        guard let cctx = contexts.zstdCompressor() else {
            throw CompressionError(codec: .zstd, reason: .libraryFailure("cannot create ZSTD context"))
        }
        defer { contexts.doneCompressingZstd() }
        let start = output.count
        growOutput(&output, by: bound)
        var dummy: UInt8 = 0
        let written = withUnsafeMutablePointer(to: &dummy) { dummyPtr in
            output.withUnsafeMutableBytes { buf in
                ZSTD_compressCCtx(
                    cctx, buf.baseAddress!.advanced(by: start), bound,
                    input.baseAddress ?? UnsafeRawPointer(dummyPtr), input.count,
                    Int32(clamping: level ?? Int(ZSTD_CLEVEL_DEFAULT)))
            }
        }
        guard ZSTD_isError(written) == 0 else {
            output.removeLast(output.count - start)
            let name = String(cString: ZSTD_getErrorName(written))
            throw CompressionError(codec: .zstd, reason: .libraryFailure("ZSTD_compressCCtx: \(name)"))
        }
        output.removeLast(bound - written)
    }

    /// Largest window (log2) a frame may demand: enough for `limit` bytes of output, at least
    /// 16 MiB (streaming encoders use ≤ 8 MiB up to level 19), at most zstd's default 128 MiB.
    static func windowLogMax(limit: Int) -> Int32 {
        let needed = limit <= 1 ? 0 : Int.bitWidth - (limit - 1).leadingZeroBitCount
        return Int32(Swift.min(Swift.max(needed, 24), 27))
    }

    static func decompress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        var claimed: Int? = nil
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if size < UInt64.max - 1 {  // neither ZSTD_CONTENTSIZE_UNKNOWN nor ZSTD_CONTENTSIZE_ERROR
            guard size <= UInt64(limit) else {
                throw CompressionError(codec: .zstd, reason: .outputLimitExceeded(limit: limit))
            }
            claimed = Int(size)
        }
        let contexts = CodecContexts.current
        guard let dctx = contexts.zstdDecompressor() else {
            throw CompressionError(codec: .zstd, reason: .libraryFailure("cannot create ZSTD context"))
        }
        defer { contexts.doneDecompressingZstd() }
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, windowLogMax(limit: limit))

        try decodeStreaming(
            .zstd, input, appendingTo: &output, limit: limit,
            hint: initialOutputGuess(claimed: claimed, inputCount: input.count, limit: limit)
        ) { src, dst in
            var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
            let hint = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
            if ZSTD_isError(hint) != 0 {
                let name = String(cString: ZSTD_getErrorName(hint))
                return DecodeStep(consumed: inBuf.pos, produced: outBuf.pos, status: .failed(name))
            }
            return DecodeStep(consumed: inBuf.pos, produced: outBuf.pos, status: hint == 0 ? .frameDone : .needsMore)
        }
    }
}
