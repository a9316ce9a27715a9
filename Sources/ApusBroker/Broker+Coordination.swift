import ApusStorage
import KafkaProtocol
import KafkaWire

/// Group coordination in cluster mode (issue 16), Kafka's way: committed offsets are records in
/// the replicated `__consumer_offsets` topic (`offsets.topic.num.partitions`, created at the
/// first FindCoordinator once `offsets.topic.replication.factor` brokers are live), a group's
/// offsets go to the partition its id hashes to, and the leader of that partition coordinates
/// the group. A commit is answered once the partition's high watermark passes it — its in-sync
/// replicas have it — so it survives the leader's loss. When leadership of a partition comes to
/// this broker (shard 0, which owns every offsets partition) it reads the partition back into
/// `groups` (COORDINATOR_LOAD_IN_PROGRESS meanwhile); when it goes, the partition's groups are
/// dropped here (NOT_COORDINATOR) and their members find the new coordinator. Membership is not
/// persisted: a group moves with its offsets, and its members rejoin at the new coordinator.
extension Broker {
    /// Why this broker cannot serve `group` now, nil when it can (always on a single broker):
    /// COORDINATOR_NOT_AVAILABLE before the offsets topic exists, NOT_COORDINATOR where another
    /// broker leads the group's offsets partition, COORDINATOR_LOAD_IN_PROGRESS while its commits
    /// are being read back here.
    func coordinationRefusal(_ group: String) -> ErrorCode? {
        guard let cluster else { return nil }
        guard let offsets = cluster.offsetsPartition(of: group) else { return .coordinatorNotAvailable }
        guard offsets.leader == config.nodeId else { return .notCoordinator }
        return coordinatedPartitions[offsets.partition] == offsets.epoch ? nil : .coordinatorLoadInProgress
    }

    /// The offsets log `group`'s commits go to: the single broker's one, or in cluster mode the
    /// group's partition of `__consumer_offsets` (nil before this broker has its log).
    func offsetsLog(for group: String) -> PartitionLog? {
        guard cluster != nil else { return offsetsLog }
        guard let topic = topic(Broker.offsetsTopic) else { return nil }
        return log(topic, ClusterState.offsetsPartition(of: group, partitions: topic.partitionCount))
    }

    /// Creates the replicated `__consumer_offsets` if the cluster lacks it (shard 0, at a
    /// FindCoordinator); false while too few brokers are live for its replication factor.
    func createOffsetsTopicIfMissing() -> Bool {
        guard let cluster, cluster.topics[Broker.offsetsTopic] == nil else { return true }
        guard cluster.brokers.count >= config.offsetsTopicReplicationFactor else { return false }
        guard !writingToCluster.contains(Broker.offsetsTopic) else { return true }
        // Commits are kept (there is no compaction): retention must never delete them.
        let overrides = ["retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": "\(100 << 20)"]
        createClusterTopics([TopicSpec(name: Broker.offsetsTopic, partitions: config.offsetsTopicPartitions, overrides: overrides,
                                       replicationFactor: config.offsetsTopicReplicationFactor)]) { broker, failures in
            if let (code, message) = failures[Broker.offsetsTopic], code != .topicAlreadyExists {
                broker.logCreationFailure("could not create the offsets topic", ["error": "\(message)"])
            }
        }
        return true
    }

