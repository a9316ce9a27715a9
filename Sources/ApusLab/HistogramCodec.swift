import CZlib
import Foundation
import Histogram

// HdrHistogram's standard serialisation (the "V2" encoding of Java's HdrHistogram, which Python's
// `hdrh`, HdrHistogram_c, Go and JS read and write) and its interval log (.hlog) format, for
// `Histogram<UInt64>` of hdrhistogram-swift, which has no serialisation of its own.
//
// V2 layout, big-endian:
//
//     cookie                            Int32   0x1c849313 (base 0x1c849303 | word-size nibble 0x10)
//     payload length in bytes           Int32
//     normalizingIndexOffset            Int32   0
//     numberOfSignificantValueDigits    Int32
//     lowestDiscernibleValue            Int64
//     highestTrackableValue             Int64
//     integerToDoubleValueConversionRatio Double 1.0
//     counts: counts[0 ... countsIndex(max)], each a ZigZag LEB128-64b9B varint; a run of n > 1
//             zero counts is written as the single value -n.
//
// Compressed: cookie 0x1c849314, Int32 length, then the V2 encoding deflated with a zlib wrapper.
// Readers mask the cookie's 0xf0 nibble, so 0x1c849303/0x1c849304 are accepted as well.

/// Why bytes are not a histogram. Decoding checks every length and bound and never traps.
public enum HistogramCodecError: Error, Equatable, Sendable {
    /// The input ends before a complete header, payload or varint.
    case truncated
    /// The first four bytes are not a V2 (or V2 compressed) encoding cookie.
    case unknownCookie(UInt32)
    /// A length field disagrees with the bytes present (including bytes left over).
    case lengthMismatch
    /// The header's digits, lowest discernible or highest trackable value describe no histogram
    /// `Histogram<UInt64>` can hold.
    case invalidParameters
    /// A count lies past the counts array the parameters imply.
    case countOutOfRange
    /// A count, the total count, or the sum of count × value (which the histogram's iterators
    /// accumulate in a UInt64) would overflow.
    case countTooLarge
    /// The zlib stream is corrupt.
    case corruptCompressedData
    /// The text is not base64.
    case invalidBase64
}

/// Encodes and decodes `Histogram<UInt64>` in HdrHistogram's V2 format, plain or compressed, so
/// that Java's HdrHistogram and Python's `hdrh` read what the lab writes, and the other way round.
public enum HistogramCodec {
    static let v2Cookie: UInt32 = 0x1c84_9313
    static let v2CompressedCookie: UInt32 = 0x1c84_9314
    static let v2CookieBase: UInt32 = 0x1c84_9303
    static let v2CompressedCookieBase: UInt32 = 0x1c84_9304
    static let headerSize = 40
    /// A ZigZag LEB128-64b9B varint takes at most 9 bytes.
    static let maxVarintSize = 9

    // MARK: Encoding

    /// The uncompressed V2 encoding, byte for byte what Java's `encodeIntoByteBuffer` writes.
    public static func encode(_ h: Histogram<UInt64>) -> [UInt8] {
        let layout = Layout(of: h)
        var out: [UInt8] = []
        out.reserveCapacity(headerSize + 256)
        out.appendBigEndian(v2Cookie)
        out.appendBigEndian(UInt32(0))  // payload length, patched below
        out.appendBigEndian(UInt32(0))  // normalizingIndexOffset
        out.appendBigEndian(UInt32(h.numberOfSignificantValueDigits.rawValue))
        out.appendBigEndian(h.lowestDiscernibleValue)
        out.appendBigEndian(h.highestTrackableValue)
        out.appendBigEndian((1.0).bitPattern)

        // counts[0 ... countsIndex(max)], as Java's fillBufferFromCountsArray: a lone zero is
        // written as 0, a run of n > 1 zeros as -n. (An empty histogram writes one 0.)
        let limit = layout.countsIndex(for: h.maxRecorded) + 1
        var zeros = 0
        for index in 0..<limit {
            let count = h.countForValue(layout.valueFromIndex(index))
            if count == 0 {
                zeros += 1
                continue
            }
            if zeros > 0 {
                appendZeroRun(zeros, to: &out)
                zeros = 0
            }
            precondition(count <= UInt64(Int64.max), "HdrHistogram counts are signed 64-bit")
            appendVarint(Int64(count), to: &out)
        }
        if zeros > 0 { appendZeroRun(zeros, to: &out) }

        let payloadLength = UInt32(out.count - headerSize)
        out.withUnsafeMutableBytes { $0.storeBytes(of: payloadLength.bigEndian, toByteOffset: 4, as: UInt32.self) }
        return out
    }

