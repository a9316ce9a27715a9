import Testing
import KafkaWire

/// Deterministic random bytes (SplitMix64) so failures reproduce.
private struct CRCTestRandom {
    var state: UInt64
    mutating func next() -> UInt64 { SplitMix64.step(&state) }
    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}

@Suite struct CRC32CTests {
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0x00, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ([], 0),
    ]

    /// Implementations usable on this machine (software is always there).
    static var available: [String] {
        CRC32C.implementationNames.filter { name in
            [UInt8]().withUnsafeBytes { CRC32C.update(0, $0, using: name) } != nil
        }
    }

    @Test func knownVectors() {
        for (bytes, expected) in Self.vectors {
            #expect(CRC32C.checksum(bytes) == expected)
            bytes.withUnsafeBytes { raw in
                #expect(CRC32C.checksum(raw) == expected)
                for name in Self.available {
                    #expect(CRC32C.update(0, raw, using: name) == expected, "\(name)")
                }
            }
        }
    }

    @Test func implementationIsKnownAndSoftwareExists() {
        #expect(CRC32C.implementationNames.contains(CRC32C.implementation))
        #expect(Self.available.contains("software"))
        #expect([UInt8]().withUnsafeBytes { CRC32C.update(0, $0, using: "nonsense") } == nil)
    }

    @Test func chaining() {
        var rng = CRCTestRandom(state: 7)
        let data = rng.bytes(100_000)
        let whole = CRC32C.checksum(data)
        data.withUnsafeBytes { raw in
            for split in [0, 1, 7, 8, 9, 767, 768, 24_575, 24_576, 50_000, 99_999, 100_000] {
                let a = UnsafeRawBufferPointer(rebasing: raw[..<split])
                let b = UnsafeRawBufferPointer(rebasing: raw[split...])
                #expect(CRC32C.update(CRC32C.checksum(a), b) == whole, "split \(split)")
                for name in Self.available {
                    let first = CRC32C.update(0, a, using: name)!
                    #expect(CRC32C.update(first, b, using: name) == whole, "\(name) split \(split)")
                }
            }
            // Many small pieces.
            var crc: UInt32 = 0
            var pos = 0
            while pos < raw.count {
                let n = min(Int(rng.next() % 300), raw.count - pos)
                crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: raw[pos..<(pos + n)]))
                pos += n
            }
            #expect(crc == whole)
        }
    }

    /// Every length up to 1,000, the lengths around the three-stream block sizes, and large
    /// buffers, each at eight alignments: all implementations give the same value.
    @Test func implementationsAgree() {
        var rng = CRCTestRandom(state: 42)
        let data = rng.bytes((1 << 20) + 4096 + 16)
        var lengths = Array(0...1000)
        for block in [768, 3 * 8192] {
            for k in 1...3 { for d in -9...9 { lengths.append(k * block + d) } }
        }
        lengths += [65_536, 100_003, 1 << 20, (1 << 20) + 4095]
        let names = Self.available
        data.withUnsafeBytes { raw in
            for length in lengths {
                for offset in 0..<8 {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])
                    let seed = UInt32(truncatingIfNeeded: length &* 2_654_435_761)
                    let results = names.map { CRC32C.update(seed, slice, using: $0)! }
                    #expect(Set(results).count == 1, "length \(length) offset \(offset): \(zip(names, results).map { "\($0)=\($1)" })")
                    #expect(CRC32C.update(seed, slice) == results[0])
                }
            }
        }
    }

    @Test func forcingAnImplementation() {
        defer { CRC32C.forceImplementation(nil) }
        for name in Self.available {
            #expect(CRC32C.forceImplementation(name))
            #expect(CRC32C.implementation == name)
            #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        }
        #expect(!CRC32C.forceImplementation("nonsense"))
        #expect(CRC32C.forceImplementation(nil))
    }
}
