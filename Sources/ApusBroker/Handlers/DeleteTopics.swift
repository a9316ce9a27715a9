import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteTopics v0–3 (on shard 0): unpublishes the topics at once, has every owning shard
    /// take its logs offline, then deletes their files and answers. Until then the names are
    /// "marked for deletion": creating them again is refused, so a new topic never shares a
    /// directory with a log an owner still holds.
    static let deleteTopics = HandlerEntry(api: .deleteTopics, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DeleteTopicsRequest.decode(from: &r, version: context.apiVersion)
        var response = DeleteTopicsResponse()
        var doomed: [CatalogTopic] = []
        for name in request.topicNames {
            var result = DeleteTopicsResponse.DeletableTopicResult(name: name)
            if !broker.deleting.contains(name), let topic = broker.mesh.catalog.remove(name) {
                broker.deleting.insert(name)
                doomed.append(topic)
            } else {
                result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
            }
            response.responses.append(result)
        }
        let partitions = doomed.flatMap { topic in (0..<Int32(topic.partitionCount)).map { (topic, $0) } }
        return broker.scatter(context, partitions, owner: { $0.0.owners[Int($0.1)] }, work: { owner, share in
            share.map { owner.dropLog($0.0.logs[Int($0.1)]) }
        }, gathered: { broker, _ in
            // The files go on the disk worker; the answer comes once they are gone (until then
            // the names stay reserved in `deleting`).
            let partitions = doomed.map { topic in topic.logs.map(\.topicPartition) }
            let names = doomed.map(\.name)
            let logs = broker.logs
            broker.mesh.afterDiskWork(on: broker.index, {
                zip(names, partitions).map { name, topic in
                    try? logs.writeTopicConfig(name, [:])
                    return topic.filter { tp in (try? logs.deleteLog(tp)) == nil }
                }
            }, then: { broker, failures in
                for (topic, failed) in zip(doomed, failures) {
                    for tp in failed {
                        if let i = response.responses.firstIndex(where: { $0.name == topic.name }) {
                            response.responses[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                        }
                        broker.logger.error("could not delete a partition's files", metadata: ["partition": "\(tp)"])
                    }
                    broker.deleting.remove(topic.name)
                    broker.logger.info("deleted topic", metadata: ["topic": "\(topic.name)"])
                }
                broker.answerLater(broker.frame(response, context), context)
            })
            return nil
        })
    }
}
