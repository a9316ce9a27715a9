import KafkaProtocol
import KafkaWire

extension Broker {
    /// This broker's leader epoch for every partition (a single broker never changes leader).
    static let leaderEpoch: Int32 = 0

    /// OffsetForLeaderEpoch v0–4: clients validate their position after a leader change. With
    /// one leader epoch (0: a single broker) the end of epoch 0 is the high watermark; an epoch
    /// before or after it is UNDEFINED (-1, -1), as Kafka's epoch cache answers. In cluster mode
    /// the current epoch is the partition's in the cluster's metadata, and an older one is
    /// answered with the high watermark too (no epoch cache yet). A current leader epoch newer
    /// than the broker's gets UNKNOWN_LEADER_EPOCH. Read from the published high watermarks, on
    /// whichever shard received it.
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
                    // Cluster mode: the partition's epoch moves with each new leader.
                    let current = broker.cluster?.topics[topic.topic].flatMap { $0.epochs.indices.contains(Int(p.partition)) ? $0.epochs[Int(p.partition)] : nil }
                        ?? Broker.leaderEpoch
                    if !broker.leads(topic.topic, p.partition) {
                        result.errorCode = ErrorCode.notLeaderOrFollower.rawValue
                    } else if p.currentLeaderEpoch > current {
                        result.errorCode = ErrorCode.unknownLeaderEpoch.rawValue  // the client knows a newer leader?
                    } else if p.currentLeaderEpoch >= 0 && p.currentLeaderEpoch < current {
                        result.errorCode = ErrorCode.fencedLeaderEpoch.rawValue
                    } else if p.leaderEpoch == current || (current > Broker.leaderEpoch && p.leaderEpoch >= 0 && p.leaderEpoch < current) {
                        // No epoch cache: an earlier epoch is answered with the high watermark, which
                        // is never below a consumer's position (consumers read below it only).
                        result.leaderEpoch = current
                        result.endOffset = entry.signals[Int(p.partition)].highWatermark.load(ordering: .acquiring)
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
