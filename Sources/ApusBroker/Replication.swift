import ApusStorage
import KafkaProtocol
import KafkaWire

/// What the leader of a replicated partition knows of its followers, from their fetches
/// (Kafka's replica state): each follower's log end and when it last caught up with the leader.
final class ReplicaSet {
    struct Follower {
        /// The follower's log end, as its last fetch offset says; -1 until it fetches.
        var logEnd: Int64 = -1
        /// The last time its fetch reached the leader's log end (or when the leader took over).
        var caughtUpMs: Int64
    }

    var followers: [Int32: Follower] = [:]
    /// An in-sync replica change is being written to the cluster's metadata; none is asked for
    /// until this time (it comes back with the view).
    var quietUntilMs: Int64 = 0
}

/// A partition's replication as the cluster's metadata has it.
struct Replication {
    var leader: Int32
    var replicas: [Int32]
    var isr: [Int32]
    var epoch: Int32
}

/// Replication (cluster mode, issue 16), Kafka's way: followers fetch from the leader with their
/// replica id (the zero-copy fetch path), the leader tracks each follower's log end from its
/// fetch offsets, and the high watermark — what consumers may read, what acks=all waits for — is
/// the lowest log end among the in-sync replicas. A follower that has not caught up with the
/// leader's log end for `replica.lag.time.max.ms` leaves the in-sync replicas, and returns once
/// it has the high watermark; the leader writes both changes to the cluster's metadata with a
/// compare-and-swap fenced by its leader epoch. Everything here runs on the shard owning the
/// partition.
extension Broker {
    /// The partition's replicas in the cluster view; nil for a single broker, or one replica.
    func replication(_ topic: String, _ partition: Int32) -> Replication? {
        guard let cluster, let t = cluster.topics[topic], t.replicas.indices.contains(Int(partition)) else { return nil }
        let p = Int(partition)
        guard t.replicas[p].count > 1 else { return nil }
        return Replication(leader: t.leaders[p], replicas: t.replicas[p], isr: t.isr[p], epoch: t.epochs[p])
    }

    /// The cluster view moved (a job on every shard): shard 0 brings the logs in line, every shard
    /// sets up the replication of the logs it owns.
    public func clusterViewMoved() {
        if index == 0 { reconcileWithCluster() }
        configureReplication()
    }

    /// For every log this shard owns: a replicated partition gets a high watermark of its own
    /// (from its checkpoint — else the log end on its leader, the log start on a follower —
    /// rising as the in-sync replicas report), and where this broker leads it, a ``ReplicaSet``
    /// whose followers count as caught up from now (as Kafka starts them), so a follower that
    /// never fetches leaves the in-sync replicas after the lag time.
    func configureReplication() {
        guard mesh.cluster != nil else { return }
        for log in ownedLogs {
            let tp = log.topicPartition
            guard let replication = replication(tp.topic, tp.partition) else {
                log.leaderEpoch = nil
                if log.replicatedHighWatermark != nil || replicaSets[tp] != nil {
                    log.replicatedHighWatermark = nil
                    replicaSets[tp] = nil
                    markAdvanced(log)
                }
                continue
            }
            if log.replicatedHighWatermark == nil {
                // A partition that was not replicated (one replica, now more: a reassignment) had
                // everything its leader has; a follower without a checkpoint knows nothing.
                log.replicatedHighWatermark = log.checkpointedHighWatermark ?? (replication.leader == config.nodeId ? log.logEndOffset : log.logStartOffset)
            }
            guard replication.leader == config.nodeId else {
                replicaSets[tp] = nil
                log.leaderEpoch = nil  // the fetcher cuts the log for the new epoch (``followerStart``)
                continue
            }
            log.leaderEpoch = replication.epoch
            followedEpochs[tp] = nil
            followerTruncations[tp] = nil
            let set = replicaSets[tp] ?? ReplicaSet()
            for id in replication.replicas where id != config.nodeId && set.followers[id] == nil {
                set.followers[id] = ReplicaSet.Follower(caughtUpMs: turnMs)
            }
            for id in set.followers.keys where !replication.replicas.contains(id) { set.followers[id] = nil }
            replicaSets[tp] = set
            markAdvanced(log)  // the in-sync replicas may have changed: the high watermark with them
        }
    }

