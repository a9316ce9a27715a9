import ApusBroker
import Foundation
import KafkaProtocol
import KafkaWire
import Testing

/// Several shards' brokers over one mesh, driven turn by turn: partitions are owned by one
/// shard each, and requests arriving at another shard reach them through the inboxes.
@Suite struct ShardTests {
    static let now: Int64 = 1_700_000_000_000

    func fetchRequest(_ topic: String, partitions: Int32, offsets: [Int64], minBytes: Int32 = 0, maxWaitMs: Int32 = 0) -> FetchRequest {
        FetchRequest(replicaId: -1, maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: 50 << 20, isolationLevel: 0, topics: [
            .init(topic: topic, partitions: (0..<partitions).map { .init(partition: $0, fetchOffset: offsets[Int($0)], partitionMaxBytes: 1 << 20) }),
        ])
    }

    func values(_ data: FetchResponse.PartitionData) throws -> [String] {
        guard let records = data.records, !records.isEmpty else { return [] }
        return try records.withUnsafeBytes { raw in
            var batches = RecordBatchSequence(UnsafeRawBufferPointer(raw))
            var out: [String] = []
            while let view = try batches.next() {
                out += try RecordBatch(view).records.map { String(decoding: $0.value!, as: UTF8.self) }
            }
            return out
        }
    }

