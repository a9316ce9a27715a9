import ApusBroker
import KafkaProtocol
import KafkaWire
import Testing

/// Produce, idempotence and fetch through the broker's handlers, with real logs and no socket.
@Suite struct ProduceTests {
    @Test(arguments: [1, 2]) func idempotentRetriesAreAcknowledgedOnceAndGapsRefused(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "idem")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "idem", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let pid = try #require(try h.call(InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: -1), version: 1)).producerId
        #expect(pid > 0)
        let first = makeBatch(values: ["a", "b", "c"], producerId: pid, epoch: 0, sequence: 0)
        let r1 = try #require(try h.call(produceRequest(topic: "idem", batch: first), version: 8))
        #expect(r1.responses[0].partitionResponses[0].errorCode == 0)
        #expect(r1.responses[0].partitionResponses[0].baseOffset == 0)
        // The same batch again (a retry after a lost response): same offsets, not appended.
        let retry = try #require(try h.call(produceRequest(topic: "idem", batch: first), version: 8))
        #expect(retry.responses[0].partitionResponses[0].errorCode == 0)
        #expect(retry.responses[0].partitionResponses[0].baseOffset == 0)
        // A gap in the sequence is refused.
        let gap = makeBatch(values: ["x"], producerId: pid, epoch: 0, sequence: 5)
        let refused = try #require(try h.call(produceRequest(topic: "idem", batch: gap), version: 8))
        #expect(refused.responses[0].partitionResponses[0].errorCode == ErrorCode.outOfOrderSequenceNumber.rawValue)
        // The next sequence is accepted right after the first batch.
        let next = makeBatch(values: ["d"], producerId: pid, epoch: 0, sequence: 3)
        let r2 = try #require(try h.call(produceRequest(topic: "idem", batch: next), version: 8))
        #expect(r2.responses[0].partitionResponses[0].baseOffset == 3)
        // A newer epoch starts again at sequence 0; the older one is then fenced.
        let bumped = makeBatch(values: ["e"], producerId: pid, epoch: 1, sequence: 0)
        #expect(try h.call(produceRequest(topic: "idem", batch: bumped), version: 8)!.responses[0].partitionResponses[0].baseOffset == 4)
        let stale = makeBatch(values: ["z"], producerId: pid, epoch: 0, sequence: 4)
        #expect(try h.call(produceRequest(topic: "idem", batch: stale), version: 8)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.invalidProducerEpoch.rawValue)
        let list = try #require(try h.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "idem", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5))
        #expect(list.topics[0].partitions[0].offset == 5, "a, b, c, d, e: the retry was not appended twice")
    }

    @Test(arguments: [1, 2]) func producerStateSurvivesARestart(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "idem")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "idem", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let batch = makeBatch(values: ["a", "b"], producerId: 77, epoch: 2, sequence: 0)
        _ = try h.call(produceRequest(topic: "idem", batch: batch), version: 8)
        try h.shutdown()
        let again = try BrokerHarness(path: h.path, shards: shards)
        again.via = h.via
        let retry = try #require(try again.call(produceRequest(topic: "idem", batch: batch), version: 8))
        #expect(retry.responses[0].partitionResponses[0].baseOffset == 0, "recognised as a duplicate after the restart")
        let gap = makeBatch(values: ["x"], producerId: 77, epoch: 2, sequence: 9)
        #expect(try again.call(produceRequest(topic: "idem", batch: gap), version: 8)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.outOfOrderSequenceNumber.rawValue)
    }

    @Test(arguments: [1, 2]) func badBatchesGetKafkaErrorCodes(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "t")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)]), version: 4)
        var corrupt = makeBatch(values: ["a"])
        corrupt[corrupt.count - 1] ^= 0xFF
        #expect(try h.call(produceRequest(topic: "t", batch: corrupt), version: 8)!.responses[0].partitionResponses[0].errorCode == ErrorCode.corruptMessage.rawValue)
        #expect(try h.call(produceRequest(topic: "nope", batch: makeBatch(values: ["a"])), version: 8)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(try h.call(produceRequest(topic: "t", partition: 3, batch: makeBatch(values: ["a"])), version: 8)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(try h.call(produceRequest(topic: "t", batch: makeBatch(values: ["a"]), acks: 2), version: 8)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.invalidRequiredAcks.rawValue)
        #expect(try h.call(produceRequest(topic: "t", batch: makeBatch(values: ["a"])), version: 2)!.responses[0].partitionResponses[0].errorCode
                == ErrorCode.unsupportedVersion.rawValue)
        var big = BrokerConfig()
        big.messageMaxBytes = 100
        let small = try BrokerHarness(config: big)
        defer { small.remove() }
        _ = try small.call(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)]), version: 4)
        #expect(try small.call(produceRequest(topic: "t", batch: makeBatch(values: [String(repeating: "x", count: 200)])), version: 8)!
            .responses[0].partitionResponses[0].errorCode == ErrorCode.messageTooLarge.rawValue)
        // acks=0: no response at all, but the records are appended.
        #expect(try h.call(produceRequest(topic: "t", batch: makeBatch(values: ["q"]), acks: 0), version: 8) == nil)
        let list = try #require(try h.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5))
        #expect(list.topics[0].partitions[0].offset == 1)
    }

    @Test func createTopicsValidates() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        let r = try #require(try h.call(CreateTopicsRequest(topics: [
            .init(name: "ok", numPartitions: 2, replicationFactor: 1),
            .init(name: "bad/name", numPartitions: 1, replicationFactor: 1),
            .init(name: "rf3", numPartitions: 1, replicationFactor: 3),
            .init(name: "zero", numPartitions: 0, replicationFactor: 1),
        ]), version: 4))
        #expect(r.topics.map(\.errorCode) == [0, ErrorCode.invalidTopic.rawValue, ErrorCode.invalidReplicationFactor.rawValue, ErrorCode.invalidPartitions.rawValue])
        let again = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "ok", numPartitions: 2, replicationFactor: 1)]), version: 4))
        #expect(again.topics[0].errorCode == ErrorCode.topicAlreadyExists.rawValue)
        let deleted = try #require(try h.call(DeleteTopicsRequest(topicNames: ["ok", "missing"]), version: 3))
        #expect(deleted.responses.map(\.errorCode) == [0, ErrorCode.unknownTopicOrPartition.rawValue])
    }

    @Test(arguments: [1, 2]) func fetchReturnsTheRecordsAndOutOfRange(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "f")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "f", numPartitions: 1, replicationFactor: 1)]), version: 4)
        _ = try h.call(produceRequest(topic: "f", batch: makeBatch(values: ["one", "two"])), version: 8)
        func fetch(_ offset: Int64) throws -> FetchResponse.PartitionData {
            let request = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                       topics: [.init(topic: "f", partitions: [.init(partition: 0, fetchOffset: offset, partitionMaxBytes: 1 << 20)])])
            return try #require(try h.call(request, version: 11)).responses[0].partitions[0]
        }
        let data = try fetch(0)
        #expect(data.errorCode == 0 && data.highWatermark == 2)
        let records = try #require(data.records)
        let batch = try records.withUnsafeBytes { try RecordBatch(RecordBatchView(validating: $0)) }
        #expect(batch.records.map { String(decoding: $0.value!, as: UTF8.self) } == ["one", "two"])
        #expect(try fetch(2).records?.isEmpty ?? true)
        #expect(try fetch(3).errorCode == ErrorCode.offsetOutOfRange.rawValue)
    }
}