    /// Has the log's high watermark recomputed and its signal published at the end of the turn.
    func markAdvanced(_ log: PartitionLog) {
        guard !appended.contains(where: { $0.log === log }), let topic = topics[log.topicPartition.topic],
              topic.logs.indices.contains(Int(log.topicPartition.partition)) else { return }
        appended.append((log, topic.signals[Int(log.topicPartition.partition)]))
    }

    /// Raises the high watermark of a partition this broker leads to the lowest log end among its
    /// in-sync replicas (never lowers it); a follower that has not fetched yet holds it.
    func advanceHighWatermark(_ log: PartitionLog, _ set: ReplicaSet) {
        guard let replication = replication(log.topicPartition.topic, log.topicPartition.partition) else { return }
        var mark = log.logEndOffset
        for id in replication.isr where id != config.nodeId {
            guard let follower = set.followers[id], follower.logEnd >= 0 else { return }
            mark = min(mark, follower.logEnd)
        }
        if mark > (log.replicatedHighWatermark ?? -1) { log.replicatedHighWatermark = mark }
    }

    /// A follower fetched `offset` of a partition this shard owns: it has everything below it.
    func followerFetched(_ log: PartitionLog, replica: Int32, offset: Int64) {
        guard let set = replicaSets[log.topicPartition], var follower = set.followers[replica] else { return }
        follower.logEnd = min(offset, log.logEndOffset)
        if offset >= log.logEndOffset { follower.caughtUpMs = turnMs }
        set.followers[replica] = follower
        markAdvanced(log)
    }

    /// Cuts followed logs where their fetchers decided (``decideTruncation``), after the turn's
    /// commit so that nothing is staged.
    func truncateFollowers() {
        for (tp, truncation) in followerTruncations {
            guard let target = truncation.target else { continue }
            guard let entry = topics[tp.topic], let log = log(entry, tp.partition) else {
                followerTruncations[tp] = nil
                continue
            }
            do {
                _ = try log.truncate(to: target)
                producerStates[tp] = nil
                followedEpochs[tp] = truncation.epoch
                followerTruncations[tp] = nil
                markAdvanced(log)
            } catch {
                logger.warning("could not truncate a followed log; retrying", metadata: ["partition": "\(tp)", "error": "\(error)"])
            }
        }
    }

    /// Where the fetcher following `leader` starts with a partition this shard owns: fetching
    /// from the log end at the partition's leader epoch, once the log has been cut for that epoch
    /// — until then, asking the leader where this log's last epoch ends (KIP-279; `lastEpoch`
    /// nil: this log has no epochs, it will be cut to its high watermark). Decided here from the
    /// view this shard reads now, so no fetch at a new epoch can start before its cut. Nil when
    /// this broker has no log for it, `leader` does not lead it here, or a cut is decided and not
    /// done yet.
    public func followerStart(topic: String, partition: Int32, leader: Int32) -> FollowerStart? {
        guard let entry = self.topic(topic), let log = log(entry, partition), let replication = replication(topic, partition),
              replication.leader == leader, leader != config.nodeId else { return nil }
        let tp = log.topicPartition
        if followedEpochs[tp] == replication.epoch { return .fetch(from: log.nextOffset, epoch: replication.epoch) }
        if followerTruncations[tp]?.epoch != replication.epoch { followerTruncations[tp] = FollowerTruncation(epoch: replication.epoch) }
        guard followerTruncations[tp]?.target == nil else { return nil }
        return .askLeader(followedEpoch: replication.epoch, lastEpoch: log.epochStarts.last?.epoch)
    }

    /// The leader refused this log's fetch offset (OFFSET_OUT_OF_RANGE: the log ends past the
    /// leader's): the fetcher asks the leader again where to cut it.
    public func refollow(topic: String, partition: Int32) {
        guard let entry = self.topic(topic), let log = log(entry, partition) else { return }
        followedEpochs[log.topicPartition] = nil
    }

