import CSnappy

/// Snappy as Kafka carries it: the Java client writes snappy-java's "xerial" framing, other
/// clients (librdkafka) may send one raw snappy block; decompression accepts both.
enum Snappy {
    /// snappy-java's stream header: magic "\x82SNAPPY\0", then version 1 and compatible version 1
    /// as big-endian int32s.
    static let header: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]
    static let headerSize = 16
    static let magicSize = 8
    /// snappy-java's default block size.
    static let blockSize = 32 * 1024

    static func compress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]
    ) throws(CompressionError) {
        let full = input.count / blockSize
        let tail = input.count % blockSize
        var bound = headerSize + full * (4 + snappy_max_compressed_length(blockSize))
        if tail > 0 { bound += 4 + snappy_max_compressed_length(tail) }

        let start = output.count
        output.reserveCapacity(start + bound)
        output.append(contentsOf: header)
        growOutput(&output, by: bound - headerSize)
        let written = output.withUnsafeMutableBytes { buf -> Int in
            var outPos = start + headerSize
            var inPos = 0
            while inPos < input.count {
                let n = Swift.min(blockSize, input.count - inPos)
                var len = buf.count - outPos - 4
                let status = snappy_compress(
                    input.baseAddress!.advanced(by: inPos).assumingMemoryBound(to: CChar.self), n,
                    buf.baseAddress!.advanced(by: outPos + 4).assumingMemoryBound(to: CChar.self), &len)
                guard status == SNAPPY_OK else { return -1 }
                buf.storeBytes(of: UInt32(len).bigEndian, toByteOffset: outPos, as: UInt32.self)
                outPos += 4 + len
                inPos += n
            }
            return outPos - start
        }
        guard written >= 0 else {
            output.removeLast(output.count - start)
            throw CompressionError(codec: .snappy, reason: .libraryFailure("snappy_compress failed"))
        }
        output.removeLast(output.count - start - written)
    }

    static func decompress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        let start = output.count
        do throws(CompressionError) {
            if hasMagic(input, at: 0) {
                try decompressXerial(input, appendingTo: &output, limit: limit)
            } else {
                var total = 0
                try decompressBlock(input, appendingTo: &output, limit: limit, total: &total)
            }
        } catch {
            output.removeLast(output.count - start)
            throw error
        }
    }

    @inline(__always)
    static func hasMagic(_ input: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        guard input.count - offset >= magicSize else { return false }
        for i in 0..<magicSize where input[offset + i] != header[i] { return false }
        return true
    }

    /// Decodes xerial framing: header, then [int32 BE length][raw snappy block]...; a header
    /// may appear again where a length is expected (concatenated streams).
    static func decompressXerial(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        var pos = 0
        var total = 0
        while pos < input.count {
            if hasMagic(input, at: pos) {
                guard input.count - pos >= headerSize else { throw .corrupt(.snappy, "truncated stream header") }
                pos += headerSize
                continue
            }
            guard input.count - pos >= 4 else { throw .corrupt(.snappy, "truncated block length") }
            let length = Int(Int32(bigEndian: input.loadUnaligned(fromByteOffset: pos, as: Int32.self)))
            pos += 4
            guard length > 0, length <= input.count - pos else {
                throw .corrupt(.snappy, "bad block length \(length)")
            }
            try decompressBlock(
                UnsafeRawBufferPointer(rebasing: input[pos..<(pos + length)]),
                appendingTo: &output, limit: limit, total: &total)
            pos += length
        }
    }

    /// Decodes one raw snappy block, adding its size to `total` (checked against `limit`).
    static func decompressBlock(
        _ block: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int, total: inout Int
    ) throws(CompressionError) {
        let src = block.baseAddress!.assumingMemoryBound(to: CChar.self)
        var size = 0
        guard snappy_uncompressed_length(src, block.count, &size) == SNAPPY_OK else {
            throw .corrupt(.snappy, "bad block header")
        }
        guard size <= limit - total else {
            throw CompressionError(codec: .snappy, reason: .outputLimitExceeded(limit: limit))
        }
        // The densest snappy element (a 3-byte copy of 64 bytes) expands ~21x: a larger declared
        // size is a lie, and refusing it spares a hostile header a large memset.
        guard size / 32 <= block.count else { throw .corrupt(.snappy, "impossible block size \(size)") }
        let at = output.count
        growOutput(&output, by: size)
        if size == 0 {
            // Still validate: the rest of the block must be empty.
            guard snappy_validate_compressed_buffer(src, block.count) == SNAPPY_OK else {
                throw .corrupt(.snappy, "bad block")
            }
            return
        }
        let ok = output.withUnsafeMutableBytes { buf -> Bool in
            var outLen = size
            let status = snappy_uncompress(
                src, block.count, buf.baseAddress!.advanced(by: at).assumingMemoryBound(to: CChar.self), &outLen)
            return status == SNAPPY_OK && outLen == size
        }
        guard ok else { throw .corrupt(.snappy, "bad block") }
        total += size
    }
}