    @Test(arguments: [2, 3]) func onePartitionSetSpreadsOverShardsAndEveryShardServesAll(shards: Int) throws {
        let h = try BrokerHarness(shards: shards)
        defer { h.remove() }
        let created = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "spread", numPartitions: 6, replicationFactor: 1)]), version: 4, via: shards - 1))
        #expect(created.topics[0].errorCode == 0, "CreateTopics sent to a shard other than 0 is run by shard 0")
        let owners = Set((0..<6).map { h.broker.mesh.owner(topic: "spread", partition: $0) })
        #expect(owners.count == shards, "six partitions over \(shards) shards use every shard")
        // Each shard receives one request carrying a batch for every partition.
        for via in 0..<shards {
            let request = ProduceRequest(acks: -1, timeoutMs: 1000, topicData: [.init(name: "spread", partitionData: (0..<6).map { p in
                .init(index: p, records: makeBatch(values: ["\(via)-\(p)-a", "\(via)-\(p)-b"]))
            })])
            let response = try #require(try h.call(request, version: 8, via: via))
            #expect(response.responses[0].partitionResponses.map(\.index) == Array(0..<6), "results in request order")
            #expect(response.responses[0].partitionResponses.allSatisfy { $0.errorCode == 0 && $0.baseOffset == Int64(2 * via) })
        }
        // The parts forwarded to their owners waited in inboxes, and each wait was timed.
        #expect(h.brokers.reduce(0) { $0 + $1.jobDelay.count } > 0)
        // Any shard reads every partition back, in order.
        for via in 0..<shards {
            let fetched = try #require(try h.call(fetchRequest("spread", partitions: 6, offsets: Array(repeating: 0, count: 6)), version: 11, via: via))
            let partitions = fetched.responses[0].partitions
            #expect(partitions.map(\.partitionIndex) == Array(0..<6))
            for data in partitions {
                #expect(data.highWatermark == Int64(2 * shards))
                #expect(try values(data) == (0..<shards).flatMap { ["\($0)-\(data.partitionIndex)-a", "\($0)-\(data.partitionIndex)-b"] })
            }
            let listed = try #require(try h.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "spread", partitions: (0..<7).map {
                .init(partitionIndex: $0, timestamp: -1)
            })]), version: 5, via: via))
            #expect(listed.topics[0].partitions.prefix(6).allSatisfy { $0.errorCode == 0 && $0.offset == Int64(2 * shards) })
            #expect(listed.topics[0].partitions[6].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        }
    }

    @Test func aLongPollIsWokenByAnAppendOnAnotherShard() throws {
        let h = try BrokerHarness(shards: 2)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "poll", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let owner = h.broker.mesh.owner(topic: "poll", partition: 0)
        let other = 1 - owner
        // A fetch at the end of the log, on the shard that does not own the partition.
        h.correlation += 1
        let fetchId = h.correlation
        var w = WireWriter()
        RequestHeader(requestApiKey: FetchRequest.apiKey, requestApiVersion: 11, correlationId: fetchId, clientId: "t").encode(into: &w, version: 1)
        fetchRequest("poll", partitions: 1, offsets: [0], minBytes: 1, maxWaitMs: 10_000).encode(into: &w, version: 11)
        let outcome = w.bytes.withUnsafeBytes { h.brokers[other].handle(frame: $0, connection: other + 2, sequence: 1, nowMs: Self.now) }
        guard case .pending = outcome else { Issue.record("an empty long poll waits"); return }
        for _ in 0..<5 { #expect(h.turn(nowMs: Self.now + 1, collecting: other).isEmpty, "nothing to answer yet") }
        // An append on the owner (through its own connection) wakes the parked fetch.
        _ = try h.call(produceRequest(topic: "poll", batch: makeBatch(values: ["late"]), acks: 1), version: 8, via: owner, nowMs: Self.now + 2)
        let frame = try h.waitFor(fetchId, via: other, nowMs: Self.now + 3, turns: 5)
        let response = try h.decode(frame, FetchRequest.self, version: 11, correlationId: fetchId)
        #expect(try values(response.responses[0].partitions[0]) == ["late"], "answered before its 10 s deadline")
    }

    @Test func groupsAndTopicsLiveOnShardZeroWhicheverShardIsAsked() throws {
        var config = BrokerConfig()
        config.groups.initialRebalanceDelayMs = 0
        config.numPartitions = 3
        let h = try BrokerHarness(config: config, shards: 2)
        defer { h.remove() }
        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "auto")], allowAutoTopicCreation: true), version: 8, via: 1))
        #expect(metadata.topics[0].errorCode == 0 && metadata.topics[0].partitions.count == 3, "auto-created through shard 1")
        func join(_ memberId: String) throws -> JoinGroupResponse {
            try #require(try h.call(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 300_000, rebalanceTimeoutMs: 300_000, memberId: memberId,
                                                     protocolType: "consumer", protocols: [.init(name: "range", metadata: [1])]), version: 5, via: 1))
        }
        let first = try join("")
        #expect(first.errorCode == 79, "MEMBER_ID_REQUIRED, as Kafka answers v4+")
        let join = try join(first.memberId)
        #expect(join.errorCode == 0 && join.leader == join.memberId, "the only member leads: \(join)")
        let sync = try #require(try h.call(SyncGroupRequest(groupId: "g", generationId: join.generationId, memberId: join.memberId,
                                                            assignments: [.init(memberId: join.memberId, assignment: [2])]), version: 3, via: 1))
        #expect(sync.errorCode == 0 && sync.assignment == [2])
        let commit = try #require(try h.call(OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: join.generationId, memberId: join.memberId, topics: [
            .init(name: "auto", partitions: [.init(partitionIndex: 1, committedOffset: 42)]),
        ]), version: 7, via: 1))
        #expect(commit.topics[0].partitions[0].errorCode == 0)
        let fetched = try #require(try h.call(OffsetFetchRequest(groupId: "g", topics: [.init(name: "auto", partitionIndexes: [1])]), version: 5, via: 0))
        #expect(fetched.topics[0].partitions[0].committedOffset == 42, "the commit made through shard 1 is seen from shard 0")
        let ids = try #require(try h.call(InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: -1), version: 1, via: 1))
        let more = try #require(try h.call(InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: -1), version: 1, via: 0))
        #expect(ids.producerId > 0 && more.producerId == ids.producerId + 1, "one allocator for the whole broker")
    }

    @Test func aMalformedForwardedRequestClosesOnlyItsConnection() throws {
        let h = try BrokerHarness(shards: 2)
        defer { h.remove() }
        var w = WireWriter()
        RequestHeader(requestApiKey: JoinGroupRequest.apiKey, requestApiVersion: 5, correlationId: 5, clientId: "t").encode(into: &w, version: 1)
        w.writeInt32(-7)  // not a JoinGroup body
        let outcome = w.bytes.withUnsafeBytes { h.brokers[1].handle(frame: $0, connection: 3, sequence: 0, nowMs: Self.now) }
        guard case .pending = outcome else { Issue.record("forwarded to shard 0"); return }
        for _ in 0..<3 { _ = h.turn(nowMs: Self.now, collecting: 1) }
        #expect(h.closes[1].map(\.connection) == [3])
        #expect(h.closes[1].first?.reason.hasPrefix("malformed request") ?? false)
    }

    @Test func shutdownWaitsForEveryShardAndDropsJobsForAStoppedOne() throws {
        let h = try BrokerHarness(shards: 2)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "stop", numPartitions: 1, replicationFactor: 1)]), version: 4)
        let owner = h.broker.mesh.owner(topic: "stop", partition: 0)
        let other = 1 - owner
        #expect(h.broker.meshQuiescent, "not shutting down: no busy bits, no jobs")
        h.broker.mesh.beginShutdown()
        #expect(!h.broker.meshQuiescent, "every shard busy until it says otherwise")
        h.brokers[owner].reportIdle(true)
        #expect(!h.broker.meshQuiescent)
        h.brokers[other].reportIdle(true)
        #expect(h.broker.meshQuiescent)
        h.broker.mesh.beginShutdown()  // a second SIGTERM
        #expect(h.broker.meshQuiescent, "a second request does not mark stopped shards busy again")
        // The owner stops; a produce for its partition arriving at the other shard is not
        // queued for it (nothing would ever run it), so nothing waits for it either.
        h.brokers[owner].closeInbox()
        var w = WireWriter()
        RequestHeader(requestApiKey: 0, requestApiVersion: 8, correlationId: 9, clientId: "t").encode(into: &w, version: 1)
        produceRequest(topic: "stop", batch: makeBatch(values: ["late"]), acks: 1).encode(into: &w, version: 8)
        _ = w.bytes.withUnsafeBytes { h.brokers[other].handle(frame: $0, connection: other + 2, sequence: 0, nowMs: Self.now) }
        #expect(h.broker.meshQuiescent, "the job for the stopped shard was dropped, not counted")
    }

    @Test func aTopicIsRecreatedOnlyAfterEveryOwnerHasDroppedIt() throws {
        let h = try BrokerHarness(shards: 2)
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "again", numPartitions: 4, replicationFactor: 1)]), version: 4)
        _ = try h.call(ProduceRequest(acks: 1, timeoutMs: 1000, topicData: [.init(name: "again", partitionData: (0..<4).map {
            .init(index: $0, records: makeBatch(values: ["old"]))
        })]), version: 8, via: 1)
        // DeleteTopics on shard 0 waits for the other shard to drop its partitions...
        h.correlation += 1
        let deleteId = h.correlation
        var w = WireWriter()
        RequestHeader(requestApiKey: DeleteTopicsRequest.apiKey, requestApiVersion: 3, correlationId: deleteId, clientId: "t").encode(into: &w, version: 1)
        DeleteTopicsRequest(topicNames: ["again"]).encode(into: &w, version: 3)
        let outcome = w.bytes.withUnsafeBytes { h.brokers[0].handle(frame: $0, connection: 2, sequence: 0, nowMs: Self.now) }
        guard case .pending = outcome else { Issue.record("the other shard's partitions are dropped first"); return }
        // ...and meanwhile the name cannot be created again, nor auto-created.
        let early = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "again", numPartitions: 1, replicationFactor: 1)]), version: 4, via: 0))
        #expect(early.topics[0].errorCode == ErrorCode.topicAlreadyExists.rawValue)
        #expect(early.topics[0].errorMessage?.contains("marked for deletion") ?? false)
        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "again")], allowAutoTopicCreation: true), version: 8, via: 1))
        #expect(metadata.topics[0].errorCode == ErrorCode.leaderNotAvailable.rawValue, "retriable while it goes away")
        let deleted = try h.decode(try h.waitFor(deleteId, via: 0, nowMs: Self.now), DeleteTopicsRequest.self, version: 3, correlationId: deleteId)
        #expect(deleted.responses[0].errorCode == 0)
        #expect(!FileManager.default.fileExists(atPath: h.path + "/again-0"), "files deleted once every owner let go")
        // Now it is a new, empty topic.
        let created = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "again", numPartitions: 2, replicationFactor: 1)]), version: 4, via: 1))
        #expect(created.topics[0].errorCode == 0)
        let listed = try #require(try h.call(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "again", partitions: [
            .init(partitionIndex: 0, timestamp: -1), .init(partitionIndex: 1, timestamp: -1),
        ])]), version: 5, via: 1))
        #expect(listed.topics[0].partitions.map(\.offset) == [0, 0])
    }
}