    /// The leader's answer for this log's last epoch: the log is cut (after this turn's commit)
    /// where that epoch ends on both — the leader's end offset for it, or where this log's copy of
    /// the leader's (older) epoch ends if this log went on in an epoch the leader never had.
    /// `leaderEndOffset` -1 (the leader has no such epoch, or this log has none): the high
    /// watermark, what every in-sync replica has. Ignored if the partition moved on meanwhile.
    public func decideTruncation(topic: String, partition: Int32, followedEpoch: Int32, leaderEpoch: Int32, leaderEndOffset: Int64) {
        guard let entry = self.topic(topic), let log = log(entry, partition),
              followerTruncations[log.topicPartition]?.epoch == followedEpoch else { return }
        let target: Int64
        if leaderEndOffset < 0 || leaderEpoch < 0 {
            target = log.highWatermark
        } else {
            target = min(leaderEndOffset, log.epochStarts.endOffset(forEpoch: leaderEpoch, logEnd: log.nextOffset)?.endOffset ?? log.logStartOffset)
        }
        followerTruncations[log.topicPartition]?.target = target
    }

    /// Shrinks or grows the in-sync replicas of the partitions this shard leads (twice a second):
    /// out goes a follower not caught up for `replica.lag.time.max.ms`, in comes one that has the
    /// high watermark. The change is written to the cluster's metadata off the shard, fenced by
    /// the leader epoch; the high watermark follows when the view comes back.
    func checkInSyncReplicas(nowMs: Int64) {
        guard nowMs >= nextReplicaCheckMs, mesh.cluster != nil else { return }
        nextReplicaCheckMs = nowMs + 500
        for (tp, set) in replicaSets where nowMs >= set.quietUntilMs {
            guard let replication = replication(tp.topic, tp.partition), replication.leader == config.nodeId,
                  let log = topics[tp.topic].flatMap({ self.log($0, tp.partition) }) else { continue }
            var isr = replication.isr
            for (id, follower) in set.followers.sorted(by: { $0.key < $1.key }) {
                if isr.contains(id) && nowMs - follower.caughtUpMs > config.replicaLagTimeMaxMs {
                    isr.removeAll { $0 == id }
                } else if !isr.contains(id) && follower.logEnd >= log.highWatermark && nowMs - follower.caughtUpMs <= config.replicaLagTimeMaxMs {
                    isr.append(id)
                }
            }
            guard isr != replication.isr else { continue }
            set.quietUntilMs = nowMs + 2_000
            if isr.count < replication.isr.count { counters.isrShrinks &+= 1 } else { counters.isrExpands &+= 1 }
            let me = config.nodeId, wanted = isr, p = Int(tp.partition)
            logger.info(isr.count < replication.isr.count ? "shrinking the in-sync replicas" : "expanding the in-sync replicas",
                        metadata: ["partition": "\(tp)", "from": "\(replication.isr)", "to": "\(isr)", "epoch": "\(replication.epoch)"])
            // Fenced: written only while the record still names this leader at this epoch.
            updateClusterTopics([tp.topic]) { _, topic in
                guard topic.leaders.indices.contains(p), topic.leaders[p] == me, topic.epochs[p] == replication.epoch else { return (false, false) }
                topic.isr[p] = wanted
                return (true, true)
            } then: { broker, results in
                let failure: String? = switch results[tp.topic] {
                case .done(true)?: nil
                case .done(false)?: "the leader or its epoch moved"
                case .failed(let why)?: why
                case .missing?, nil: "the topic is gone"
                }
                if let failure { broker.logger.warning("in-sync replicas not changed", metadata: ["partition": "\(tp)", "reason": "\(failure)"]) }
            }
        }
    }

