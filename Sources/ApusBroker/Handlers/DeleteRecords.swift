import ApusStorage
import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteRecords v0–2: moves each partition's log start offset to the offset given (-1:
    /// the high watermark), on the shard owning it. Fetches below it then get
    /// OFFSET_OUT_OF_RANGE; an offset past the high watermark is refused with that code.
    static let deleteRecords = HandlerEntry(api: .deleteRecords, versions: 0...2) { broker, context, r throws(WireError) in
        let request = try DeleteRecordsRequest.decode(from: &r, version: context.apiVersion)
        let (items, slots) = broker.resolve(request.topics.map { ($0.name, $0.partitions.map { ($0.partitionIndex, $0.offset) }) },
                                            allowed: { broker.authorizedTopic(.delete, $0, context) })
        return broker.scatter(context, items, owner: \.owner, work: { owner, share in
            share.map { item -> Result<Int64, ErrorCode> in
                guard let log = owner.log(item.topic, item.partition) else { return .failure(.unknownTopicOrPartition) }
                do throws(StorageError) {
                    return .success(try log.deleteRecords(before: item.value))
                } catch {
                    return .failure(Broker.errorCode(for: error))
                }
            }
        }, gathered: { broker, results in
            var response = DeleteRecordsResponse()
            for (topic, topicSlots) in zip(request.topics, slots) {
                var out = DeleteRecordsResponse.DeleteRecordsTopicResult(name: topic.name)
                for (p, slot) in zip(topic.partitions, topicSlots) {
                    var result = DeleteRecordsResponse.DeleteRecordsPartitionResult(partitionIndex: p.partitionIndex, lowWatermark: -1)
                    let missing: ErrorCode = broker.authorizedTopic(.delete, topic.name, context) ? .unknownTopicOrPartition : .topicAuthorizationFailed
                    switch slot.map({ results[$0] }) ?? .failure(missing) {
                    case .success(let low): result.lowWatermark = low
                    case .failure(let code): result.errorCode = code.rawValue
                    }
                    out.partitions.append(result)
                }
                response.topics.append(out)
            }
            return broker.frame(response, context)
        })
    }
}
