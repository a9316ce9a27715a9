import ApusLab
import KafkaWire
import Testing

@Suite("apus compare verdicts")
struct SweepCompareTests {
    /// `n` samples around `mean` with uniform noise of ±`noise`.
    static func samples(_ n: Int, mean: Double, noise: Double, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in mean + (Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1) * noise }
    }

    @Test func aKnownImprovementIsBetter() {
        let a = Self.samples(5, mean: 1_000_000, noise: 20_000, seed: 1)
        let b = Self.samples(5, mean: 1_200_000, noise: 20_000, seed: 2)
        let c = SweepCompare.bootstrap(a: a, b: b, higherIsBetter: true)
        #expect(c.verdict == .better)
        #expect(c.low > 100_000 && c.high < 300_000)
        #expect(abs(c.relative - 0.2) < 0.05)
        // The same numbers as a latency (lower is better) are worse.
        #expect(SweepCompare.bootstrap(a: a, b: b, higherIsBetter: false).verdict == .worse)
        // And swapped sides flip the verdict.
        #expect(SweepCompare.bootstrap(a: b, b: a, higherIsBetter: true).verdict == .worse)
    }

    @Test func noDifferenceIsNotSignificant() {
        // Same distribution, large noise: the interval should straddle zero.
        var falsePositives = 0
        for seed in UInt64(0)..<20 {
            let a = Self.samples(10, mean: 5.0, noise: 2.0, seed: seed * 2 + 100)
            let b = Self.samples(10, mean: 5.0, noise: 2.0, seed: seed * 2 + 101)
            let c = SweepCompare.bootstrap(a: a, b: b, higherIsBetter: false)
            // 95% intervals: with 20 pairs from one distribution, at most a few may exclude 0.
            if seed < 3 { #expect(c.low <= c.difference && c.difference <= c.high) }
            if c.verdict != .noSignificantDifference { falsePositives += 1 }
        }
        #expect(falsePositives <= 3, "\(falsePositives) of 20 same-distribution pairs called significant")
    }

    @Test func identicalSamplesHaveAZeroInterval() {
        let c = SweepCompare.bootstrap(a: [3, 3, 3], b: [3, 3, 3], higherIsBetter: true)
        #expect(c.difference == 0 && c.low == 0 && c.high == 0)
        #expect(c.verdict == .noSignificantDifference)
    }

    @Test func oneRunIsTooFewToTell() {
        #expect(SweepCompare.bootstrap(a: [1], b: [2, 3], higherIsBetter: true).verdict == .tooFewRuns)
    }

    @Test func deterministicForASeed() {
        let a = Self.samples(4, mean: 10, noise: 3, seed: 7), b = Self.samples(4, mean: 11, noise: 3, seed: 8)
        #expect(SweepCompare.bootstrap(a: a, b: b, higherIsBetter: true) == SweepCompare.bootstrap(a: a, b: b, higherIsBetter: true))
    }
}