    /// An acks=all produce whose batches are written (cluster mode): whether it still waits for
    /// the in-sync replicas — until the high watermark passes each partition's append, or the
    /// request's timeout (REQUEST_TIMED_OUT). A partition whose leadership moved meanwhile is
    /// answered NOT_LEADER_OR_FOLLOWER (the client retries at the new leader); one replicated
    /// while the in-sync replicas shrank below min.insync.replicas, NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    func awaitsReplicas(_ pending: PendingProduce, nowMs: Int64) -> Bool {
        let unreplicated = { (wait: PendingProduce.Wait) in wait.log.highWatermark <= wait.lastOffset && wait.log.failure == nil }
        let moved = { (wait: PendingProduce.Wait) in unreplicated(wait) && !self.leads(wait.log.topicPartition.topic, wait.log.topicPartition.partition) }
        for wait in pending.waits where moved(wait) {
            pending.response.responses[wait.topic].partitionResponses[wait.partition].error(.notLeaderOrFollower)
        }
        pending.waits.removeAll(where: moved)
        if pending.waits.contains(where: unreplicated) {
            let deadline = pending.replicationDeadlineMs ?? nowMs + Int64(pending.timeoutMs)
            pending.replicationDeadlineMs = deadline
            if nowMs < deadline { return true }
        }
        for wait in pending.waits where wait.log.failure == nil {
            let tp = wait.log.topicPartition
            if unreplicated(wait) {
                pending.response.responses[wait.topic].partitionResponses[wait.partition].error(.requestTimedOut)
            } else if let replication = replication(tp.topic, tp.partition), let minimum = topics[tp.topic]?.settings.minInsyncReplicas,
                      replication.isr.count < minimum {
                pending.response.responses[wait.topic].partitionResponses[wait.partition].error(.notEnoughReplicasAfterAppend)
            }
        }
        return false
    }

    /// Appends batches the partition's leader sent (this broker follows it; on the shard owning
    /// the log): each must start at the log end and is kept with the leader's offsets; a partial
    /// batch at the end (a cut response) is left for the next fetch. The follower's high
    /// watermark follows the leader's. Returns the log end after the append, or why not.
    public func appendReplicated(topic: String, partition: Int32, records: [UInt8], fetchedAtEpoch epoch: Int32,
                                 leaderHighWatermark: Int64, nowMs: Int64) -> Result<Int64, ReplicaAppendError> {
        guard let entry = self.topic(topic), let log = log(entry, partition) else { return .failure(.noLog) }
        // Fetched before the leader changed (an old leader answering late, after a pause), or
        // before this log was cut for the new epoch: never appended.
        guard let replication = replication(topic, partition), replication.epoch == epoch, replication.leader != config.nodeId,
              followedEpochs[log.topicPartition] == epoch else { return .failure(.fenced) }
        if !records.isEmpty {
            let owned = UnsafeMutableRawBufferPointer.allocate(byteCount: records.count, alignment: 16)
            owned.copyBytes(from: records)
            stagedBuffers.append(owned)
            var sequence = RecordBatchSequence(UnsafeRawBufferPointer(owned), validate: true)
            do {
                while let view = try sequence.next() {
                    if view.lastOffset < log.nextOffset { continue }  // already here (a repeated fetch)
                    let start = view.bytes.baseAddress! - UnsafeRawPointer(owned.baseAddress!)
                    let batch = UnsafeMutableRawBufferPointer(rebasing: owned[start..<(start + view.bytes.count)])
                    _ = try shard.append(batch, to: log, requireDurable: false, nowMs: nowMs, keepOffsets: true)
                }
            } catch let error as StorageError {
                return .failure(.storage("\(error)"))
            } catch {
                return .failure(.invalid("\(error)"))
            }
            producerStates[log.topicPartition] = nil  // rebuilt from the log if this broker leads it later
            markAdvanced(log)
        }
        let mark = min(leaderHighWatermark, log.nextOffset)
        if mark > (log.replicatedHighWatermark ?? -1) { log.replicatedHighWatermark = mark }
        return .success(log.nextOffset)
    }

}

/// A followed partition whose log is cut before fetching from a new leader: at `epoch`, to
/// `target` once the fetcher has asked the leader (``Broker/decideTruncation``).
struct FollowerTruncation {
    var epoch: Int32
    var target: Int64?
}

/// Where a follower's fetcher begins with a partition (``Broker/followerStart(topic:partition:leader:)``).
public enum FollowerStart: Sendable, Equatable {
    case fetch(from: Int64, epoch: Int32)
    case askLeader(followedEpoch: Int32, lastEpoch: Int32?)
}

/// Why a follower's append was refused.
public enum ReplicaAppendError: Error, CustomStringConvertible {
    /// This broker has no log for the partition (yet).
    case noLog
    /// The batches were fetched at a leader epoch that is no longer the partition's here.
    case fenced
    /// The log refused it (offline, out of space…).
    case storage(String)
    /// The leader's bytes are not valid batches.
    case invalid(String)

    public var description: String {
        switch self {
        case .noLog: "no local log for the partition"
        case .fenced: "fetched at an older leader epoch"
        case .storage(let why): "storage: \(why)"
        case .invalid(let why): "invalid batches: \(why)"
        }
    }
}