    /// The compressed V2 encoding: cookie, compressed length, then `encode(h)` deflated with a zlib
    /// wrapper (what Java's `encodeIntoCompressedByteBuffer` and Python's `encode()` produce).
    /// `level` is zlib's; Java's log writer uses 9, its default and Python's are 6.
    public static func encodeCompressed(_ h: Histogram<UInt64>, level: Int32 = Z_DEFAULT_COMPRESSION) -> [UInt8] {
        let plain = encode(h)
        var out = [UInt8](repeating: 0, count: 8 + Int(compressBound(uLong(plain.count))))
        var compressedLength = uLongf(out.count - 8)
        let rc = out.withUnsafeMutableBufferPointer { dst in
            plain.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress! + 8, &compressedLength, src.baseAddress!, uLong(src.count), level)
            }
        }
        // compressBound is enough by definition, and a bad level is a programming error.
        precondition(rc == Z_OK, "zlib compress2 failed (\(rc))")
        out.removeLast(out.count - 8 - Int(compressedLength))
        out.withUnsafeMutableBytes {
            $0.storeBytes(of: v2CompressedCookie.bigEndian, toByteOffset: 0, as: UInt32.self)
            $0.storeBytes(of: UInt32(compressedLength).bigEndian, toByteOffset: 4, as: UInt32.self)
        }
        return out
    }

    /// Base64 of the compressed encoding: an .hlog line's histogram, Python's `HdrHistogram.encode()`.
    public static func encodeBase64Compressed(_ h: Histogram<UInt64>, level: Int32 = Z_DEFAULT_COMPRESSION) -> String {
        Data(encodeCompressed(h, level: level)).base64EncodedString()
    }

    // MARK: Decoding

    /// Decodes the compressed or the uncompressed V2 encoding (told apart by the cookie).
    public static func decode(_ bytes: [UInt8]) throws(HistogramCodecError) -> Histogram<UInt64> {
        guard bytes.count >= 4 else { throw .truncated }
        let cookie = bytes.bigEndian(UInt32.self, at: 0)
        switch cookie & ~0xf0 {
        case v2CookieBase:
            let header = try Header(bytes)
            guard bytes.count - headerSize >= header.payloadLength else { throw .truncated }
            guard bytes.count - headerSize == header.payloadLength else { throw .lengthMismatch }
            return try decodeCounts(header, bytes[headerSize...])
        case v2CompressedCookieBase:
            guard bytes.count >= 8 else { throw .truncated }
            let length = Int(bytes.bigEndian(UInt32.self, at: 4))
            guard bytes.count - 8 >= length else { throw .truncated }
            guard bytes.count - 8 == length else { throw .lengthMismatch }
            let (header, plain) = try inflateV2(bytes[8...])
            return try decodeCounts(header, plain[headerSize...])
        default:
            throw .unknownCookie(cookie)
        }
    }

    /// Decodes base64 text of either encoding (surrounding whitespace is ignored).
    public static func decodeBase64(_ text: String) throws(HistogramCodecError) -> Histogram<UInt64> {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw .invalidBase64
        }
        return try decode([UInt8](data))
    }

    /// The fixed V2 header, validated against what `Histogram<UInt64>.init` accepts (it traps on
    /// anything else).
    struct Header {
        var payloadLength: Int
        var digits: SignificantDigits
        var lowestDiscernibleValue: UInt64
        var highestTrackableValue: UInt64
        var layout: Layout

        init(_ bytes: some RandomAccessCollection<UInt8>) throws(HistogramCodecError) {
            guard bytes.count >= HistogramCodec.headerSize else { throw .truncated }
            let cookie = bytes.bigEndian(UInt32.self, at: 0)
            guard cookie & ~0xf0 == HistogramCodec.v2CookieBase else { throw .unknownCookie(cookie) }
            payloadLength = Int(bytes.bigEndian(UInt32.self, at: 4))
            // normalizingIndexOffset (8) and the conversion ratio (32) are ignored, as Python's
            // hdrh does: HdrHistogramJS writes 1 for the offset without shifting anything.
            let rawDigits = bytes.bigEndian(UInt32.self, at: 12)
            lowestDiscernibleValue = bytes.bigEndian(UInt64.self, at: 16)
            highestTrackableValue = bytes.bigEndian(UInt64.self, at: 24)
            guard rawDigits <= 5, let digits = SignificantDigits(rawValue: Int8(rawDigits)),
                  // Java's fields are signed: nothing above Int64.max comes from a reference writer.
                  highestTrackableValue <= UInt64(Int64.max),
                  let layout = Layout(lowestDiscernibleValue: lowestDiscernibleValue,
                                      highestTrackableValue: highestTrackableValue, digits: digits)
            else { throw .invalidParameters }
            self.digits = digits
            self.layout = layout
            // Every varint covers at least one count (a trailing zero run may overshoot by one).
            guard payloadLength <= (layout.countsLength + 1) * HistogramCodec.maxVarintSize else {
                throw .lengthMismatch
            }
        }
    }

    /// Reads the counts varints into a new histogram.
    static func decodeCounts(_ header: Header, _ payload: ArraySlice<UInt8>) throws(HistogramCodecError) -> Histogram<UInt64> {
        let layout = header.layout
        var h = Histogram<UInt64>(
            lowestDiscernibleValue: header.lowestDiscernibleValue,
            highestTrackableValue: header.highestTrackableValue,
            numberOfSignificantValueDigits: header.digits)
        var position = payload.startIndex
        var index = 0
        var lastNonZero = -1
        var total: UInt64 = 0
        var totalValue: UInt64 = 0
        while position < payload.endIndex {
            let value = try readVarint(payload, &position)
            if value < 0 {
                // A run of zeros; Java lets it run past the end as long as no count follows.
                index = Int(min(UInt64(index) + value.magnitude, UInt64(layout.countsLength) + 1))
                continue
            }
            guard index < layout.countsLength else { throw .countOutOfRange }
            if value > 0 {
                let count = UInt64(value)
                let level = layout.valueFromIndex(index)
                // The library's iterators sum count × highest equivalent value without overflow checks.
                let (sum, o1) = total.addingReportingOverflow(count)
                let (weighted, o2) = count.multipliedReportingOverflow(by: h.highestEquivalentForValue(level))
                let (sumValue, o3) = totalValue.addingReportingOverflow(weighted)
                guard !o1, !o2, !o3, sum <= UInt64(Int64.max) else { throw .countTooLarge }
                total = sum
                totalValue = sumValue
                guard h.record(level, count: count) else { throw .countOutOfRange }
                lastNonZero = index
            }
            index += 1
        }
        if lastNonZero > 0 {
            // Counts were recorded at each bucket's lowest value; raise the tracked maximum to the top
            // bucket's highest equivalent value, as Java's decoder does (a count of 0 adds nothing).
            // Bucket 0 is left at 0, where the library keeps the maximum of recorded zeros.
            h.record(h.highestEquivalentForValue(layout.valueFromIndex(lastNonZero)), count: 0)
        }
        return h
    }

    /// One ZigZag LEB128-64b9B value: 7 bits a byte for eight bytes, all 8 bits of a ninth.
    static func readVarint(_ bytes: ArraySlice<UInt8>, _ position: inout Int) throws(HistogramCodecError) -> Int64 {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.endIndex else { throw .truncated }
            let byte = bytes[position]
            position += 1
            if shift == 56 {
                raw |= UInt64(byte) << 56
                break
            }
            raw |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    static func appendVarint(_ value: Int64, to out: inout [UInt8]) {
        var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        for _ in 0..<8 {
            if raw < 0x80 {
                out.append(UInt8(raw))
                return
            }
            out.append(UInt8(truncatingIfNeeded: raw) | 0x80)
            raw >>= 7
        }
        out.append(UInt8(truncatingIfNeeded: raw))
    }

    static func appendZeroRun(_ n: Int, to out: inout [UInt8]) {
        appendVarint(n == 1 ? 0 : -Int64(n), to: &out)
    }

    /// Inflates a compressed V2 payload: the header first, then exactly the payload it announces.
    /// Output is never larger than the parameters allow, whatever the stream claims.
    static func inflateV2(_ compressed: ArraySlice<UInt8>) throws(HistogramCodecError) -> (Header, [UInt8]) {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        guard inflateInit_(stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .corruptCompressedData
        }
        defer { inflateEnd(stream) }

        return try compressed.withUnsafeBufferPointer { input throws(HistogramCodecError) in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.pointee.avail_in = uInt(input.count)

            var plain = [UInt8](repeating: 0, count: headerSize)
            var ended = try inflateInto(stream, &plain, from: 0)
            let header = try Header(plain)
            if header.payloadLength > 0 {
                guard !ended else { throw .truncated }
                plain.append(contentsOf: repeatElement(0, count: header.payloadLength))
                ended = try inflateInto(stream, &plain, from: headerSize)
            }
            if !ended {
                // Output is full; the stream must end here, without a byte more.
                var extra: [UInt8] = [0]
                ended = try inflateInto(stream, &extra, from: 0, allowPartial: true)
                guard ended, stream.pointee.avail_out == 1 else { throw .lengthMismatch }
            }
            guard stream.pointee.avail_in == 0 else { throw .lengthMismatch }
            return (header, plain)
        }
    }

    /// Inflates into `buffer[start...]` until it is full or the stream ends; returns whether it
    /// ended. Unless `allowPartial`, a stream that ends before the buffer is full is truncated.
    static func inflateInto(
        _ stream: UnsafeMutablePointer<z_stream>, _ buffer: inout [UInt8], from start: Int, allowPartial: Bool = false
    ) throws(HistogramCodecError) -> Bool {
        let ended: Bool = try buffer.withUnsafeMutableBufferPointer { out throws(HistogramCodecError) in
            stream.pointee.next_out = out.baseAddress! + start
            stream.pointee.avail_out = uInt(out.count - start)
            while true {
                let before = (stream.pointee.avail_in, stream.pointee.avail_out)
                let rc = inflate(stream, Z_NO_FLUSH)
                if rc == Z_STREAM_END { return true }
                if stream.pointee.avail_out == 0 { return false }
                guard rc == Z_OK else {
                    throw rc == Z_BUF_ERROR ? .truncated : .corruptCompressedData
                }
                // Z_OK without progress cannot happen, but never spin.
                guard (stream.pointee.avail_in, stream.pointee.avail_out) != before else { throw .truncated }
            }
        }
        guard ended, !allowPartial else { return ended }
        guard stream.pointee.avail_out == 0 else { throw .truncated }
        return true
    }

    // MARK: Bucket math

    /// The counts-array geometry of a histogram, computed from its parameters exactly as
    /// hdrhistogram-swift (and Java's AbstractHistogram) do, since the library exposes no index.
    struct Layout: Sendable {
        /// floor(log2(lowestDiscernibleValue)), computed like the library (through Double).
        let unitMagnitude: Int
        let subBucketHalfCountMagnitude: Int
        /// Length of the counts array: (buckets + 1) × subBucketHalfCount.
        let countsLength: Int

        var subBucketHalfCount: Int { 1 << subBucketHalfCountMagnitude }
        var subBucketMask: UInt64 { UInt64((1 << (subBucketHalfCountMagnitude + 1)) - 1) << unitMagnitude }

        /// Nil where `Histogram.init` would fail a precondition.
        init?(lowestDiscernibleValue: UInt64, highestTrackableValue: UInt64, digits: SignificantDigits) {
            guard lowestDiscernibleValue >= 1, lowestDiscernibleValue <= UInt64.max / 2,
                  lowestDiscernibleValue * 2 <= highestTrackableValue else { return nil }
            unitMagnitude = Int(log2(Double(lowestDiscernibleValue)))
            // 2 × 10^digits values with single-unit resolution, rounded up to a power of two.
            let largestValueWithSingleUnitResolution: UInt64 = 2 * [1, 10, 100, 1_000, 10_000, 100_000][Int(digits.rawValue)]
            let subBucketCountMagnitude = 64 - (largestValueWithSingleUnitResolution - 1).leadingZeroBitCount
            subBucketHalfCountMagnitude = max(subBucketCountMagnitude, 1) - 1
            guard unitMagnitude + subBucketHalfCountMagnitude <= 61 else { return nil }

            var smallestUntrackableValue = UInt64(1 << (subBucketHalfCountMagnitude + 1)) << unitMagnitude
            var buckets = 1
            while smallestUntrackableValue <= highestTrackableValue {
                if smallestUntrackableValue > UInt64.max / 2 {
                    buckets += 1
                    break
                }
                smallestUntrackableValue <<= 1
                buckets += 1
            }
            countsLength = (buckets + 1) << subBucketHalfCountMagnitude
        }

        /// The layout of a live histogram (whose parameters are valid by construction).
        init(of h: Histogram<UInt64>) {
            guard let layout = Layout(lowestDiscernibleValue: h.lowestDiscernibleValue,
                                      highestTrackableValue: h.highestTrackableValue,
                                      digits: h.numberOfSignificantValueDigits)
            else { preconditionFailure("a constructed Histogram has valid parameters") }
            self = layout
        }

        /// Index into the counts array of the bucket holding `value`.
        func countsIndex(for value: UInt64) -> Int {
            let leadingZeroCountBase = 64 - unitMagnitude - subBucketHalfCountMagnitude - 1
            let bucketIndex = leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
            let subBucketIndex = Int(value >> (bucketIndex + unitMagnitude))
            return ((bucketIndex + 1) << subBucketHalfCountMagnitude) + subBucketIndex - subBucketHalfCount
        }

        /// The lowest value counted at `index`.
        func valueFromIndex(_ index: Int) -> UInt64 {
            var bucketIndex = (index >> subBucketHalfCountMagnitude) - 1
            var subBucketIndex = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
            if bucketIndex < 0 {
                subBucketIndex -= subBucketHalfCount
                bucketIndex = 0
            }
            return UInt64(subBucketIndex) << (bucketIndex + unitMagnitude)
        }
    }
}

