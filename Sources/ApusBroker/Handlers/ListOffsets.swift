import KafkaProtocol
import KafkaWire

extension Broker {
    /// ListOffsets v0–5: latest (-1), earliest (-2), or the first offset at/after a timestamp.
    static let listOffsets = HandlerEntry(api: .listOffsets, versions: 0...5) { broker, context, r throws(WireError) in
        let request = try ListOffsetsRequest.decode(from: &r, version: context.apiVersion)
        // Each partition is looked up by the shard owning it; unknown ones are answered here.
        // `slots` keeps, per requested partition, its item (nil: unknown), fixed now.
        var items: [(topic: CatalogTopic, partition: Int32, timestamp: Int64)] = []
        var slots: [[Int?]] = []
        for topic in request.topics {
            let entry = broker.topic(topic.name)
            slots.append(topic.partitions.map { p in
                guard let entry, p.partitionIndex >= 0, Int(p.partitionIndex) < entry.partitionCount else { return nil }
                items.append((entry, p.partitionIndex, p.timestamp))
                return items.count - 1
            })
        }
        return broker.scatter(context, items, owner: { $0.topic.owners[Int($0.partition)] }, work: { owner, share in
            share.map { item -> Int64? in
                guard let log = owner.log(item.topic, item.partition) else { return nil }
                switch item.timestamp {
                case -1: return log.highWatermark
                case -2: return log.logStartOffset
                default: return (try? log.offset(forTimestamp: item.timestamp)) ?? nil
                }
            }
        }, gathered: { broker, offsets in
            var response = ListOffsetsResponse()
            for (topic, topicSlots) in zip(request.topics, slots) {
                var out = ListOffsetsResponse.ListOffsetsTopicResponse(name: topic.name)
                for (p, slot) in zip(topic.partitions, topicSlots) {
                    var result = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: p.partitionIndex)
                    guard let slot else {
                        result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                        out.partitions.append(result)
                        continue
                    }
                    let offset = offsets[slot]
                    result.timestamp = -1
                    result.offset = offset ?? -1
                    if context.apiVersion == 0 { result.oldStyleOffsets = offset.map { [$0] } ?? [] }
                    out.partitions.append(result)
                }
                response.topics.append(out)
            }
            return broker.frame(response, context)
        })
    }
}
