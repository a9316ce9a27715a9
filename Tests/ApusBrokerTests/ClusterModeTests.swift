@testable import ApusBroker
import ApusIO
import ApusTestSupport
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import Synchronization
import Testing

/// Cluster mode in the handlers, without sockets or etcd: leaders from the cluster view decide
/// who serves a partition, Metadata describes the whole cluster, group coordinators agree, and
/// topics are created and deleted through the cluster's metadata store.
@Suite struct ClusterModeTests {
    /// The metadata store as etcd would keep it (this test's stand-in for the real one, which
    /// Tests/clients/test_cluster.py runs).
    final class Store: ClusterMetadataStore, @unchecked Sendable {
        let topics = Mutex<[String: ClusterState.Topic]>([:])
        func createTopic(_ name: String, _ topic: ClusterState.Topic) throws -> Bool {
            topics.withLock { all in
                guard all[name] == nil else { return false }
                all[name] = topic
                return true
            }
        }
        func deleteTopic(_ name: String) throws -> Bool { topics.withLock { $0.removeValue(forKey: name) != nil } }
        func updateTopic(_ name: String, _ change: (inout ClusterState.Topic) -> Bool) throws -> Bool? {
            try topics.withLock { all in
                guard var topic = all[name] else { return nil }
                guard change(&topic) else { return false }
                all[name] = topic
                return true
            }
        }
    }

    static func state(_ store: Store) -> ClusterState {
        var state = ClusterState()
        state.brokers = (1...3).map { ClusterState.Broker(nodeId: $0, listeners: ["PLAINTEXT": .init(host: "10.0.0.\($0)", port: 9092)]) }
        state.topics = store.topics.withLock { $0 }
        return state
    }