/// The text of an HdrHistogram interval log (.hlog), as Java's `HistogramLogWriter` writes it and
/// Java's `HistogramLogReader` and Python's `hdrh.log.HistogramLogReader` read it:
///
///     #[Histogram log format version 1.3]
///     #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
///     #[BaseTime: 1700000000.000 (seconds since epoch)]
///     "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
///     Tag=produce,0.000,1.000,2.769,HISTFAAAA...
///
/// Interval start times are seconds after BaseTime (readers add it back). The max column is the
/// histogram's max divided by `maxValueUnitRatio` (readers ignore it; 1e6 makes nanoseconds
/// milliseconds, as Java's default does).
public struct HistogramLogWriter: Sendable {
    public let startTimeEpochSeconds: Double
    public let baseTimeEpochSeconds: Double
    public var maxValueUnitRatio: Double
    public private(set) var text: String

    /// Starts a log with the version, StartTime, BaseTime (default: the start time) and legend lines.
    public init(startTimeEpochSeconds: Double, baseTimeEpochSeconds: Double? = nil, maxValueUnitRatio: Double = 1e6) {
        precondition(startTimeEpochSeconds.isFinite && startTimeEpochSeconds >= 0, "StartTime must be a non-negative time")
        let base = baseTimeEpochSeconds ?? startTimeEpochSeconds
        precondition(base.isFinite && base >= 0, "BaseTime must be a non-negative time")
        self.startTimeEpochSeconds = startTimeEpochSeconds
        self.baseTimeEpochSeconds = base
        self.maxValueUnitRatio = maxValueUnitRatio
        let date = DateFormatter()
        date.locale = Locale(identifier: "en_US_POSIX")
        date.timeZone = TimeZone(identifier: "UTC")
        date.dateFormat = "EEE MMM dd HH:mm:ss 'UTC' yyyy"  // Java's Date.toString, in UTC
        text = "#[Histogram log format version 1.3]\n"
        text += "#[StartTime: \(Self.seconds(startTimeEpochSeconds)) (seconds since epoch), "
            + "\(date.string(from: Date(timeIntervalSince1970: startTimeEpochSeconds)))]\n"
        text += "#[BaseTime: \(Self.seconds(base)) (seconds since epoch)]\n"
        text += "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
    }

