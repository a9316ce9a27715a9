import ApusBroker
import KafkaProtocol
import ApusTestSupport
import KafkaWire
import Testing

/// The admin APIs and per-topic configuration through the broker's handlers, with real logs
/// and no socket (the real clients' view is in Tests/clients/test_admin_apis.py).
@Suite struct AdminApiTests {
    /// ApiVersions advertises exactly what is served: every advertised key has a handler that
    /// decodes and answers a request of every advertised version (an empty request of each).
    @Test func everyAdvertisedVersionIsDecodedAndAnswered() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        let advertised = try #require(try h.call(ApiVersionsRequest(), version: 3)).apiKeys
        #expect(advertised.count >= 23)
        for api in advertised {
            let key = try #require(ApiKey(rawValue: api.apiKey), "advertised key \(api.apiKey) has no generated type")
            #expect(key.requestType.validVersions.contains(api.minVersion) && key.requestType.validVersions.contains(api.maxVersion),
                    "\(key.name) advertises \(api.minVersion)...\(api.maxVersion) beyond its spec")
            for version in api.minVersion...api.maxVersion {
                do {
                    _ = try sendEmpty(key.requestType, version: version, to: h)
                } catch {
                    Issue.record("\(key.name) v\(version): \(error)")
                }
            }
        }
    }

    /// Fetch in its flexible versions (v12+) and by topic id (v13+), decoded by the generated
    /// decoder: the same records as v11; an unknown id gets UNKNOWN_TOPIC_ID.
    @Test(arguments: [1, 2]) func fetchFlexibleVersionsAndTopicIds(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "f", numPartitions: 2, replicationFactor: 1)]), version: 4)
        for p in Int32(0)..<2 { _ = try h.call(produceRequest(topic: "f", partition: p, batch: makeBatch(values: ["one-\(p)", "two-\(p)"])), version: 9) }
        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "f")]), version: 12))
        let id = metadata.topics[0].topicId
        #expect(id != .zero)
        for version: Int16 in [11, 12, 13, 16, 17] {
            let topic = FetchRequest.FetchTopic(topic: version >= 13 ? "" : "f", topicId: version >= 13 ? id : .zero,
                                                partitions: (0..<2).map { .init(partition: $0, fetchOffset: 0, partitionMaxBytes: 1 << 20) })
            var topics = [topic]
            if version >= 13 { topics.append(.init(topicId: KafkaUUID(high: 1, low: 2), partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])) }
            let request = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0, topics: topics)
            let response = try #require(try h.call(request, version: version))
            let data = response.responses[0]
            if version >= 13 { #expect(data.topicId == id) } else { #expect(data.topic == "f") }
            for (p, partition) in data.partitions.enumerated() {
                #expect(partition.errorCode == 0 && partition.highWatermark == 2, "v\(version)")
                let batch = try partition.records!.withUnsafeBytes { try RecordBatch(RecordBatchView(validating: $0)) }
                #expect(batch.records.map { String(decoding: $0.value!, as: UTF8.self) } == ["one-\(p)", "two-\(p)"], "v\(version)")
            }
            if version >= 13 { #expect(response.responses[1].partitions[0].errorCode == ErrorCode.unknownTopicId.rawValue) }
        }
    }

    /// A consumer-protocol member's commits and fetches of offsets (OffsetCommit v9, OffsetFetch
    /// v9) are checked against its member epoch.
    @Test func consumerProtocolOffsetsCheckTheMemberEpoch() throws {
        var config = BrokerConfig()
        config.consumerGroups.sessionTimeoutMs = 600_000  // the harness's clock jumps a minute while a commit is written
        let h = try BrokerHarness(config: config)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "c", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let joined = try #require(try h.call(ConsumerGroupHeartbeatRequest(groupId: "cg", memberId: "", memberEpoch: 0, rebalanceTimeoutMs: 30_000,
                                                                           subscribedTopicNames: ["c"]), version: 0))
        let member = try #require(joined.memberId)
        #expect(joined.errorCode == 0 && joined.memberEpoch > 0 && joined.assignment?.topicPartitions.first?.partitions == [0])
        func commit(epoch: Int32) throws -> Int16 {
            let request = OffsetCommitRequest(groupId: "cg", generationIdOrMemberEpoch: epoch, memberId: member,
                                              topics: [.init(name: "c", partitions: [.init(partitionIndex: 0, committedOffset: 7)])])
            return try #require(try h.call(request, version: 9)).topics[0].partitions[0].errorCode
        }
        #expect(try commit(epoch: joined.memberEpoch + 3) == ErrorCode.staleMemberEpoch.rawValue)
        #expect(try commit(epoch: joined.memberEpoch) == 0)
        func fetch(epoch: Int32) throws -> OffsetFetchResponse.OffsetFetchResponseGroup {
            let request = OffsetFetchRequest(groups: [.init(groupId: "cg", memberId: member, memberEpoch: epoch, topics: nil)])
            return try #require(try h.call(request, version: 9)).groups[0]
        }
        let stale = try fetch(epoch: joined.memberEpoch + 3)
        #expect(stale.errorCode == ErrorCode.staleMemberEpoch.rawValue, "\(stale) epoch \(joined.memberEpoch)")
        #expect(try fetch(epoch: joined.memberEpoch).topics.first?.partitions.first?.committedOffset == 7)
    }

    /// OffsetForLeaderEpoch, DescribeLogDirs and DescribeProducers read each partition where it lives.
    @Test(arguments: [1, 2]) func partitionStateAPIs(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "s", numPartitions: 2, replicationFactor: 1)]), version: 4)
        _ = try h.call(produceRequest(topic: "s", partition: 1, batch: makeBatch(values: ["a", "b", "c"], producerId: 42, epoch: 3, sequence: 0)), version: 8)

        let epochs = try #require(try h.call(OffsetForLeaderEpochRequest(topics: [
            .init(topic: "s", partitions: [.init(partition: 1, currentLeaderEpoch: 0, leaderEpoch: 0), .init(partition: 1, currentLeaderEpoch: -1, leaderEpoch: 7),
                                           .init(partition: 0, currentLeaderEpoch: 4, leaderEpoch: 0), .init(partition: 9, leaderEpoch: 0)]),
        ]), version: 4))
        let results = epochs.topics[0].partitions
        #expect(results[0].errorCode == 0 && results[0].leaderEpoch == 0 && results[0].endOffset == 3)
        #expect(results[1].errorCode == 0 && results[1].leaderEpoch == -1 && results[1].endOffset == -1, "an epoch this broker never had")
        #expect(results[2].errorCode == ErrorCode.unknownLeaderEpoch.rawValue)
        #expect(results[3].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)

        let dirs = try #require(try h.call(DescribeLogDirsRequest(topics: nil), version: 4))
        #expect(dirs.results.count == 1 && dirs.results[0].logDir == h.path)
        let sizes = dirs.results[0].topics.first { $0.name == "s" }?.partitions.map(\.partitionSize)
        #expect(sizes?.count == 2 && sizes![0] == 0 && sizes![1] > 0)

        let producers = try #require(try h.call(DescribeProducersRequest(topics: [.init(name: "s", partitionIndexes: [1, 0, 5])]), version: 0))
        let partitions = producers.topics[0].partitions
        #expect(partitions[0].activeProducers.map { [$0.producerId, Int64($0.producerEpoch), Int64($0.lastSequence)] } == [[42, 3, 2]])
        #expect(partitions[1].errorCode == 0 && partitions[1].activeProducers.isEmpty)
        #expect(partitions[2].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
    }

    /// One record of `size` bytes, timestamped 1_700_000_000_000.
    private func batch(of size: Int) -> [UInt8] {
        var builder = RecordBatchBuilder(capacity: size + 4096)
        builder.reset(baseTimestamp: 1_700_000_000_000)
        _ = [UInt8](repeating: 0x72, count: size).withUnsafeBytes { builder.append(key: nil, value: $0) }
        return Array(try! builder.finish())
    }

    /// The legacy tier (KIP-896, as Kafka 4.0): Produce v0–2 and Fetch v0–3 are not advertised,
    /// and are answered with UNSUPPORTED_VERSION in every partition; a version past the newest
    /// closes the connection.
    @Test func legacyVersionsAreRefusedInTheResponse() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        let advertised = try #require(try h.call(ApiVersionsRequest(), version: 3)).apiKeys
        #expect(advertised.first { $0.apiKey == ProduceRequest.apiKey }?.minVersion == 3)
        #expect(advertised.first { $0.apiKey == FetchRequest.apiKey }?.minVersion == 4)
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "old", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let produced = try #require(try h.call(produceRequest(topic: "old", batch: makeBatch(values: ["a"])), version: 2))
        #expect(produced.responses[0].partitionResponses[0].errorCode == ErrorCode.unsupportedVersion.rawValue)
        for version: Int16 in 0...3 {
            let request = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                       topics: [.init(topic: "old", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])])
            let fetched = try #require(try h.call(request, version: version))
            #expect(fetched.responses[0].partitions[0].errorCode == ErrorCode.unsupportedVersion.rawValue, "Fetch v\(version)")
        }
        #expect(throws: HarnessError.self) { try h.send(MetadataRequest(), version: 99) }
    }

    private func sendEmpty<R: KafkaRequest>(_: R.Type, version: Int16, to h: BrokerHarness) throws -> ResponseFrame? {
        try h.send(R(), version: version)
    }

    /// A Fetch's max_bytes holds across partitions and shards: only the first partition with
    /// data may go beyond it (one whole batch); later ones are cut where the budget ends.
    @Test func fetchResponseLimitHoldsAcrossShards() throws {
        let h = try BrokerHarness(shards: 2)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "big", numPartitions: 4, replicationFactor: 1)]), version: 4)
        for p in 0..<Int32(4) {
            for _ in 0..<3 {
                let r = try #require(try h.call(produceRequest(topic: "big", partition: p, batch: batch(of: 300_000), acks: 1), version: 8))
                #expect(r.responses[0].partitionResponses[0].errorCode == 0)
            }
        }
        for maxBytes: Int32 in [1_000_000, 500_000, 100_000] {
            let request = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: maxBytes, isolationLevel: 0,
                                       topics: [.init(topic: "big", partitions: (0..<4).map { .init(partition: $0, fetchOffset: 0, partitionMaxBytes: 1_000_000) })])
            let response = try #require(try h.call(request, version: 11))
            let sizes = response.responses[0].partitions.map { $0.records?.count ?? 0 }
            let firstWithData = try #require(sizes.first { $0 > 0 })
            #expect(sizes.reduce(0, +) <= max(Int(maxBytes), firstWithData), "max_bytes \(maxBytes): \(sizes)")
            #expect(firstWithData >= 300_000, "the first partition with data gets a whole batch")
        }
    }

    /// A per-topic retention.ms set by IncrementalAlterConfigs deletes that topic's old segments
    /// and no other's, and is still set after a restart.
    @Test(arguments: [1, 2]) func perTopicRetentionTakesEffectAndPersists(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        defer { h.remove() }
        let small = [CreateTopicsRequest.CreatableTopicConfig(name: "segment.bytes", value: "1048576")]
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "short", numPartitions: 1, replicationFactor: 1, configs: small),
                                                   .init(name: "long", numPartitions: 1, replicationFactor: 1, configs: small)]), version: 4)
        for topic in ["short", "long"] {
            for _ in 0..<16 { _ = try h.call(produceRequest(topic: topic, batch: batch(of: 200_000), acks: 1), version: 8) }
        }
        let set = IncrementalAlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "short", configs: [
            .init(name: "retention.ms", configOperation: 0, value: "3600000"),
        ])])
        let altered = try #require(try h.call(set, version: 1))
        #expect(altered.responses.map(\.errorCode) == [0])
        // A day after the records' timestamps, maintenance applies each topic's retention.
        let later: Int64 = 1_700_000_000_000 + 86_400_000
        for _ in 0..<3 { _ = h.turn(nowMs: later, collecting: 0) }
        for broker in h.brokers { broker.maintenance(nowMs: later) }
        func earliest(_ harness: BrokerHarness, _ topic: String) throws -> Int64 {
            let r = try harness.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: topic, partitions: [.init(partitionIndex: 0, timestamp: -2)])]), version: 5)
            return try #require(r).topics[0].partitions[0].offset
        }
        #expect(try earliest(h, "short") > 0, "the altered topic's old segments are deleted")
        #expect(try earliest(h, "long") == 0, "the other topic keeps its 7 days")
        try h.shutdown()
        let again = try BrokerHarness(path: h.path, shards: shards)
        let described = try #require(try again.call(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "short", configurationKeys: ["retention.ms", "segment.bytes", "retention.bytes"])], includeSynonyms: true), version: 4))
        let configs = Dictionary(uniqueKeysWithValues: described.results[0].configs.map { ($0.name, $0) })
        #expect(configs["retention.ms"]?.value == "3600000" && configs["retention.ms"]?.configSource == 1)
        #expect(configs["segment.bytes"]?.value == "1048576" && configs["segment.bytes"]?.configSource == 1)
        #expect(configs["retention.bytes"]?.configSource == 5)
        #expect(configs["retention.ms"]?.synonyms.map(\.source) == [1, 5], "dynamic topic, then the default")
        #expect(try earliest(again, "short") > 0 && earliest(again, "long") == 0)
    }

    /// Refusals with Kafka's codes: unknown keys, compaction, values out of range, unknown topics,
    /// the static broker configuration; validate_only changes nothing.
    @Test func alterConfigsRefusesWithKafkasCodes() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)]), version: 4)
        func alter(_ resource: (Int8, String), _ name: String, _ value: String?, op: Int8 = 0, validateOnly: Bool = false) throws -> Int16 {
            let request = IncrementalAlterConfigsRequest(resources: [.init(resourceType: resource.0, resourceName: resource.1, configs: [
                .init(name: name, configOperation: op, value: value),
            ])], validateOnly: validateOnly)
            return try #require(try h.call(request, version: 1)).responses[0].errorCode
        }
        #expect(try alter((2, "t"), "no.such.key", "1") == ErrorCode.invalidConfig.rawValue)
        #expect(try alter((2, "t"), "cleanup.policy", "compact") == ErrorCode.invalidConfig.rawValue)
        #expect(try alter((2, "t"), "cleanup.policy", "delete", op: 2) == 0, "APPEND of an item already there")
        #expect(try alter((2, "t"), "retention.ms", "soon") == ErrorCode.invalidConfig.rawValue)
        #expect(try alter((2, "t"), "segment.bytes", "1000") == ErrorCode.invalidConfig.rawValue)
        #expect(try alter((2, "t"), "retention.ms", "5", op: 2) == ErrorCode.invalidConfig.rawValue, "APPEND to a number")
        #expect(try alter((2, "missing"), "retention.ms", "5") == ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(try alter((4, ""), "log.retention.ms", "5") == ErrorCode.invalidRequest.rawValue)
        #expect(try alter((2, "t"), "retention.ms", "5", validateOnly: true) == 0)
        let legacy = AlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t", configs: [.init(name: "segment.ms", value: "60000")])])
        #expect(try #require(try h.call(legacy, version: 2)).responses[0].errorCode == 0)
        let described = try #require(try h.call(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t", configurationKeys: nil)]), version: 4))
        let dynamic = described.results[0].configs.filter { $0.configSource == 1 }.map(\.name)
        #expect(dynamic == ["cleanup.policy", "segment.ms"] || dynamic == ["segment.ms"],
                "validate_only stored nothing; AlterConfigs replaced the whole set: \(dynamic)")
    }
}
