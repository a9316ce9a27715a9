import KafkaProtocol
import KafkaWire
import Testing

/// Bounded fuzzing of every generated decoder: random bytes and mutations of valid encodings
/// must decode or throw WireError — never trap, never hang (typed throws rule out any other
/// error; a trap would kill the test run).
@Suite struct ProtocolFuzzTests {
    @Test(arguments: RoundTripTests.messageTypes.map { "\($0.messageName)" })
    func decodersSurviveHostileInput(_ name: String) throws {
        let type = try #require(RoundTripTests.messageTypes.first { "\($0.messageName)" == name })
        fuzz(type)
    }

    func fuzz<M: ArbitraryMessage>(_ type: M.Type) {
        var g = Gen(seed: 0xA905 &+ UInt64("\(M.messageName)".utf8.count))
        var outcomes = (decoded: 0, rejected: 0)
        func attempt(_ bytes: [UInt8], _ version: Int16) {
            do {
                let value = try M.decode(bytes, version: version)
                // Whatever decoded must encode again without trouble.
                _ = value.encoded(version: version)
                outcomes.decoded += 1
            } catch {
                #expect(error.message == "\(M.messageName)" && error.version == version && !error.field.isEmpty)
                outcomes.rejected += 1
            }
        }
        for version in M.validVersions {
            for _ in 0..<60 {
                // Pure noise, biased to small sizes.
                attempt((0..<g.below(64)).map { _ in UInt8(truncatingIfNeeded: g.next()) }, version)
                // A valid encoding, then mutated.
                let valid = M.arbitrary(version: version, &g).encoded(version: version)
                var m = valid
                switch g.below(5) {
                case 0 where !m.isEmpty:
                    m.removeLast(1 + g.below(m.count))  // truncate
                case 1 where !m.isEmpty:
                    for _ in 0...g.below(4) { m[g.below(m.count)] ^= UInt8(1 << g.below(8)) }  // bit flips
                case 2 where !m.isEmpty:
                    m[g.below(m.count)] = [0xFF, 0x7F, 0x80, 0x00][g.below(4)]  // boundary bytes in lengths
                case 3:
                    m.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F], at: g.below(m.count + 1))  // huge length / varint
                default:
                    m += (0..<g.below(8)).map { _ in UInt8(truncatingIfNeeded: g.next()) }  // trailing junk
                }
                attempt(m, version)
            }
            attempt([], version)
        }
        // Also the versions a client might send that are not valid: a typed unsupportedVersion error.
        do {
            _ = try M.decode([0, 0, 0, 0], version: M.validVersions.upperBound + 1)
            Issue.record("\(M.messageName) decoded an invalid version")
        } catch {
            #expect(error.reason == .unsupportedVersion)
        }
        #expect(outcomes.rejected > 0)
        #expect(outcomes.decoded + outcomes.rejected == M.validVersions.count * 121)
    }

    @Test func errorsNameMessageVersionAndField() throws {
        // MetadataRequest v9: compact array of topics claiming 1000 entries in 3 bytes.
        let bytes: [UInt8] = [0xE9, 0x07, 0x00]
        #expect(throws: WireError(message: "MetadataRequest", version: 9, field: "MetadataRequest.Topics",
                                  reason: .lengthTooLarge(length: 1000, remaining: 1))) {
            try MetadataRequest.decode(bytes, version: 9)
        }
        // ProduceRequest v3 with a negative (non-null) string length for the transactional id.
        #expect(throws: WireError(message: "ProduceRequest", version: 3, field: "ProduceRequest.TransactionalId",
                                  reason: .negativeLength(-2))) {
            try ProduceRequest.decode([0xFF, 0xFE], version: 3)
        }
        // Truncated int32.
        #expect(throws: WireError(message: "HeartbeatRequest", version: 0, field: "HeartbeatRequest.GenerationId",
                                  reason: .truncated(needed: 4, remaining: 2))) {
            try HeartbeatRequest.decode([0, 1, 0x67, 0, 0], version: 0)
        }
    }
}
