/// A Kafka UUID (topic id): 16 bytes, written as two big-endian 64-bit halves.
public struct KafkaUUID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public static let zero = KafkaUUID(high: 0, low: 0)

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }

    /// A random id (version-4 style), never the zero or the reserved "one" id.
    public static func random() -> KafkaUUID {
        var rng = SystemRandomNumberGenerator()
        while true {
            let id = KafkaUUID(high: (rng.next() & ~0xF000) | 0x4000, low: (rng.next() & ~(0xC << 60)) | (0x8 << 60))
            if id != .zero && id != KafkaUUID(high: 0, low: 1) { return id }
        }
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// The id as Kafka prints it: URL-safe base64 of the 16 bytes, without padding (22 chars).
    public var base64URL: String {
        var bytes: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let chunk = Array(bytes[i..<min(i + 3, bytes.count)])
            let n = (UInt32(chunk[0]) << 16) | (UInt32(chunk.count > 1 ? chunk[1] : 0) << 8) | UInt32(chunk.count > 2 ? chunk[2] : 0)
            for k in 0...chunk.count { out.append(Self.alphabet[Int((n >> UInt32(18 - 6 * k)) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses ``base64URL``; nil for anything else.
    public init?(base64URL text: String) {
        let chars = Array(text.utf8)
        guard chars.count == 22 else { return nil }
        var bits: [UInt8] = []
        var accumulator: UInt32 = 0
        var count = 0
        for c in chars {
            guard let value = Self.alphabet.firstIndex(of: c) else { return nil }
            accumulator = (accumulator << 6) | UInt32(value)
            count += 6
            if count >= 8 {
                count -= 8
                bits.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(count)))
            }
        }
        guard bits.count == 16 else { return nil }
        self.init(high: bits[0..<8].reduce(0) { ($0 << 8) | UInt64($1) }, low: bits[8..<16].reduce(0) { ($0 << 8) | UInt64($1) })
    }
}
