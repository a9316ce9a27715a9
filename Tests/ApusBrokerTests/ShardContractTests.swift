@testable import ApusBroker
import ApusIO
import ApusStorage
import Foundation
import KafkaProtocol
import KafkaWire
import Testing

/// The shard-thread contract: a shard thread calls nothing that may wait on the disk except
/// the declared exceptions (ARCHITECTURE.md). The test thread plays a shard (marked) through
/// every path that touches files: topic creation and auto-creation, produce with segment
/// rolls, syncs, retention, recovery-point checkpoints, fetch, topic deletion.
@Suite(.serialized) struct ShardContractTests {
    @Test(arguments: [1, 2]) func noCallThatMayWaitOnTheDiskOnAShardThread(shards: Int) throws {
        var config = BrokerConfig()
        config.log.segmentBytes = 4096
        config.log.retentionBytes = 16 << 10
        config.log.durability = .fsyncOnAckAll
        let h = try BrokerHarness(config: config, shards: shards)
        defer { h.remove() }
        let before = ShardThreadContract.violations.count
        ShardThreadContract.markCurrentThread(true)
        defer { ShardThreadContract.markCurrentThread(false) }

        let created = try #require(try h.call(CreateTopicsRequest(topics: [.init(name: "c", numPartitions: 3, replicationFactor: 1)]), version: 4))
        #expect(created.topics[0].errorCode == 0)
        let metadata = try #require(try h.call(MetadataRequest(topics: [.init(name: "auto")], allowAutoTopicCreation: true), version: 8))
        #expect(metadata.topics[0].errorCode == 0 && metadata.topics[0].partitions.count == 1, "auto-created off the shard, then described")
        for i in 0..<40 {
            let batch = makeBatch(values: (0..<8).map { "value-\(i)-\($0)-" + String(repeating: "x", count: 300) })
            let r = try #require(try h.call(produceRequest(topic: "c", partition: Int32(i % 3), batch: batch, acks: -1), version: 8))
            #expect(r.responses[0].partitionResponses[0].errorCode == 0)
        }
        let log = try #require(h.broker.logs.log(TopicPartition("c", 0)))
        #expect(log.segmentCount > 4, "segments rolled")
        for broker in h.brokers { broker.maintenance(nowMs: 1_700_000_000_000) }
        #expect(log.logStartOffset > 0, "retention deleted segments")
        let fetch = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                 topics: [.init(topic: "c", partitions: [.init(partition: 0, fetchOffset: -1, partitionMaxBytes: 1 << 20)])])
        _ = try h.call(fetch, version: 11)
        let deleted = try #require(try h.call(DeleteTopicsRequest(topicNames: ["c", "auto"]), version: 3))
        #expect(deleted.responses.allSatisfy { $0.errorCode == 0 })
        DiskWorker.shared.waitUntilIdle()
        #expect(!FileManager.default.fileExists(atPath: h.path + "/c-0"), "the deletion's files are gone when it is answered")

        let after = ShardThreadContract.violations
        #expect(after.count == before, "calls that may wait on the disk on a shard thread: \(after.examples)")
    }

    /// The check itself: an undeclared call on a marked thread is counted, a declared
    /// exception and an unmarked thread are not.
    @Test func theCheckCountsWhatItShould() throws {
        let dir = NSTemporaryDirectory() + "apus-contract-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Sys.makeDirectories(dir)
        let before = ShardThreadContract.violations.count
        let declared = (ShardThreadContract.exceptions["test", default: 0], ShardThreadContract.exceptionsOnThisThread)
        try Sys.writeFileAtomically(dir + "/unmarked", [1])
        try ShardThreadContract.allowingDiskWait("test") { () throws(SystemError) in try Sys.writeFileAtomically(dir + "/allowed-unmarked", [1]) }
        #expect(ShardThreadContract.violations.count == before)
        #expect(ShardThreadContract.exceptionsOnThisThread == declared.1, "an exception off the shards is not counted")
        ShardThreadContract.markCurrentThread(true)
        try ShardThreadContract.allowingDiskWait("test") { () throws(SystemError) in try Sys.writeFileAtomically(dir + "/allowed", [1]) }
        #expect(ShardThreadContract.violations.count == before)
        // A declared exception on a shard is counted, by reason, for the thread and the process.
        #expect(ShardThreadContract.exceptionsOnThisThread == declared.1 + 1)
        #expect(ShardThreadContract.exceptions["test", default: 0] >= declared.0 + 1)
        try Sys.writeFileAtomically(dir + "/marked", [1])
        ShardThreadContract.markCurrentThread(false)
        let after = ShardThreadContract.violations
        #expect(after.count > before)
        #expect(after.examples.contains { $0.contains("marked") })
    }
}
