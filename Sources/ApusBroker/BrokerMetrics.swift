import ApusIO
import ApusStorage
import KafkaProtocol

/// What a shard's broker counts for the metrics endpoint: plain integers written by its shard
/// thread only, so nothing is shared on the hot path; the server takes a ``BrokerSnapshot``
/// once a second and sums the shards when scraped.
public struct BrokerCounters: Sendable, Equatable {
    /// API keys counted (Kafka's are below this).
    public static let apiKeyLimit = 128
    /// Requests handled per API key.
    public var requests = [UInt64](repeating: 0, count: apiKeyLimit)
    /// Non-zero error codes in responses, per API key and code (`apiKey << 16 | code`), each
    /// occurrence counted as Kafka's `errorCounts` does (a Produce response with two failed
    /// partitions counts two).
    public var errors: [Int32: UInt64] = [:]
    /// Jobs run for other shards (forwarded requests, parts of scattered ones, answers).
    public var jobs: UInt64 = 0
    /// In-sync replica changes this shard's leaders asked for (cluster mode).
    public var isrShrinks: UInt64 = 0
    public var isrExpands: UInt64 = 0

    mutating func noteRequest(_ apiKey: Int16) {
        guard apiKey >= 0 && Int(apiKey) < Self.apiKeyLimit else { return }
        requests[Int(apiKey)] &+= 1
    }

    mutating func noteError(_ apiKey: Int16, _ code: Int16) {
        errors[Int32(apiKey) << 16 | Int32(UInt16(bitPattern: code)), default: 0] &+= 1
    }
}

/// One partition as its owning shard saw it at a snapshot.
public struct PartitionStats: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    public var sizeBytes: Int64
    public var segments: Int
    public var traffic: LogTraffic
    /// What consumers may read (the log end when the partition has one replica).
    public var highWatermark: Int64
    /// A replicated partition this broker leads: its replicas, in-sync replicas and each
    /// follower's lag in records (the leader's log end minus the follower's last fetch offset).
    public var leading: ReplicationStats?
}

/// A replicated partition as its leader sees it.
public struct ReplicationStats: Sendable, Equatable {
    public var replicas: Int
    public var inSync: Int
    public var followerLag: [Int32: Int64]
}

/// One consumer group as the coordinator (shard 0) saw it at a snapshot.
public struct GroupStats: Sendable, Equatable {
    public struct Offset: Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var committed: Int64
    }
    public var groupId: String
    public var state: String
    public var members: Int
    public var offsets: [Offset]
}

/// Everything a shard's broker reports to the metrics endpoint, taken on its own thread.
public struct BrokerSnapshot: Sendable {
    public var counters: BrokerCounters
    /// Jobs waiting in this shard's inbox.
    public var queuedJobs: Int
    public var partitions: [PartitionStats]
    /// Shard 0 only (the group coordinator).
    public var groups: [GroupStats]
    public var backend: String
    public var writeLatency: LatencyBuckets
    public var syncLatency: LatencyBuckets
    public var jobDelay: LatencyBuckets
}

extension Broker {
    /// The shard's counters and the state of what it owns (O(partitions + groups); the server
    /// takes one a second).
    public func metricsSnapshot() -> BrokerSnapshot {
        let partitions = ownedLogs.map { log in
            PartitionStats(topic: log.topicPartition.topic, partition: log.topicPartition.partition,
                           logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset,
                           sizeBytes: log.sizeInBytes, segments: log.segmentCount, traffic: log.traffic,
                           highWatermark: log.highWatermark, leading: leaderStats(log))
        }
        var groupStats: [GroupStats] = []
        if index == 0 {
            for id in groups.groupIds {
                guard let summary = groups.describeGroup(id) else { continue }
                let offsets = groups.committedOffsets(groupId: id).map { GroupStats.Offset(topic: $0.topic, partition: $0.partition, committed: $0.offset.offset) }
                groupStats.append(GroupStats(groupId: id, state: summary.state.rawValue, members: summary.members.count, offsets: offsets))
            }
        }
        return BrokerSnapshot(counters: counters, queuedJobs: mesh.queuedJobs(index), partitions: partitions, groups: groupStats, backend: shard.backend.name,
                              writeLatency: shard.writeLatency, syncLatency: shard.syncLatency, jobDelay: jobDelay)
    }

    /// A replicated partition this shard leads, for the metrics; nil otherwise.
    private func leaderStats(_ log: PartitionLog) -> ReplicationStats? {
        let tp = log.topicPartition
        guard let set = replicaSets[tp], let replication = replication(tp.topic, tp.partition), replication.leader == config.nodeId else { return nil }
        let lag = set.followers.mapValues { $0.logEnd < 0 ? log.logEndOffset : max(0, log.logEndOffset - $0.logEnd) }
        return ReplicationStats(replicas: replication.replicas.count, inSync: replication.isr.count, followerLag: lag)
    }
}
