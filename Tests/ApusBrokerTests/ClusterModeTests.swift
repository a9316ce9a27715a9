@testable import ApusBroker
import ApusIO
import ApusTestSupport
import Foundation
import KafkaProtocol
import KafkaWire
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
        func setTopicConfigs(_ name: String, _ configs: [String: String]) throws -> Bool {
            topics.withLock { all in
                guard all[name] != nil else { return false }
                all[name]!.configs = configs
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
        // The same group has the same coordinator whichever broker computes it.
        let coordinator = try #require(try h.call(FindCoordinatorRequest(key: "g", keyType: 0), version: 3))
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
}
