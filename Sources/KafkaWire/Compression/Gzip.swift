import CZlib

/// gzip (RFC 1952) via zlib, as Kafka's GZIPOutputStream/GZIPInputStream use it.
enum Gzip {
    /// Largest piece handed to zlib at once (its counters are 32-bit).
    static let maxPiece = Int(UInt32.max)

    static func compress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], level: Int?
    ) throws(CompressionError) {
        let contexts = CodecContexts.current
        guard let strm = contexts.gzipDeflater(level: Int32(clamping: level ?? Int(Z_DEFAULT_COMPRESSION))) else {
            throw CompressionError(codec: .gzip, reason: .libraryFailure("deflateInit2 failed (level \(level ?? -1))"))
        }

        let start = output.count
        var produced = 0
        var inPos = 0
        growOutput(&output, by: Int(deflateBound(strm, uLong(input.count))))
        while true {
            if start + produced == output.count { growOutput(&output, by: Swift.max(produced, 4096)) }
            let piece = Swift.min(input.count - inPos, maxPiece)
            let finish = inPos + piece == input.count
            let (code, consumed, wrote) = output.withUnsafeMutableBytes { buf in
                let free = buf.count - start - produced
                strm.pointee.next_in = UnsafeMutablePointer(
                    mutating: input.baseAddress?.advanced(by: inPos).assumingMemoryBound(to: Bytef.self))
                strm.pointee.avail_in = uInt(piece)
                strm.pointee.next_out = buf.baseAddress!.advanced(by: start + produced)
                    .assumingMemoryBound(to: Bytef.self)
                strm.pointee.avail_out = uInt(Swift.min(free, maxPiece))
                let outBefore = strm.pointee.avail_out
                let code = deflate(strm, finish ? Z_FINISH : Z_NO_FLUSH)
                return (code, piece - Int(strm.pointee.avail_in), Int(outBefore - strm.pointee.avail_out))
            }
            inPos += consumed
            produced += wrote
            if code == Z_STREAM_END { break }
            guard code == Z_OK || code == Z_BUF_ERROR else {
                output.removeLast(output.count - start)
                throw CompressionError(codec: .gzip, reason: .libraryFailure("deflate failed (\(code))"))
            }
        }
        output.removeLast(output.count - start - produced)
    }

    static func decompress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        guard let strm = CodecContexts.current.gzipInflater() else {
            throw CompressionError(codec: .gzip, reason: .libraryFailure("inflateInit2 failed"))
        }

        // ISIZE (the last 4 bytes of a single-member stream) hints at the output size.
        var claimed: Int? = nil
        if input.count >= 18 {
            claimed = Int(input.loadUnaligned(fromByteOffset: input.count - 4, as: UInt32.self).littleEndian)
        }
        try decodeStreaming(
            .gzip, input, appendingTo: &output, limit: limit,
            hint: initialOutputGuess(claimed: claimed, inputCount: input.count, limit: limit)
        ) { src, dst in
            let inPiece = Swift.min(src.count, maxPiece)
            let outPiece = Swift.min(dst.count, maxPiece)
            strm.pointee.next_in = UnsafeMutablePointer(mutating: src.baseAddress?.assumingMemoryBound(to: Bytef.self))
            strm.pointee.avail_in = uInt(inPiece)
            strm.pointee.next_out = dst.baseAddress?.assumingMemoryBound(to: Bytef.self)
            strm.pointee.avail_out = uInt(outPiece)
            let code = inflate(strm, Z_NO_FLUSH)
            let consumed = inPiece - Int(strm.pointee.avail_in)
            let produced = outPiece - Int(strm.pointee.avail_out)
            switch code {
            case Z_STREAM_END:
                // Another member may follow (concatenated gzip); it must start with the magic.
                let rest = src.count - consumed
                if rest > 0 && (rest < 2 || src[consumed] != 0x1f || src[consumed + 1] != 0x8b) {
                    return DecodeStep(consumed: consumed, produced: produced,
                                      status: .failed("trailing bytes after gzip member"))
                }
                inflateReset(strm)
                return DecodeStep(consumed: consumed, produced: produced, status: .frameDone)
            case Z_OK, Z_BUF_ERROR:
                return DecodeStep(consumed: consumed, produced: produced, status: .needsMore)
            case Z_NEED_DICT:
                return DecodeStep(consumed: consumed, produced: produced, status: .failed("needs a preset dictionary"))
            case Z_MEM_ERROR:
                return DecodeStep(consumed: consumed, produced: produced, status: .failed("out of memory"))
            default:
                let msg = strm.pointee.msg.map { String(cString: $0) } ?? "inflate error \(code)"
                return DecodeStep(consumed: consumed, produced: produced, status: .failed(msg))
            }
        }
    }
}
