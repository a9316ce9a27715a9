@testable import ApusBroker
import Testing

/// The produce path's reused batch memory.
@Suite struct BatchBuffersTests {
    @Test func sizeClassesHoldTheirCountWithAtMostAQuarterUnused() {
        var counts = Array(1...20_000) + [65_536, 65_537, 1 << 20, (1 << 20) + 1, 3_000_000, (64 << 20) - 1, 64 << 20]
        counts += (0..<2000).map { _ in Int.random(in: 1...(100 << 20)) }
        for count in counts {
            let size = BatchBuffers.classSize(count)
            #expect(size >= count, "\(count)")
            #expect(BatchBuffers.classSize(size) == size, "a class size is its own class: \(count) → \(size)")
            if count > BatchBuffers.smallestClass { #expect(size * 4 <= count * 5 + 4 * 4, "\(count) → \(size)") }
        }
    }

    @Test func givenBuffersAreReusedUpToTheLimit() {
        let pool = BatchBuffers(limitBytes: 5 << 19)  // room for two 1 MiB buffers
        let a = pool.take(1_000_000), b = pool.take(1_000_000), c = pool.take(1_000_000)
        #expect(a.count == 1_000_000 && pool.freeBytes == 0)
        for buffer in [a, b, c] { buffer.initializeMemory(as: UInt8.self, repeating: 7) }
        pool.give(a)
        pool.give(b)
        #expect(pool.freeBytes == 2 * BatchBuffers.classSize(1_000_000))
        pool.give(c)  // over the limit: freed
        #expect(pool.freeBytes == 2 * BatchBuffers.classSize(1_000_000))
        // Another count of the same class reuses one of the kept buffers, last given first.
        let again = pool.take(1_040_000)
        #expect(again.baseAddress == b.baseAddress && again.count == 1_040_000)
        #expect(pool.freeBytes == BatchBuffers.classSize(1_000_000))
        // A buffer another pool handed out is taken back like its own.
        let other = BatchBuffers(limitBytes: 1 << 30)
        other.give(again)
        #expect(other.take(1_000_000).baseAddress == again.baseAddress)
    }
}
