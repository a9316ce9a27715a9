import Foundation
import KafkaWire

/// Payload bytes of each record value.
public enum PayloadSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Incompressible random bytes.
    case random
    /// Text-like bytes that compress by about this ratio (≥ 1).
    case text(ratio: Double)
    /// Windows of a file's contents.
    case file(path: String)

    public static func parse(_ s: String) -> PayloadSpec? {
        if s == "random" { return .random }
        if s.hasPrefix("text:"), let r = Double(s.dropFirst(5)), r >= 1, r <= 1000 { return .text(ratio: r) }
        if s.hasPrefix("file:"), s.count > 5 { return .file(path: String(s.dropFirst(5))) }
        return nil
    }

    public var description: String {
        switch self {
        case .random: "random"
        case .text(let r): "text:\(RecordSource.format(r))"
        case .file(let p): "file:\(p)"
        }
    }
}

/// Record keys: none, uniformly drawn from `n` keys, or Zipf-distributed over `n` keys with exponent `s`.
public enum KeySpec: Sendable, Equatable, Codable, CustomStringConvertible {
    case none
    case uniform(count: Int)
    case zipf(count: Int, exponent: Double)

    public static func parse(_ s: String) -> KeySpec? {
        if s == "none" { return KeySpec.none }
        if s.hasPrefix("uniform:"), let n = Int(s.dropFirst(8)), n >= 1, n <= 10_000_000 { return .uniform(count: n) }
        if s.hasPrefix("zipf:") {
            let parts = s.dropFirst(5).split(separator: ",")
            if parts.count == 2, let n = Int(parts[0]), n >= 1, n <= 10_000_000, let e = Double(parts[1]), e > 0, e <= 10 {
                return .zipf(count: n, exponent: e)
            }
        }
        return nil
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .uniform(let n): "uniform:\(n)"
        case .zipf(let n, let s): "zipf:\(n),\(RecordSource.format(s))"
        }
    }
}

/// The bytes a load generator sends: a pool of value bytes that record i reads a window of, and
/// a table of keys. Built once before the run and only read afterwards, so producer threads
/// share it; nothing is allocated per record.
public final class RecordSource: @unchecked Sendable {
    public let recordSize: Int
    public let payload: PayloadSpec
    public let keys: KeySpec
    private let pool: UnsafeMutableRawBufferPointer
    private let keyBytes: UnsafeMutableRawBufferPointer
    /// Start of key i in `keyBytes` (count + 1 entries).
    private let keyOffsets: UnsafeMutableBufferPointer<Int32>
    /// For zipf keys: key indexes drawn from the distribution, read at random positions.
    private let keySamples: UnsafeMutableBufferPointer<Int32>

    static let samplesMask = (1 << 16) - 1

    public init(recordSize: Int, payload: PayloadSpec = .random, keys: KeySpec = .none) throws {
        precondition(recordSize >= 0)
        self.recordSize = recordSize
        self.payload = payload
        self.keys = keys
        var rng = SplitMix64(seed: 0x5eed)
        let poolSize = max(recordSize * 2, 64 << 10)
        pool = .allocate(byteCount: poolSize + 8, alignment: 8)
        switch payload {
        case .random:
            for i in stride(from: 0, to: poolSize, by: 8) { pool.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self) }
        case .text(let ratio):
            // Each 64-byte block: about 64/ratio random letters, then a phrase that repeats
            // across blocks — LZ-style codecs keep the letters and match the phrase.
            let phrase = Array("the quick brown fox jumps over the lazy dog while the broker appends batches ".utf8)
            let fresh = max(1, min(64, Int((64 / ratio).rounded())))
            for block in stride(from: 0, to: poolSize, by: 64) {
                for j in 0..<min(64, poolSize - block) {
                    let byte = j < fresh ? UInt8(97 + rng.next() % 26) : phrase[(block / 64 * 7 + j) % phrase.count]
                    pool.storeBytes(of: byte, toByteOffset: block + j, as: UInt8.self)
                }
            }
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else {
                pool.deallocate()
                throw RecordSourceError("payload file:\(path): cannot read it, or it is empty")
            }
            let bytes = [UInt8](data)
            for i in 0..<poolSize { pool.storeBytes(of: bytes[i % bytes.count], toByteOffset: i, as: UInt8.self) }
        }
        let count: Int
        switch keys {
        case .none: count = 0
        case .uniform(let n), .zipf(let n, _): count = n
        }
        keyOffsets = .allocate(capacity: count + 1)
        var text: [UInt8] = []
        text.reserveCapacity(count * 12)
        keyOffsets[0] = 0
        for i in 0..<count {
            text.append(contentsOf: "key-\(i)".utf8)
            keyOffsets[i + 1] = Int32(text.count)
        }
        let keyBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(text.count, 1), alignment: 8)
        text.withUnsafeBytes { keyBytes.copyMemory(from: $0) }
        self.keyBytes = keyBytes
        if case .zipf(let n, let s) = keys {
            // Inverse CDF over P(k) ∝ 1 / (k + 1)^s, sampled once into a table.
            var cdf = [Double](repeating: 0, count: n)
            var sum = 0.0
            for k in 0..<n {
                sum += 1 / pow(Double(k + 1), s)
                cdf[k] = sum
            }
            keySamples = .allocate(capacity: Self.samplesMask + 1)
            for i in 0...Self.samplesMask {
                let u = Double(rng.next() >> 11) / Double(1 << 53) * sum
                var lo = 0, hi = n - 1
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
                }
                keySamples[i] = Int32(lo)
            }
        } else {
            keySamples = .allocate(capacity: 1)
        }
    }

    deinit {
        pool.deallocate()
        keyBytes.deallocate()
        keyOffsets.deallocate()
        keySamples.deallocate()
    }

    /// Windows a value may start at.
    public var windows: Int { pool.count - 8 - recordSize }

    /// The value of the record whose window starts at `offset` (advance with `next(offset:)`).
    @inline(__always)
    public func value(at offset: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pool.baseAddress! + offset, count: recordSize)
    }

    @inline(__always)
    public func next(offset: Int) -> Int {
        let o = offset + 61
        return o >= windows ? o - windows : o
    }

    /// A key for the next record, nil without keys; `rng` is the calling thread's own.
    @inline(__always)
    public func key(_ rng: inout SplitMix64) -> UnsafeRawBufferPointer? {
        let index: Int
        switch keys {
        case .none: return nil
        case .uniform(let n): index = Int(rng.next() % UInt64(n))
        case .zipf: index = Int(keySamples[Int(rng.next()) & Self.samplesMask])
        }
        let start = Int(keyOffsets[index])
        return UnsafeRawBufferPointer(start: keyBytes.baseAddress! + start, count: Int(keyOffsets[index + 1]) - start)
    }

    static func format(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
}

public struct RecordSourceError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
