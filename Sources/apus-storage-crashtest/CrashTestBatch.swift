import KafkaWire

/// Deterministic RecordBatch content for the crash test, derived from (round, sequence) only,
/// so that the test can re-derive every batch it finds in the log and compare it bit for bit.
///
/// The batch carries its identity in its header: `producerId` is the round, `baseSequence`
/// the sequence and `producerEpoch` the size class (0: mixed sizes up to ~1 MiB, 1: small
/// only), so a batch read back from the log says how to rebuild it.
public enum CrashTestBatch {
    public static let maxBatchBytes = (1 << 20) + 4096

    /// SplitMix64: tiny, deterministic, good enough for content and sizes.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 { SplitMix64.step(&state) }
        mutating func next(in range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.count))
        }
    }

    /// The batch for (round, sequence) with base offset 0, as a producer would send it.
    public static func make(round: Int, sequence: Int, smallOnly: Bool) -> [UInt8] {
        var rng = Generator(state: UInt64(truncatingIfNeeded: round) << 32 ^ UInt64(truncatingIfNeeded: sequence) ^ 0x5EED)
        let records: Int
        let valueSize: Int
        switch smallOnly ? 99 : rng.next() % 16 {
        case 0:  // large: 256 KiB – 1 MiB
            valueSize = rng.next(in: 1024...16384)
            records = rng.next(in: (256 << 10)...(1000 << 10)) / valueSize
        case 1, 2, 3:  // medium: 4 – 64 KiB
            valueSize = rng.next(in: 256...4096)
            records = max(1, rng.next(in: (4 << 10)...(64 << 10)) / valueSize)
        default:  // small: 1–20 records of 0–300 bytes
            valueSize = rng.next(in: 0...300)
            records = rng.next(in: 1...20)
        }
        var value = [UInt8](repeating: 0, count: valueSize + 8)
        value.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= raw.count {
                raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
        }
        var builder = RecordBatchBuilder(capacity: maxBatchBytes)
        builder.reset(baseTimestamp: 1_700_000_000_000 + Int64(round) * 1_000_000 + Int64(sequence),
                      producerId: Int64(round), producerEpoch: smallOnly ? 1 : 0,
                      baseSequence: Int32(truncatingIfNeeded: sequence))
        value.withUnsafeBytes { v in
            for r in 0..<records {
                // Each record's value is a different window of the random bytes.
                let start = r % 8
                let window = UnsafeRawBufferPointer(rebasing: v[start..<(start + valueSize)])
                var key = UInt32(truncatingIfNeeded: r)
                let ok = withUnsafeBytes(of: &key) { builder.append(key: $0, value: window, timestampDelta: Int64(r % 5)) }
                precondition(ok, "crash test batch overflows its builder")
            }
        }
        return Array(try! builder.finish())
    }

    /// The batch as stored at `baseOffset` (the log rewrites the base offset in place).
    public static func expected(round: Int, sequence: Int, smallOnly: Bool, baseOffset: Int64) -> [UInt8] {
        var bytes = make(round: round, sequence: sequence, smallOnly: smallOnly)
        bytes.withUnsafeMutableBytes { RecordBatchView.setBaseOffset(baseOffset, inBatchAt: $0.baseAddress!) }
        return bytes
    }

    /// The identity a stored batch carries in its header.
    public static func identity(of view: RecordBatchView) -> (round: Int, sequence: Int, smallOnly: Bool) {
        (Int(view.producerId), Int(view.baseSequence), view.producerEpoch == 1)
    }
}