    /// Appends one interval: `start` seconds after BaseTime, `length` seconds long. A tag may not
    /// contain commas or whitespace (readers split the line on them).
    public mutating func append(start: Double, length: Double, histogram: Histogram<UInt64>, tag: String? = nil) {
        // Readers match the numbers with [\d.]*: no sign, no exponent.
        precondition(start.isFinite && start >= 0 && length.isFinite && length >= 0,
                     "interval start and length must be non-negative seconds")
        if let tag {
            precondition(!tag.isEmpty && !tag.contains { $0 == "," || $0.isWhitespace },
                         "an .hlog tag may not be empty or contain commas or whitespace")
            text += "Tag=\(tag),"
        }
        let max = Double(histogram.max) / maxValueUnitRatio
        // Java's log writer compresses at zlib's best level.
        text += "\(Self.seconds(start)),\(Self.seconds(length)),\(Self.seconds(max)),"
            + "\(HistogramCodec.encodeBase64Compressed(histogram, level: Z_BEST_COMPRESSION))\n"
    }

    /// Appends a comment line (`#` and the text).
    public mutating func appendComment(_ comment: String) {
        precondition(!comment.contains { $0.isNewline }, "a comment is one line")
        text += "#\(comment)\n"
    }

    /// "%.3f", as Java formats every number in the log.
    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension RandomAccessCollection<UInt8> {
    /// A big-endian integer at `offset` from the start; the caller checks the bounds.
    fileprivate func bigEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        var i = index(startIndex, offsetBy: offset)
        for _ in 0..<MemoryLayout<T>.size {
            value = value << 8 | T(self[i])
            formIndex(after: &i)
        }
        return value
    }
}
