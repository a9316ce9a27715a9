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
            for topic in doomed {
                for (p, log) in topic.logs.enumerated() {
                    do {
                        try broker.logs.deleteLog(log.topicPartition)
                    } catch {
                        if let i = response.responses.firstIndex(where: { $0.name == topic.name }) {
                            response.responses[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                        }
                        broker.logger.error("could not delete a partition's files", metadata: ["partition": "\(topic.name)-\(p)", "error": "\(error)"])
                    }
                }
                broker.deleting.remove(topic.name)
                broker.logger.info("deleted topic", metadata: ["topic": "\(topic.name)"])
            }
            return broker.frame(response, context)
        })
    }
}
