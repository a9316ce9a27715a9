import KafkaProtocol
import KafkaWire

extension Broker {
    /// ListOffsets v0–10: latest (-1), earliest (-2), the record with the largest timestamp
    /// (-3, v7+), the earliest local offset (-4, v8+: the earliest, all data being local), the
    /// latest tiered offset (-5, v9+: none, nothing is tiered), or the first record at or after
    /// a timestamp, with its timestamp.
    static let listOffsets = HandlerEntry(api: .listOffsets, versions: 0...10) { broker, context, r throws(WireError) in
        let request = try ListOffsetsRequest.decode(from: &r, version: context.apiVersion)
        // Each partition is looked up by the shard owning it; unknown ones are answered here.
        let (items, slots) = broker.resolve(request.topics.map { ($0.name, $0.partitions.map { ($0.partitionIndex, $0.timestamp) }) })
        return broker.scatter(context, items, owner: \.owner, work: { owner, share in
            share.map { item -> ListedOffset in
                guard let log = owner.log(item.topic, item.partition) else { return .failed(.unknownTopicOrPartition) }
                do {
                    switch item.value {
                    case -1: return .found(log.highWatermark, -1)
                    case -2, -4: return .found(log.logStartOffset, -1)
                    case -3: return try log.recordWithMaxTimestamp().map { .found($0.offset, $0.timestamp) } ?? .found(-1, -1)
                    case -5: return .found(-1, -1)
                    case ..<0: return .failed(.invalidRequest)
                    default: return try log.record(atOrAfter: item.value).map { .found($0.offset, $0.timestamp) } ?? .found(-1, -1)
                    }
                } catch {
                    owner.logger.error("ListOffsets could not read the log", metadata: ["partition": "\(log.topicPartition)", "error": "\(error)"])
                    return .failed(.kafkaStorageError)
                }
            }
        }, gathered: { broker, offsets in
            var response = ListOffsetsResponse()
            for (topic, topicSlots) in zip(request.topics, slots) {
                var out = ListOffsetsResponse.ListOffsetsTopicResponse(name: topic.name)
                let described = broker.authorizedTopic(.describe, topic.name, context)  // DESCRIBE on the topic (ACLs)
                for (p, slot) in zip(topic.partitions, topicSlots) {
                    var result = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: p.partitionIndex)
                    let answer: ListedOffset = !described ? .failed(.topicAuthorizationFailed)
                        : !broker.leads(topic.name, p.partitionIndex) ? .failed(.notLeaderOrFollower)
                        : slot.map({ offsets[$0] }) ?? .failed(.unknownTopicOrPartition)
                    switch answer {
                    case .failed(let code):
                        result.errorCode = code.rawValue
                    case .found(let offset, let timestamp):
                        result.timestamp = timestamp
                        result.offset = offset
                        if context.apiVersion == 0 { result.oldStyleOffsets = offset >= 0 ? [offset] : [] }
                    }
                    out.partitions.append(result)
                }
                response.topics.append(out)
            }
            return broker.frame(response, context)
        })
    }
}

/// One partition's ListOffsets answer.
enum ListedOffset {
    case found(Int64, Int64)
    case failed(ErrorCode)
}
