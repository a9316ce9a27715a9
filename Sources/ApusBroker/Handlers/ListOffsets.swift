import KafkaProtocol
import KafkaWire

extension Broker {
    /// ListOffsets v0–5: latest (-1), earliest (-2), or the first offset at/after a timestamp.
    static let listOffsets = HandlerEntry(api: .listOffsets, versions: 0...5) { broker, context, r throws(WireError) in
        let request = try ListOffsetsRequest.decode(from: &r, version: context.apiVersion)
        var response = ListOffsetsResponse()
        for topic in request.topics {
            var out = ListOffsetsResponse.ListOffsetsTopicResponse(name: topic.name)
            for p in topic.partitions {
                var result = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: p.partitionIndex)
                guard let log = broker.log(topic.name, p.partitionIndex) else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    out.partitions.append(result)
                    continue
                }
                var offset: Int64?
                switch p.timestamp {
                case -1: offset = log.highWatermark
                case -2: offset = log.logStartOffset
                default: offset = try? log.offset(forTimestamp: p.timestamp)
                }
                result.timestamp = -1
                result.offset = offset ?? -1
                if p.timestamp >= 0 && offset == nil { result.offset = -1 }
                if context.apiVersion == 0 { result.oldStyleOffsets = offset.map { [$0] } ?? [] }
                out.partitions.append(result)
            }
            response.topics.append(out)
        }
        return broker.respond(response, context)
    }
}