extension ProduceTests {
    @Test func deletingATopicFailsAppendsStagedInTheSameTurn() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "gone", numPartitions: 1, replicationFactor: 1)]), version: 4)
        var w = WireWriter()
        RequestHeader(requestApiKey: 0, requestApiVersion: 8, correlationId: 99, clientId: "t").encode(into: &w, version: 1)
        produceRequest(topic: "gone", batch: makeBatch(values: ["a"]), acks: 1).encode(into: &w, version: 8)
        let outcome = w.bytes.withUnsafeBytes { h.broker.handle(frame: $0, connection: 7, nowMs: 1_700_000_000_000) }
        guard case .pending = outcome else { Issue.record("produce must wait for the commit"); return }
        // DeleteTopics in the same turn, before the commit.
        let deleted = try #require(try h.call(DeleteTopicsRequest(topicNames: ["gone"]), version: 3))
        #expect(deleted.responses[0].errorCode == 0)
        // The deletion's file work runs off the shard: the produce's answer may have come
        // during the turns the call ran.
        let completion = try #require((h.others + h.broker.endOfTurn(nowMs: 1_700_000_000_000).completions).first { $0.correlationId == 99 })
        let bytes = try BrokerHarness.bytes(of: completion.frame)
        let response = try bytes.withUnsafeBytes { raw in
            var r = WireReader(UnsafeRawBufferPointer(rebasing: raw[8...]))
            return try ProduceResponse.decode(from: &r, version: 8)
        }
        #expect(response.responses[0].partitionResponses[0].errorCode == ErrorCode.kafkaStorageError.rawValue,
                "an append the deletion dropped is never reported as written")
    }
}

