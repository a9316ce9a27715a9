import KafkaProtocol
import KafkaWire
import Testing

/// Every generated message at every valid version: encode → decode → equal, re-encode → same bytes.
@Suite struct RoundTripTests {
    static let messageTypes: [any ArbitraryMessage.Type] = GeneratedMessages.all.map { $0 as! any ArbitraryMessage.Type }

    @Test(arguments: messageTypes.map { "\($0.messageName)" })
    func roundTrip(_ name: String) throws {
        let type = try #require(Self.messageTypes.first { "\($0.messageName)" == name })
        try roundTrip(type)
    }

    func roundTrip<M: ArbitraryMessage>(_ type: M.Type) throws {
        var g = Gen(seed: UInt64(M.validVersions.upperBound) &* 7919 &+ UInt64("\(M.messageName)".utf8.count))
        for version in M.validVersions {
            for _ in 0..<25 {
                let value = M.arbitrary(version: version, &g)
                let bytes = value.encoded(version: version)
                let decoded = try M.decode(bytes, version: version)
                #expect(decoded == value, "\(M.messageName) v\(version)")
                #expect(decoded.encoded(version: version) == bytes, "\(M.messageName) v\(version) re-encoding")
            }
        }
    }

    @Test func fieldsAbsentInAVersionKeepTheSpecDefault() throws {
        var response = FetchResponse.PartitionData()
        response.lastStableOffset = 42  // v4+
        response.preferredReadReplica = 7  // v11+
        var topic = FetchResponse.FetchableTopicResponse(topic: "t", partitions: [response])
        topic.topicId = KafkaUUID(high: 1, low: 2)  // v13+ only
        let message = FetchResponse(responses: [topic])
        let v4 = try FetchResponse.decode(message.encoded(version: 4), version: 4)
        #expect(v4.responses[0].partitions[0].lastStableOffset == 42)
        #expect(v4.responses[0].partitions[0].preferredReadReplica == -1)
        #expect(v4.responses[0].topicId == .zero)
        #expect(v4.responses[0].topic == "t")
    }

    @Test func taggedFieldsAreWrittenOnlyWhenSet() throws {
        // ApiVersionsResponse v3 has four tagged fields, all at their defaults here: the body
        // must end with an empty tagged-field section (older librdkafka rejects non-empty ones).
        let plain = ApiVersionsResponse(errorCode: 0, apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 3)])
        let bytes = plain.encoded(version: 3)
        #expect(bytes == [0, 0, 2, 0, 18, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0])
        var withEpoch = plain
        withEpoch.finalizedFeaturesEpoch = 5
        let tagged = withEpoch.encoded(version: 3)
        #expect(tagged.suffix(11) == [1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 5])
        #expect(try ApiVersionsResponse.decode(tagged, version: 3) == withEpoch)
    }

    @Test func unknownTaggedFieldsAreSkipped() throws {
        // HeartbeatRequest v4 body with an unknown tag 9 carrying three bytes.
        var w = WireWriter()
        HeartbeatRequest(groupId: "g", generationId: 3, memberId: "m").encode(into: &w, version: 4)
        w.bytes.removeLast()  // the empty tagged-field section
        w.writeUnsignedVarint(1)
        w.writeUnsignedVarint(9)
        w.writeUnsignedVarint(3)
        w.bytes += [1, 2, 3]
        let decoded = try HeartbeatRequest.decode(w.bytes, version: 4)
        #expect(decoded == HeartbeatRequest(groupId: "g", generationId: 3, memberId: "m"))
    }

    @Test func requestHeaderClientIdIsNeverCompact() throws {
        let header = RequestHeader(requestApiKey: 18, requestApiVersion: 3, correlationId: 1, clientId: "kcat")
        let bytes = header.encoded(version: 2)
        // int16 key, int16 version, int32 correlation id, int16-length client id, empty tags.
        #expect(bytes == [0, 18, 0, 3, 0, 0, 0, 1, 0, 4] + Array("kcat".utf8) + [0])
        #expect(ApiVersionsRequest.requestHeaderVersion(3) == 2)
        #expect(ApiVersionsRequest.responseHeaderVersion(3) == 0)
        #expect(ProduceRequest.responseHeaderVersion(9) == 1)
        #expect(ProduceRequest.responseHeaderVersion(8) == 0)
    }
}
