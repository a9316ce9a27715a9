import KafkaProtocol
import KafkaWire

/// A generated message that tests can fill with random values for a given version.
protocol ArbitraryMessage: KafkaMessage {
    static func arbitrary(version: Int16, _ g: inout Gen) -> Self
}

/// Deterministic random values for round-trip and fuzz tests (SplitMix64).
struct Gen {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 { SplitMix64.step(&state) }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// Mostly small values, sometimes the type's extremes.
    mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        switch below(8) {
        case 0: return T.min
        case 1: return T.max
        case 2: return 0
        case 3: return T(truncatingIfNeeded: Int64(-1))
        default: return T(truncatingIfNeeded: next())
        }
    }

    mutating func int8() -> Int8 { integer() }
    mutating func int16() -> Int16 { integer() }
    mutating func int32() -> Int32 { integer() }
    mutating func int64() -> Int64 { integer() }
    mutating func uint16() -> UInt16 { integer() }
    mutating func uint32() -> UInt32 { integer() }
    mutating func bool() -> Bool { next() & 1 == 1 }
    mutating func float64() -> Double { Double(Int32(truncatingIfNeeded: next())) / 7 }
    mutating func uuid() -> KafkaUUID { KafkaUUID(high: next(), low: next()) }

    mutating func string() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz-_.0123456789ÄéΩ🦅")
        return String((0..<below(12)).map { _ in alphabet[below(alphabet.count)] })
    }

    mutating func bytes() -> [UInt8] { (0..<below(40)).map { _ in UInt8(truncatingIfNeeded: next()) } }

    mutating func array<T>(_ make: (inout Gen) -> T) -> [T] {
        var out: [T] = []
        for _ in 0..<below(4) { out.append(make(&self)) }
        return out
    }

    /// nil one time in four when the field may be null in this version.
    mutating func nullable<T>(_ allowed: Bool, _ make: (inout Gen) -> T) -> T? {
        if allowed && below(4) == 0 { return nil }
        return make(&self)
    }
}