extension ProduceTests {
    @Test(arguments: [1, 2]) func aRefusedSecondBatchLeavesNothingStaged(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "two")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "two", numPartitions: 1, replicationFactor: 1)]), version: 4)
        // Two batches for one partition; the second skips a sequence number.
        let records = makeBatch(values: ["a", "b"], producerId: 9, epoch: 0, sequence: 0)
            + makeBatch(values: ["c"], producerId: 9, epoch: 0, sequence: 5)
        let refused = try #require(try h.call(produceRequest(topic: "two", batch: records), version: 8))
        #expect(refused.responses[0].partitionResponses[0].errorCode == ErrorCode.outOfOrderSequenceNumber.rawValue)
        let list = try #require(try h.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "two", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5))
        #expect(list.topics[0].partitions[0].offset == 0, "the first batch was not appended either")
    }
}

/// The broker's own counts for the metrics endpoint: requests per API, and every error code in
/// the responses (Kafka's errorCounts), taken where the request is handled.
@Suite struct BrokerCountersTests {
    @Test(arguments: [1, 2]) func requestsAndErrorCodesAreCounted(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        h.viaOtherShard(than: "c")
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "c", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let ok = try #require(try h.call(produceRequest(topic: "c", batch: makeBatch(values: ["a", "b"])), version: 8))
        #expect(ok.responses[0].partitionResponses[0].errorCode == 0)
        let refused = try #require(try h.call(produceRequest(topic: "c", partition: 7, batch: makeBatch(values: ["x"])), version: 8))
        #expect(refused.responses[0].partitionResponses[0].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        _ = h.turn(nowMs: 1_700_000_000_000, collecting: h.via)
        let snapshots = h.brokers.map { $0.metricsSnapshot() }
        let requests = snapshots.map { $0.counters.requests[Int(ProduceRequest.apiKey)] }.reduce(0, +)
        #expect(requests == 2)
        #expect(snapshots.map { $0.counters.requests[Int(CreateTopicsRequest.apiKey)] }.reduce(0, +) == 1, "a forwarded request counts once")
        let unknown = Int32(ProduceRequest.apiKey) << 16 | Int32(ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(snapshots.map { $0.counters.errors[unknown] ?? 0 }.reduce(0, +) == 1)
        let partition = try #require(snapshots.flatMap(\.partitions).first { $0.topic == "c" })
        #expect(partition.logEndOffset == 2 && partition.traffic.recordsIn == 2 && partition.traffic.bytesIn > 0)
    }
}

/// DescribeConfigs: a topic's settings with their sources, a filter by key, an unknown topic.
@Suite struct DescribeConfigsTests {
    @Test func topicsAndTheBrokerDescribeTheirSettings() throws {
        let h = try BrokerHarness(shards: 1)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "cfg", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let response = try #require(try h.call(DescribeConfigsRequest(resources: [
            .init(resourceType: 2, resourceName: "cfg", configurationKeys: nil),
            .init(resourceType: 2, resourceName: "cfg", configurationKeys: ["retention.ms", "segment.bytes"]),
            .init(resourceType: 2, resourceName: "missing", configurationKeys: nil),
            .init(resourceType: 4, resourceName: "1", configurationKeys: ["num.partitions"]),
        ]), version: 4))
        #expect(response.results.map(\.errorCode) == [0, 0, ErrorCode.unknownTopicOrPartition.rawValue, 0])
        let all = Dictionary(uniqueKeysWithValues: response.results[0].configs.map { ($0.name, $0) })
        #expect(all["retention.ms"]?.value == "604800000" && all["retention.ms"]?.configSource == 5)
        #expect(all["cleanup.policy"]?.value == "delete")
        #expect(response.results[1].configs.map(\.name).sorted() == ["retention.ms", "segment.bytes"])
        #expect(response.results[3].configs.map(\.value) == ["1"] && response.results[3].configs.first?.readOnly == true)
    }
}
