/// The compression of a RecordBatch's records (attributes bits 0-2).
public enum CompressionCodec: UInt8, Sendable, CaseIterable {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4
}

/// Why compressing or decompressing a batch failed.
public struct CompressionError: Error, Equatable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// Attributes bits 0-2 hold a value with no codec (5, 6 or 7).
        case unsupportedCodec(UInt8)
        /// The compressed bytes are truncated, corrupt or not in the codec's format.
        case corruptInput(String)
        /// Decompressing would produce more than `limit` bytes (zip-bomb guard).
        case outputLimitExceeded(limit: Int)
        /// The C library failed for another reason (out of memory, bad level, ...).
        case libraryFailure(String)
    }

    /// The codec involved; nil only for `.unsupportedCodec`.
    public var codec: CompressionCodec?
    public var reason: Reason

    public init(codec: CompressionCodec?, reason: Reason) {
        self.codec = codec
        self.reason = reason
    }

    public var description: String {
        let name = codec.map { "\($0)" } ?? "compression"
        switch reason {
        case .unsupportedCodec(let value): return "unsupported compression codec \(value)"
        case .corruptInput(let detail): return "\(name): corrupt input: \(detail)"
        case .outputLimitExceeded(let limit): return "\(name): decompressed size exceeds \(limit) bytes"
        case .libraryFailure(let detail): return "\(name): \(detail)"
        }
    }

    @usableFromInline
    static func corrupt(_ codec: CompressionCodec, _ detail: String) -> CompressionError {
        CompressionError(codec: codec, reason: .corruptInput(detail))
    }
}

extension CompressionCodec {
    /// The codec named by RecordBatch attributes bits 0-2; 5, 6 and 7 are unsupported.
    @inlinable
    public init(attributes: Int16) throws(CompressionError) {
        let value = UInt8(truncatingIfNeeded: attributes & 0x07)
        guard let codec = CompressionCodec(rawValue: value) else {
            throw CompressionError(codec: nil, reason: .unsupportedCodec(value))
        }
        self = codec
    }

    /// Appends the compressed form of `input` to `output`, in the framing Kafka's Java client
    /// writes. `level` is the codec's own level (nil: Kafka's default); snappy ignores it.
    public func compress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], level: Int? = nil
    ) throws(CompressionError) {
        switch self {
        case .none: output.append(contentsOf: input)
        case .gzip: try Gzip.compress(input, appendingTo: &output, level: level)
        case .snappy: try Snappy.compress(input, appendingTo: &output)
        case .lz4: try LZ4.compress(input, appendingTo: &output, level: level)
        case .zstd: try Zstd.compress(input, appendingTo: &output, level: level)
        }
    }

    /// Appends the decompressed form of `input` to `output`; fails if it would exceed `limit`
    /// bytes (zip-bomb guard). On failure `output` is left as it was.
    public func decompress(
        _ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8], limit: Int
    ) throws(CompressionError) {
        let limit = Swift.max(limit, 0)
        if self == .none {
            guard input.count <= limit else {
                throw CompressionError(codec: self, reason: .outputLimitExceeded(limit: limit))
            }
            output.append(contentsOf: input)
            return
        }
        // No codec encodes anything (not even nothing) in zero bytes.
        guard input.count > 0 else { throw .corrupt(self, "empty input") }
        switch self {
        case .none: break
        case .gzip: try Gzip.decompress(input, appendingTo: &output, limit: limit)
        case .snappy: try Snappy.decompress(input, appendingTo: &output, limit: limit)
        case .lz4: try LZ4.decompress(input, appendingTo: &output, limit: limit)
        case .zstd: try Zstd.decompress(input, appendingTo: &output, limit: limit)
        }
    }

    /// Byte-array conveniences of `compress` and `decompress`.
    public func compress(_ input: [UInt8], level: Int? = nil) throws(CompressionError) -> [UInt8] {
        var out: [UInt8] = []
        let result = input.withUnsafeBytes { raw in
            Result { () throws(CompressionError) in try compress(raw, appendingTo: &out, level: level) }
        }
        try result.get()
        return out
    }

    public func decompress(_ input: [UInt8], limit: Int) throws(CompressionError) -> [UInt8] {
        var out: [UInt8] = []
        let result = input.withUnsafeBytes { raw in
            Result { () throws(CompressionError) in try decompress(raw, appendingTo: &out, limit: limit) }
        }
        try result.get()
        return out
    }
}