    /// Brings the groups kept here in line with the offsets partitions this broker leads (shard
    /// 0, every turn: cheap unless the cluster view or the catalog moved, or a load is under way).
    func coordinateGroups() {
        guard index == 0, let cluster else { return }
        refreshTopics()
        let seen = (clusterSeen.version, catalogVersion)
        if seen != coordinationSeen {
            coordinationSeen = seen
            let offsets = cluster.topics[Broker.offsetsTopic]
            let local = topics[Broker.offsetsTopic]
            for p in Set(coordinatedPartitions.keys).union(loadingPartitions.keys) {
                let leads = offsets.map { Int(p) < $0.leaders.count && $0.leaders[Int(p)] == config.nodeId } ?? false
                let epoch = offsets.map { Int(p) < $0.epochs.count ? $0.epochs[Int(p)] : -1 } ?? -1
                if !leads || (coordinatedPartitions[p] ?? loadingPartitions[p]?.epoch) != epoch { unloadGroups(of: p) }
            }
            if let offsets, let local, local.partitionCount != offsets.leaders.count, !warnedLocalOnly.contains(Broker.offsetsTopic) {
                warnedLocalOnly.insert(Broker.offsetsTopic)
                logger.error("this data directory's __consumer_offsets is not the cluster's (a single broker's?): groups coordinated here cannot load until it is moved aside", metadata: ["partitions": "\(local.partitionCount)", "cluster": "\(offsets.leaders.count)"])
            }
            if let offsets, let local, local.partitionCount == offsets.leaders.count {
                for p in offsets.leaders.indices where offsets.leaders[p] == config.nodeId {
                    let partition = Int32(p)
                    guard coordinatedPartitions[partition] == nil, loadingPartitions[partition] == nil,
                          let log = log(local, partition) else { continue }
                    loadingPartitions[partition] = (offsets.epochs[p], log.logStartOffset)
                }
            }
        }
        if !loadingPartitions.isEmpty { loadSomeOffsets() }
    }

    /// Replays up to 8 MiB of the partitions being loaded (reads of segment data, allowed on a
    /// shard; a big partition takes several turns and the shard serves meanwhile).
    private func loadSomeOffsets() {
        guard let local = topics[Broker.offsetsTopic] else { return }
        var budget = 8 << 20
        for (p, loading) in loadingPartitions.sorted(by: { $0.key < $1.key }) where budget > 0 {
            guard let log = log(local, p) else { continue }
            var next = loading.next
            var failed = false
            while next < log.logEndOffset && budget > 0 {
                guard let (after, _) = (try? replayOffsets(from: log, at: next, maxBytes: 1 << 20)) ?? nil else {
                    failed = true
                    break
                }
                budget -= 1 << 20
                next = after
            }
            if failed {
                // An unreadable offsets log: keep serving the groups from what was read, and say so.
                logger.error("could not read the offsets partition to its end; its groups start from what was read",
                             metadata: ["partition": "\(p)", "offset": "\(next)", "logEnd": "\(log.logEndOffset)"])
                next = log.logEndOffset
            }
            if next >= log.logEndOffset {
                loadingPartitions[p] = nil
                coordinatedPartitions[p] = loading.epoch
                logger.info("coordinating the groups of an offsets partition", metadata: ["partition": "\(p)", "epoch": "\(loading.epoch)",
                                                                                          "records": "\(log.logEndOffset - log.logStartOffset)"])
            } else {
                loadingPartitions[p] = (loading.epoch, next)
            }
        }
    }

    /// Drops the groups of offsets partition `p` (its leadership moved, or its epoch did).
    private func unloadGroups(of p: Int32) {
        let count = topics[Broker.offsetsTopic]?.partitionCount ?? cluster?.topics[Broker.offsetsTopic]?.leaders.count ?? 1
        let moved = { (group: String) in ClusterState.offsetsPartition(of: group, partitions: count) == p }
        for output in groups.unload(where: moved) {
            let token = output.token
            groupCompletions.append(Completion(connection: token.connection, sequence: token.sequence, correlationId: token.correlationId, frame: encode(output)))
        }
        for id in consumerGroups.groups.keys where moved(id) { consumerGroups.groups[id] = nil }
        if coordinatedPartitions.removeValue(forKey: p) != nil {
            logger.info("no longer coordinating the groups of an offsets partition", metadata: ["partition": "\(p)"])
        }
        loadingPartitions[p] = nil
    }
}

extension Broker {
    /// Why a request about `group` is refused here: GROUP_AUTHORIZATION_FAILED without
    /// `operation` on it (ACLs), else ``coordinationRefusal(_:)``; nil when it may proceed.
    func groupRefusal(_ operation: AclOperation, _ group: String, _ context: RequestContext) -> ErrorCode? {
        authorizedGroup(operation, group, context) ? coordinationRefusal(group) : .groupAuthorizationFailed
    }
}