    @Test func leadersDecideWhoServesAndMetadataDescribesTheCluster() throws {
        let h = try BrokerHarness()  // node.id 1
        defer { h.remove() }
        let store = Store()
        let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        membership.publish(Self.state(store), to: h.broker.mesh)
        let created = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "spread", numPartitions: 6, replicationFactor: 1)]), version: 5))
        #expect(created.topics[0].errorCode == 0)
        let leaders = try #require(store.topics.withLock { $0["spread"] }).leaders
        #expect(leaders.sorted() == [1, 1, 2, 2, 3, 3])
        membership.publish(Self.state(store), to: h.broker.mesh)
        _ = h.turn(nowMs: 1_700_000_000_000, collecting: 0)  // shard 0 reconciles: creates the logs
        DiskWorker.shared.waitUntilIdle()
        for _ in 0..<5 { _ = h.turn(nowMs: 1_700_000_000_000, collecting: 0) }

        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "spread")], allowAutoTopicCreation: false), version: 9))
        #expect(metadata.brokers.map(\.host) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        #expect(metadata.topics[0].partitions.map(\.leaderId) == leaders)
        let mine = Int32(try #require(leaders.firstIndex(of: 1)))
        let theirs = Int32(try #require(leaders.firstIndex { $0 != 1 }))
        for (partition, expected) in [(mine, Int16(0)), (theirs, ErrorCode.notLeaderOrFollower.rawValue)] {
            let produced = try #require(try h.call(produceRequest(topic: "spread", partition: partition, batch: makeBatch(values: ["a"])), version: 9))
            #expect(produced.responses[0].partitionResponses[0].errorCode == expected, "partition \(partition)")
            let fetch = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                     topics: [.init(topic: "spread", partitions: [.init(partition: partition, fetchOffset: 0, partitionMaxBytes: 1 << 20)])])
            #expect(try h.call(fetch, version: 11)?.responses[0].partitions[0].errorCode == expected)
        }
        // The first FindCoordinator creates the replicated offsets topic (COORDINATOR_NOT_AVAILABLE
        // meanwhile); then the group's coordinator is its partition's leader, whichever broker asks.
        let before = try #require(try h.call(FindCoordinatorRequest(key: "g", keyType: 0), version: 3))
        #expect(before.errorCode == ErrorCode.coordinatorNotAvailable.rawValue)
        DiskWorker.shared.waitUntilIdle()
        membership.worker.waitUntilIdle()
        let offsets = try #require(store.topics.withLock { $0[consumerOffsetsTopic] })
        #expect(offsets.replicas.count == 50 && offsets.replicas.allSatisfy { Set($0).count == 3 })
        #expect(offsets.configs["retention.ms"] == "-1")
        membership.publish(Self.state(store), to: h.broker.mesh)
        let coordinator = try #require(try h.call(FindCoordinatorRequest(key: "g", keyType: 0), version: 3))
        #expect(coordinator.errorCode == 0)
        #expect(coordinator.nodeId == Self.state(store).coordinator(of: "g")?.nodeId)
        #expect(coordinator.host == "10.0.0.\(coordinator.nodeId)")
        // A configuration change is written to the record, and applied here when the view shows it.
        let alter = IncrementalAlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "spread",
                                                                     configs: [.init(name: "retention.ms", configOperation: 0, value: "60000")])])
        #expect(try h.call(alter, version: 1)?.responses[0].errorCode == 0)
        #expect(store.topics.withLock { $0["spread"]?.configs } == ["retention.ms": "60000"])
        membership.publish(Self.state(store), to: h.broker.mesh)
        for _ in 0..<20 { _ = h.turn(nowMs: 1_700_000_000_000, collecting: 0); DiskWorker.shared.waitUntilIdle() }
        #expect(h.broker.topics["spread"]?.overrides == ["retention.ms": "60000"])
        #expect(try h.call(CreatePartitionsRequest(topics: [.init(name: "spread", count: 8, assignments: nil)], timeoutMs: 1000), version: 3)?
            .results[0].errorCode == ErrorCode.invalidRequest.rawValue)
        // A second creation of the name is refused; a deletion goes through the store, and the
        // logs go when the view drops the topic.
        #expect(try h.call(CreateTopicsRequest(topics: [.init(name: "spread", numPartitions: 1, replicationFactor: 1)]), version: 5)?
            .topics[0].errorCode == ErrorCode.topicAlreadyExists.rawValue)
        #expect(try h.call(DeleteTopicsRequest(topicNames: ["spread"], timeoutMs: 1000), version: 5)?.responses[0].errorCode == 0)
        #expect(store.topics.withLock { $0["spread"] } == nil)
        membership.publish(Self.state(store), to: h.broker.mesh)
        for _ in 0..<20 { _ = h.turn(nowMs: 1_700_000_000_000, collecting: 0); DiskWorker.shared.waitUntilIdle() }
        #expect(h.broker.topics["spread"] == nil)
    }

    /// Replication on the leader's side: an acks=all produce is answered once every in-sync
    /// replica's fetch has passed it, consumers read only up to the high watermark, a follower
    /// that stops fetching leaves the in-sync replicas after the lag time (written to the store),
    /// and with fewer in sync than min.insync.replicas acks=all is refused.
    @Test func theLeaderWaitsForTheInSyncReplicasAndShrinksThemWhenOneLags() throws {
        var config = BrokerConfig()  // node.id 1
        config.replicaLagTimeMaxMs = 1_000
        let h = try BrokerHarness(config: config)
        defer { h.remove() }
        let store = Store()
        store.topics.withLock { $0["rep"] = ClusterState.Topic(id: .random(), replicas: [[1, 2, 3]], configs: ["min.insync.replicas": "2"]) }
        let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        let t0: Int64 = 1_700_000_000_000
        membership.publish(Self.state(store), to: h.broker.mesh)
        for _ in 0..<20 { _ = h.turn(nowMs: t0, collecting: 0); DiskWorker.shared.waitUntilIdle() }
        #expect(h.broker.topics["rep"] != nil)
        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "rep")], allowAutoTopicCreation: false), version: 9))
        #expect(metadata.topics[0].partitions[0].replicaNodes == [1, 2, 3])
        #expect(metadata.topics[0].partitions[0].isrNodes == [1, 2, 3])

        // acks=all: written here, not answered until followers 2 and 3 have it.
        var w = WireWriter()
        RequestHeader(requestApiKey: ProduceRequest.apiKey, requestApiVersion: 9, correlationId: 5_000, clientId: "test")
            .encode(into: &w, version: ProduceRequest.requestHeaderVersion(9))
        produceRequest(topic: "rep", batch: makeBatch(values: ["a", "b"]), acks: -1).encode(into: &w, version: 9)
        let outcome = w.bytes.withUnsafeBytes { h.broker.handle(frame: $0, connection: 1, sequence: 5_000, nowMs: t0) }
        guard case .pending = outcome else { Issue.record("expected a pending produce, got \(outcome)"); return }
        var completions: [Completion] = []
        for _ in 0..<5 { completions += h.turn(nowMs: t0, collecting: 0) }
        #expect(!completions.contains { $0.correlationId == 5_000 })
        func fetch(_ replica: Int32, _ offset: Int64, nowMs: Int64 = t0) throws -> FetchResponse.PartitionData {
            let request = FetchRequest(replicaId: replica, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                       topics: [.init(topic: "rep", partitions: [.init(partition: 0, fetchOffset: offset, partitionMaxBytes: 1 << 20)])])
            return try #require(try h.call(request, version: 12, nowMs: nowMs)).responses[0].partitions[0]
        }
        let consumerBefore = try fetch(-1, 0)
        #expect(consumerBefore.highWatermark == 0 && (consumerBefore.records ?? []).isEmpty)
        let follower = try fetch(2, 0)  // the follower reads past the high watermark
        #expect(follower.highWatermark == 0 && !(follower.records ?? []).isEmpty)
        _ = try fetch(2, 2)
        #expect(try fetch(-1, 0).highWatermark == 0)  // 3 is in sync and has not fetched
        _ = try fetch(3, 2)
        for _ in 0..<3 { completions += h.turn(nowMs: t0, collecting: 0) }
        let answered = try #require(completions.first { $0.correlationId == 5_000 })
        let produced = try h.decode(answered.frame, ProduceRequest.self, version: 9, correlationId: 5_000)
        #expect(produced.responses[0].partitionResponses[0].errorCode == 0)
        let consumerAfter = try fetch(-1, 0)
        #expect(consumerAfter.highWatermark == 2 && !(consumerAfter.records ?? []).isEmpty)

        // Follower 3 stops fetching: after the lag time it leaves the in-sync replicas.
        for second in 1...3 {
            _ = try fetch(2, 2, nowMs: t0 + Int64(second) * 1_000)
            for _ in 0..<3 { _ = h.turn(nowMs: t0 + Int64(second) * 1_000, collecting: 0) }
            membership.worker.waitUntilIdle()
        }
        #expect(store.topics.withLock { $0["rep"]?.isr } == [[1, 2]])
        // With only the leader in sync, acks=all is refused (min.insync.replicas = 2).
        store.topics.withLock { $0["rep"]!.isr = [[1]] }
        membership.publish(Self.state(store), to: h.broker.mesh)
        for _ in 0..<3 { _ = h.turn(nowMs: t0 + 4_000, collecting: 0) }
        let refused = try #require(try h.call(produceRequest(topic: "rep", batch: makeBatch(values: ["c"]), acks: -1), version: 9, nowMs: t0 + 4_000))
        #expect(refused.responses[0].partitionResponses[0].errorCode == ErrorCode.notEnoughReplicas.rawValue)
        let one = try #require(try h.call(produceRequest(topic: "rep", batch: makeBatch(values: ["d"]), acks: 1), version: 9, nowMs: t0 + 4_000))
        #expect(one.responses[0].partitionResponses[0].errorCode == 0)
    }

    /// Groups live with their offsets partition (Kafka's `__consumer_offsets`): the leader of the
    /// partition a group hashes to coordinates it, other brokers answer NOT_COORDINATOR, a commit
    /// is answered once the partition's in-sync replicas have it, and when leadership leaves and
    /// comes back the group's offsets are read back from the replicated log.
    @Test func groupsLiveWithTheLeaderOfTheirOffsetsPartition() throws {
        let h = try BrokerHarness()  // node.id 1
        defer { h.remove() }
        let store = Store()
        let id = KafkaUUID.random()
        store.topics.withLock {
            $0["t"] = ClusterState.Topic(id: .random(), replicas: [[1]], configs: [:])
            $0[consumerOffsetsTopic] = ClusterState.Topic(id: id, replicas: [[1, 2], [2, 1]], configs: ["retention.ms": "-1"])
        }
        let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        let t0: Int64 = 1_700_000_000_000
        func settle(_ nowMs: Int64 = t0) {
            membership.publish(Self.state(store), to: h.broker.mesh)
            for _ in 0..<20 { _ = h.turn(nowMs: nowMs, collecting: 0); DiskWorker.shared.waitUntilIdle() }
        }
        settle()
        let names = (0..<100).map { "group-\($0)" }
        let here = try #require(names.first { ClusterState.offsetsPartition(of: $0, partitions: 2) == 0 })
        let there = try #require(names.first { ClusterState.offsetsPartition(of: $0, partitions: 2) == 1 })
        func commit(_ group: String, _ offset: Int64) -> OffsetCommitRequest {
            OffsetCommitRequest(groupId: group, generationIdOrMemberEpoch: -1, memberId: "",
                                topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: offset)])])
        }
        func committed(_ group: String) throws -> (Int16, Int64?) {
            let response = try #require(try h.call(OffsetFetchRequest(groupId: group, topics: [.init(name: "t", partitionIndexes: [0])]), version: 7))
            return (response.errorCode, response.topics.first?.partitions.first?.committedOffset)
        }
        #expect(try h.call(commit(there, 1), version: 7)?.topics[0].partitions[0].errorCode == ErrorCode.notCoordinator.rawValue)
        #expect(try committed(there).0 == ErrorCode.notCoordinator.rawValue)
        #expect(try h.call(FindCoordinatorRequest(key: there, keyType: 0), version: 3)?.nodeId == 2)

        // A commit here waits for follower 2 to have it in partition 0 of the offsets topic.
        var w = WireWriter()
        RequestHeader(requestApiKey: OffsetCommitRequest.apiKey, requestApiVersion: 7, correlationId: 7_000, clientId: "test")
            .encode(into: &w, version: OffsetCommitRequest.requestHeaderVersion(7))
        commit(here, 42).encode(into: &w, version: 7)
        let outcome = w.bytes.withUnsafeBytes { h.broker.handle(frame: $0, connection: 1, sequence: 7_000, nowMs: t0) }
        guard case .pending = outcome else { Issue.record("expected a pending commit, got \(outcome)"); return }
        var completions: [Completion] = []
        for _ in 0..<5 { completions += h.turn(nowMs: t0, collecting: 0) }
        #expect(!completions.contains { $0.correlationId == 7_000 })
        func follow(_ offset: Int64) throws -> FetchResponse.PartitionData {
            let request = FetchRequest(replicaId: 2, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                       topics: [.init(topic: consumerOffsetsTopic, partitions: [.init(partition: 0, fetchOffset: offset, partitionMaxBytes: 1 << 20)])])
            return try #require(try h.call(request, version: 12, nowMs: t0)).responses[0].partitions[0]
        }
        #expect(!(try follow(0).records ?? []).isEmpty)
        _ = try follow(1)
        for _ in 0..<3 { completions += h.turn(nowMs: t0, collecting: 0) }
        let answered = try #require(completions.first { $0.correlationId == 7_000 })
        #expect(try h.decode(answered.frame, OffsetCommitRequest.self, version: 7, correlationId: 7_000).topics[0].partitions[0].errorCode == 0)
        #expect(try committed(here) == (0, 42))

        // Leadership of partition 0 moves to broker 2: the group is not here any more.
        store.topics.withLock { $0[consumerOffsetsTopic]!.leaders[0] = 2; $0[consumerOffsetsTopic]!.epochs[0] = 1 }
        settle()
        #expect(try committed(here).0 == ErrorCode.notCoordinator.rawValue)
        // It comes back at a new epoch: the offsets are read back from the log.
        store.topics.withLock { $0[consumerOffsetsTopic]!.leaders[0] = 1; $0[consumerOffsetsTopic]!.epochs[0] = 2 }
        settle()
        #expect(try committed(here) == (0, 42))
        // Clients cannot write the offsets topic nor delete it.
        let produced = try #require(try h.call(produceRequest(topic: consumerOffsetsTopic, partition: 0, batch: makeBatch(values: ["x"])), version: 9))
        #expect(produced.responses[0].partitionResponses[0].errorCode == ErrorCode.invalidTopic.rawValue)
        #expect(try h.call(DeleteTopicsRequest(topicNames: [consumerOffsetsTopic], timeoutMs: 1000), version: 5)?.responses[0].errorCode
            == ErrorCode.invalidTopic.rawValue)
    }

    /// The operator's APIs: ElectLeaders moves leadership to the preferred replica (or, unclean,
    /// to a live one when the leader is gone) with the epoch raised; AlterPartitionReassignments
    /// starts and cancels moves as Kafka records them (target first, then the replicas being
    /// removed) and ListPartitionReassignments shows them; bad requests get Kafka's errors.
    @Test func operatorsElectLeadersAndMovePartitions() throws {
        let h = try BrokerHarness()  // node.id 1
        defer { h.remove() }
        let store = Store()
        store.topics.withLock {
            var topic = ClusterState.Topic(id: .random(), replicas: [[2, 1, 3]], configs: [:])
            topic.leaders = [1]
            $0["m"] = topic
        }
        let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        membership.publish(Self.state(store), to: h.broker.mesh)
        func elect(_ type: Int8, _ topic: String = "m") throws -> Int16? {
            try h.call(ElectLeadersRequest(electionType: type, topicPartitions: [.init(topic: topic, partitions: [0])]), version: 2)?
                .replicaElectionResults.first?.partitionResult.first?.errorCode
        }
        #expect(try elect(0) == 0)
        #expect(store.topics.withLock { ($0["m"]!.leaders, $0["m"]!.epochs) } == ([2], [1]))
        membership.publish(Self.state(store), to: h.broker.mesh)
        #expect(try elect(0) == ErrorCode.electionNotNeeded.rawValue)
        #expect(try elect(1) == ErrorCode.electionNotNeeded.rawValue)  // the leader is live
        #expect(try elect(2) == nil)  // no such election type: INVALID_REQUEST for the whole request
        #expect(try elect(0, "nope") == ErrorCode.unknownTopicOrPartition.rawValue)
        store.topics.withLock { $0["m"]!.leaders = [1]; $0["m"]!.isr = [[1, 3]] }
        membership.publish(Self.state(store), to: h.broker.mesh)
        #expect(try elect(0) == ErrorCode.preferredLeaderNotAvailable.rawValue)

        func reassign(_ target: [Int32]?) throws -> Int16? {
            try h.call(AlterPartitionReassignmentsRequest(topics: [.init(name: "m", partitions: [.init(partitionIndex: 0, replicas: target)])]), version: 0)?
                .responses.first?.partitions.first?.errorCode
        }
        #expect(try reassign([3, 1]) == 0)
        let moving = try #require(store.topics.withLock { $0["m"] })
        #expect(moving.replicas == [[3, 1, 2]] && moving.adding == [[]] && moving.removing == [[2]] && moving.leaders == [1])
        membership.publish(Self.state(store), to: h.broker.mesh)
        let listed = try #require(try h.call(ListPartitionReassignmentsRequest(topics: nil), version: 0))
        #expect(listed.topics.map(\.name) == ["m"])
        #expect(listed.topics.first?.partitions.first.map { [$0.replicas, $0.addingReplicas, $0.removingReplicas] } == [[3, 1, 2], [], [2]])
        #expect(try reassign([4]) == ErrorCode.invalidReplicaAssignment.rawValue)
        #expect(try reassign([1, 1]) == ErrorCode.invalidReplicaAssignment.rawValue)
        #expect(try reassign(nil) == 0)
        #expect(store.topics.withLock { $0["m"]!.removing } == [[]])
        membership.publish(Self.state(store), to: h.broker.mesh)
        #expect(try reassign(nil) == ErrorCode.noReassignmentInProgress.rawValue)
        #expect(try h.call(ListPartitionReassignmentsRequest(topics: nil), version: 0)?.topics.isEmpty == true)
    }

    /// A single broker leads every partition already, and can only "move" one onto itself.
    @Test func aSingleBrokerNeedsNoElectionNorMove() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "solo", numPartitions: 1, replicationFactor: 1)]), version: 5)
        let elected = try #require(try h.call(ElectLeadersRequest(electionType: 0, topicPartitions: [.init(topic: "solo", partitions: [0, 0, 7])]), version: 2))
        #expect(elected.replicaElectionResults.first?.partitionResult.map(\.errorCode)
            == [ErrorCode.electionNotNeeded.rawValue, ErrorCode.electionNotNeeded.rawValue, ErrorCode.unknownTopicOrPartition.rawValue])
        for (target, expected) in [([Int32(1)], Int16(0)), ([2], ErrorCode.invalidReplicaAssignment.rawValue), (nil, ErrorCode.noReassignmentInProgress.rawValue)] {
            let moved = try h.call(AlterPartitionReassignmentsRequest(topics: [.init(name: "solo", partitions: [.init(partitionIndex: 0, replicas: target)])]), version: 0)
            #expect(moved?.responses.first?.partitions.first?.errorCode == expected, "\(String(describing: target))")
        }
    }

    /// Leader epochs (KIP-101/279) on both sides: a follower at a new epoch asks the leader where
    /// its last epoch ends and cuts its log there — keeping what the new leader has past its own
    /// high watermark; a leader stamps its epoch on appends and answers OffsetForLeaderEpoch from
    /// its cache.
    @Test func followersCutWhereTheirLastEpochEndsOnTheLeader() throws {
        let h = try BrokerHarness()  // node.id 1
        defer { h.remove() }
        let store = Store()
        store.topics.withLock {
            var topic = ClusterState.Topic(id: .random(), replicas: [[2, 1, 3]], configs: [:])
            topic.epochs = [1]
            $0["rep"] = topic
        }
        let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        let t0: Int64 = 1_700_000_000_000
        func settle() {
            membership.publish(Self.state(store), to: h.broker.mesh)
            for _ in 0..<20 { _ = h.turn(nowMs: t0, collecting: 0); DiskWorker.shared.waitUntilIdle() }
        }
        settle()
        // First since start: asked, and with no epochs here, cut to the high watermark (nothing).
        // Nothing fetched before the cut is appended; a fetcher of another broker gets nothing.
        guard case .askLeader(1, nil)? = h.broker.followerStart(topic: "rep", partition: 0, leader: 2) else { Issue.record("expected a question"); return }
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == nil)
        guard case .failure(.fenced) = h.broker.appendReplicated(topic: "rep", partition: 0, records: [], fetchedAtEpoch: 1, leaderHighWatermark: 0, nowMs: t0) else {
            Issue.record("appended before the cut"); return
        }
        h.broker.decideTruncation(topic: "rep", partition: 0, followedEpoch: 1, leaderEpoch: -1, leaderEndOffset: -1)
        _ = h.turn(nowMs: t0, collecting: 0)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 2) == .fetch(from: 0, epoch: 1))
        // Replicated batches: offsets 0–1 of epoch 0, 2–4 of epoch 1; the leader's high watermark 2.
        var records: [UInt8] = []
        for (base, epoch, values) in [(Int64(0), Int32(0), ["a", "b"]), (2, 1, ["c", "d", "e"])] {
            var batch = makeBatch(values: values)
            batch.withUnsafeMutableBytes {
                RecordBatchView.setBaseOffset(base, inBatchAt: $0.baseAddress!)
                RecordBatchView.setPartitionLeaderEpoch(epoch, inBatchAt: $0.baseAddress!)
            }
            records += batch
        }
        #expect(try h.broker.appendReplicated(topic: "rep", partition: 0, records: records, fetchedAtEpoch: 1, leaderHighWatermark: 2, nowMs: t0).get() == 5)
        _ = h.turn(nowMs: t0, collecting: 0)
        // Broker 3 leads at epoch 2; it had epoch 1 up to offset 4: offset 4 goes, 2–3 stay (past
        // this log's high watermark, which the pre-KIP-101 cut would have dropped).
        store.topics.withLock { $0["rep"]!.leaders = [3]; $0["rep"]!.epochs = [2] }
        settle()
        // What the old leader answers late (a fetch sent at epoch 1) is not appended.
        var late = makeBatch(values: ["x"])
        late.withUnsafeMutableBytes { RecordBatchView.setBaseOffset(5, inBatchAt: $0.baseAddress!) }
        guard case .failure(.fenced) = h.broker.appendReplicated(topic: "rep", partition: 0, records: late, fetchedAtEpoch: 1, leaderHighWatermark: 5, nowMs: t0) else {
            Issue.record("appended a fetch of an older epoch"); return
        }
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 2) == nil)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == .askLeader(followedEpoch: 2, lastEpoch: 1))
        h.broker.decideTruncation(topic: "rep", partition: 0, followedEpoch: 1, leaderEpoch: 1, leaderEndOffset: 4)  // stale: ignored
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == .askLeader(followedEpoch: 2, lastEpoch: 1))
        h.broker.decideTruncation(topic: "rep", partition: 0, followedEpoch: 2, leaderEpoch: 1, leaderEndOffset: 4)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == nil)  // decided, cut after the commit
        _ = h.turn(nowMs: t0, collecting: 0)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == .fetch(from: 4, epoch: 2))
        // The leader refuses the fetch offset (a divergent tail): asked again at the same epoch.
        h.broker.refollow(topic: "rep", partition: 0)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == .askLeader(followedEpoch: 2, lastEpoch: 1))
        h.broker.decideTruncation(topic: "rep", partition: 0, followedEpoch: 2, leaderEpoch: 1, leaderEndOffset: 4)
        _ = h.turn(nowMs: t0, collecting: 0)
        #expect(h.broker.followerStart(topic: "rep", partition: 0, leader: 3) == .fetch(from: 4, epoch: 2))

        // This broker leads at epoch 3: its appends carry the epoch, and OffsetForLeaderEpoch is
        // answered from the cache.
        store.topics.withLock { $0["rep"]!.leaders = [1]; $0["rep"]!.epochs = [3]; $0["rep"]!.isr = [[1]] }
        settle()
        let produced = try #require(try h.call(produceRequest(topic: "rep", batch: makeBatch(values: ["f"]), acks: 1), version: 9))
        #expect(produced.responses[0].partitionResponses[0].baseOffset == 4)
        _ = h.turn(nowMs: t0, collecting: 0)
        // A leader appends nothing fetched from another (the answer to a fetch sent before this
        // broker took over), and refuses fetches at any other epoch than its own (KIP-320).
        guard case .failure(.fenced) = h.broker.appendReplicated(topic: "rep", partition: 0, records: late, fetchedAtEpoch: 3, leaderHighWatermark: 5, nowMs: t0) else {
            Issue.record("a leader appended replicated batches"); return
        }
        for (known, expected) in [(Int32(2), ErrorCode.fencedLeaderEpoch.rawValue), (4, ErrorCode.unknownLeaderEpoch.rawValue), (3, 0), (-1, 0)] {
            let fetch = FetchRequest(replicaId: 2, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0, topics: [.init(topic: "rep", partitions: [
                .init(partition: 0, currentLeaderEpoch: known, fetchOffset: 4, partitionMaxBytes: 1 << 20),
            ])])
            #expect(try h.call(fetch, version: 12)?.responses[0].partitions[0].errorCode == expected, "epoch \(known)")
        }
        func endOf(_ epoch: Int32) throws -> (Int32, Int64) {
            let request = OffsetForLeaderEpochRequest(replicaId: 2, topics: [.init(topic: "rep", partitions: [.init(partition: 0, currentLeaderEpoch: 3, leaderEpoch: epoch)])])
            let result = try #require(try h.call(request, version: 4)).topics[0].partitions[0]
            #expect(result.errorCode == 0)
            return (result.leaderEpoch, result.endOffset)
        }
        #expect(try endOf(0) == (0, 2))
        #expect(try endOf(1) == (1, 4))
        #expect(try endOf(2) == (1, 4))  // this log never had epoch 2
        #expect(try endOf(3) == (3, 5))
    }

    /// A store that cannot be reached (etcd down).
    final class UnreachableStore: ClusterMetadataStore {
        struct Down: Error {}
        func createTopic(_ name: String, _ topic: ClusterState.Topic) throws -> Bool { throw Down() }
        func deleteTopic(_ name: String) throws -> Bool { throw Down() }
        func updateTopic(_ name: String, _ change: (inout ClusterState.Topic) -> Bool) throws -> Bool? { throw Down() }
    }

    /// Warnings kept for a test to count.
    final class Captured: LogHandler, @unchecked Sendable {
        let lines = Mutex<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .warning
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
        }
    }

    /// While etcd cannot be reached, every client asking for an unknown topic or a coordinator
    /// makes a creation fail: a shard logs one line a second and counts the rest into the next.
    @Test func failedCreationsInTheClusterAreLoggedOnceASecond() throws {
        let captured = Captured()
        let h = try BrokerHarness(logger: Logger(label: "apus.broker.test") { _ in captured })
        defer { h.remove() }
        let membership = ClusterMembership(store: UnreachableStore(), worker: DiskWorker(label: "test.cluster"))
        h.broker.mesh.cluster = membership
        let t0: Int64 = 1_700_000_000_000
        membership.publish(Self.state(Store()), to: h.broker.mesh)
        func ask(_ n: Int, at now: Int64) throws {
            for i in 0..<n {
                _ = try h.call(MetadataRequest(topics: [.init(name: "t\(now)-\(i)")], allowAutoTopicCreation: true), version: 9, nowMs: now)
                _ = try h.call(FindCoordinatorRequest(key: "g", keyType: 0), version: 3, nowMs: now)
                membership.worker.waitUntilIdle()
                for _ in 0..<3 { _ = h.turn(nowMs: now, collecting: 0) }
            }
        }
        try ask(20, at: t0)
        let failures = { captured.lines.withLock { $0 } }
        #expect(failures().count == 1, "\(failures())")
        try ask(1, at: t0 + 1_000)
        let lines = failures()
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.dropFirst().first?.contains("not logged one by one") == true && lines.dropFirst().first?.contains("39") == true, "\(lines)")
    }

    /// Random operator requests — unknown topics, negative and repeated partitions, empty,
    /// repeated and unknown replicas, odd election types — are answered, on a single broker and in
    /// a cluster, and never trap.
    @Test func randomOperatorRequestsAreAnsweredNeverTrap() throws {
        var state: UInt64 = 0x5EED
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        func ids() -> [Int32] { (0..<next(5)).map { _ in Int32(next(7)) - 2 } }
        for clustered in [false, true] {
            let h = try BrokerHarness()
            defer { h.remove() }
            _ = try h.call(CreateTopicsRequest(topics: [.init(name: "m", numPartitions: 2, replicationFactor: 1)]), version: 5)
            if clustered {
                let store = Store()
                store.topics.withLock { $0["m"] = ClusterState.Topic(id: .random(), replicas: [[1, 2], [2, 3, 1]], configs: [:]) }
                let membership = ClusterMembership(store: store, worker: DiskWorker(label: "test.cluster"))
                h.broker.mesh.cluster = membership
                membership.publish(Self.state(store), to: h.broker.mesh)
            }
            for _ in 0..<200 {
                let topics = (0..<next(3)).map { _ in ["m", "nope", ""][next(3)] }
                switch next(3) {
                case 0:
                    let named = next(4) == 0 ? nil : topics.map { ElectLeadersRequest.TopicPartitions(topic: $0, partitions: ids()) }
                    #expect(try h.call(ElectLeadersRequest(electionType: Int8(next(4)) - 1, topicPartitions: named), version: Int16(next(3))) != nil)
                case 1:
                    let moves = topics.map { name in
                        AlterPartitionReassignmentsRequest.ReassignableTopic(name: name, partitions: ids().map { .init(partitionIndex: $0, replicas: next(3) == 0 ? nil : ids()) })
                    }
                    #expect(try h.call(AlterPartitionReassignmentsRequest(topics: moves), version: 0) != nil)
                default:
                    let listed = next(3) == 0 ? nil : topics.map { ListPartitionReassignmentsRequest.ListPartitionReassignmentsTopics(name: $0, partitionIndexes: ids()) }
                    #expect(try h.call(ListPartitionReassignmentsRequest(topics: listed), version: 0) != nil)
                }
            }
        }
    }
}
