import KafkaProtocol
import KafkaWire

extension Broker {
    /// This broker's leader epoch for every partition (a single broker never changes leader).
    static let leaderEpoch: Int32 = 0

    /// OffsetForLeaderEpoch v0–4: clients validate their position after a leader change. With
    /// one leader epoch (0) the end of epoch 0 is the high watermark; an epoch before or after
    /// it is UNDEFINED (-1, -1), as Kafka's epoch cache answers. A current leader epoch newer
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
                    if p.currentLeaderEpoch > Broker.leaderEpoch {
                        result.errorCode = ErrorCode.unknownLeaderEpoch.rawValue  // the client knows a newer leader?
                    } else if p.leaderEpoch == Broker.leaderEpoch {
                        result.leaderEpoch = Broker.leaderEpoch
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