// MARK: - Output buffer helpers shared by the codecs

/// 64 KiB of zeros to grow output arrays from.
let zeroChunk = [UInt8](repeating: 0, count: 64 * 1024)

/// Grows `output` by `count` zeroed bytes for a C codec to write into. Copies from a zero
/// chunk: ~45 GB/s in both debug and release (`repeatElement` crawls at 4 MB/s unoptimised).
func growOutput(_ output: inout [UInt8], by count: Int) {
    let needed = output.count + count
    if needed > output.capacity {  // grow geometrically: exact reservations would go quadratic
        output.reserveCapacity(Swift.max(needed, 2 * output.capacity))
    }
    zeroChunk.withUnsafeBytes { zeros in
        var left = count
        while left > 0 {
            let n = Swift.min(left, zeros.count)
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: zeros[..<n]))
            left -= n
        }
    }
}

/// What one call of a streaming decoder did.
struct DecodeStep {
    enum Status { case needsMore, frameDone, failed(String) }
    var consumed: Int
    var produced: Int
    var status: Status
}

/// Runs a streaming decoder over `input`, growing `output` (by doubling, never beyond `limit`+1
/// bytes) until all input is consumed at a frame boundary. `hint` sizes the first allocation.
/// `step` decodes from the remaining input into the free output space; it is called again for
/// concatenated frames. On error `output` is restored to its original length.
@inline(__always)
func decodeStreaming(
    _ codec: CompressionCodec,
    _ input: UnsafeRawBufferPointer,
    appendingTo output: inout [UInt8],
    limit: Int,
    hint: Int,
    step: (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) -> DecodeStep
) throws(CompressionError) {
    let start = output.count
    let cap = limit < Int.max ? limit + 1 : Int.max  // one byte beyond the limit reveals excess
    var inPos = 0
    var produced = 0
    var stalls = 0
    growOutput(&output, by: Swift.min(Swift.max(hint, 64), cap))
    var failure: CompressionError? = nil
    while true {
        if start + produced == output.count {  // no free space left
            let room = cap - produced
            if room <= 0 {
                failure = CompressionError(codec: codec, reason: .outputLimitExceeded(limit: limit))
                break
            }
            growOutput(&output, by: Swift.min(Swift.max(produced, 64 * 1024), room))
        }
        let freeBefore = output.count - start - produced
        let r = output.withUnsafeMutableBytes { buf in
            step(
                UnsafeRawBufferPointer(rebasing: input[inPos...]),
                UnsafeMutableRawBufferPointer(rebasing: buf[(start + produced)...]))
        }
        inPos += r.consumed
        produced += r.produced
        if produced > limit {
            failure = CompressionError(codec: codec, reason: .outputLimitExceeded(limit: limit))
            break
        }
        switch r.status {
        case .failed(let detail):
            failure = .corrupt(codec, detail)
        case .frameDone:
            if inPos == input.count {
                output.removeLast(output.count - start - produced)
                return
            }
            stalls = 0
            continue
        case .needsMore:
            if r.produced == freeBefore { stalls = 0; continue }  // output full: grow, go on
            if inPos == input.count {
                failure = .corrupt(codec, "truncated input")
            } else if r.consumed == 0 && r.produced == 0 {
                stalls += 1
                if stalls < 3 { continue }
                failure = .corrupt(codec, "decoder made no progress")
            } else {
                stalls = 0
                continue
            }
        }
        break
    }
    output.removeLast(output.count - start)
    throw failure!
}

/// A first output allocation: the codec's claimed size if any, but never more than the limit
/// allows nor a wild multiple of the input (a hostile header must not cost a huge memset).
@inline(__always)
func initialOutputGuess(claimed: Int?, inputCount: Int, limit: Int) -> Int {
    let sane = inputCount > Int.max / 64 ? Int.max : Swift.max(inputCount * 64, 1 << 20)
    let guess = claimed ?? inputCount &* 4
    return Swift.max(64, Swift.min(guess, sane, limit < Int.max ? limit + 1 : Int.max))
}
