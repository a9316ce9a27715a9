import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeProducers v0: the idempotent producers each partition knows (id, epoch, last
    /// sequence), from the shard owning it (rebuilt from the log the first time, as for
    /// Produce). No transactions: no coordinator epoch or open transaction.
    static let describeProducers = HandlerEntry(api: .describeProducers, versions: 0...0) { broker, context, r throws(WireError) in
        let request = try DescribeProducersRequest.decode(from: &r, version: context.apiVersion)
        let (items, slots) = broker.resolve(request.topics.map { ($0.name, $0.partitionIndexes.map { ($0, ()) }) },
                                            allowed: { broker.authorizedTopic(.read, $0, context) })
        return broker.scatter(context, items, owner: \.owner, work: { owner, share in
            share.map { item -> [DescribeProducersResponse.ProducerState]? in
                guard let log = owner.log(item.topic, item.partition) else { return nil }
                if owner.producerStates[log.topicPartition] == nil { owner.producerStates[log.topicPartition] = .rebuild(from: log) }
                return owner.producerStates[log.topicPartition]!.producers.sorted { $0.key < $1.key }.map { id, entry in
                    .init(producerId: id, producerEpoch: Int32(entry.epoch), lastSequence: entry.batches.last?.lastSequence ?? -1,
                          lastTimestamp: -1, coordinatorEpoch: -1, currentTxnStartOffset: -1)
                }
            }
        }, gathered: { broker, states in
            var response = DescribeProducersResponse()
            for (topic, topicSlots) in zip(request.topics, slots) {
                var out = DescribeProducersResponse.TopicResponse(name: topic.name)
                for (p, slot) in zip(topic.partitionIndexes, topicSlots) {
                    var result = DescribeProducersResponse.PartitionResponse(partitionIndex: p)
                    if let producers = slot.flatMap({ states[$0] }) {
                        result.activeProducers = producers
                    } else {
                        result.errorCode = (broker.authorizedTopic(.read, topic.name, context) ? ErrorCode.unknownTopicOrPartition : .topicAuthorizationFailed).rawValue
                    }
                    out.partitions.append(result)
                }
                response.topics.append(out)
            }
            return broker.frame(response, context)
        })
    }
}
