import KafkaProtocol
import KafkaWire

extension Broker {
    /// This broker's leader epoch for every partition (a single broker never changes leader).
    static let leaderEpoch: Int32 = 0

    /// OffsetForLeaderEpoch v0–4: clients validate their position after a leader change, and a
    /// follower (replica id set) asks where its last epoch ends before it truncates (KIP-101/279).
    /// A single broker has one epoch, 0, which ends at the high watermark; an epoch before or
    /// after it is UNDEFINED (-1, -1), as Kafka's epoch cache answers. In cluster mode the answer
    /// comes from the partition's leader epoch cache (``PartitionLog/epochStarts``, as published
    /// by its owner): the largest epoch at most the one asked, ending where the next one starts or
    /// at the log end; a log without a cache (written before epochs were recorded) answers with
    /// the high watermark. A current leader epoch newer than the broker's gets
    /// UNKNOWN_LEADER_EPOCH, an older one FENCED_LEADER_EPOCH. Read on whichever shard received it.
    static let offsetForLeaderEpoch = HandlerEntry(api: .offsetForLeaderEpoch, versions: 0...4) { broker, context, r throws(WireError) in
        let request = try OffsetForLeaderEpochRequest.decode(from: &r, version: context.apiVersion)
        var response = OffsetForLeaderEpochResponse()
        for topic in request.topics {
            let entry = broker.topic(topic.topic)
            var out = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic: topic.topic)
            for p in topic.partitions {
                var result = OffsetForLeaderEpochResponse.EpochEndOffset(partition: p.partition)
                if !broker.authorizedTopic(.describe, topic.topic, context) {
                    result.errorCode = ErrorCode.topicAuthorizationFailed.rawValue
                } else if let entry, p.partition >= 0, Int(p.partition) < entry.partitionCount {
                    let current = broker.currentLeaderEpoch(topic.topic, p.partition)
                    if !broker.leads(topic.topic, p.partition) {
                        result.errorCode = ErrorCode.notLeaderOrFollower.rawValue
                    } else if let error = Broker.epochRefusal(known: p.currentLeaderEpoch, current: current) {
                        result.errorCode = error.rawValue
                    } else if broker.cluster == nil {
                        if p.leaderEpoch == current {
                            result.leaderEpoch = current
                            result.endOffset = entry.signals[Int(p.partition)].highWatermark.load(ordering: .acquiring)
                        }
                    } else {
                        let signal = entry.signals[Int(p.partition)]
                        let logEnd = signal.logEnd.load(ordering: .acquiring)
                        let epochs = signal.epochs.withLock { $0 }
                        if p.leaderEpoch == current {
                            (result.leaderEpoch, result.endOffset) = (current, logEnd)
                        } else if epochs.isEmpty {
                            (result.leaderEpoch, result.endOffset) = (current, signal.highWatermark.load(ordering: .acquiring))
                        } else if let (epoch, end) = epochs.endOffset(forEpoch: p.leaderEpoch, logEnd: logEnd) {
                            (result.leaderEpoch, result.endOffset) = (epoch, end)
                        }
                    }
                } else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                }
                out.partitions.append(result)
            }
            response.topics.append(out)
        }
        return broker.respond(response, context)
    }
}
