import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteTopics v0–6 (on shard 0; v6 by name or id): unpublishes the topics at once, has every owning shard
    /// take its logs offline, then deletes their files and answers. Until then the names are
    /// "marked for deletion": creating them again is refused, so a new topic never shares a
    /// directory with a log an owner still holds.
    static let deleteTopics = HandlerEntry(api: .deleteTopics, versions: 0...6, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DeleteTopicsRequest.decode(from: &r, version: context.apiVersion)
        var response = DeleteTopicsResponse()
        var doomed: [CatalogTopic] = []
        var inCluster: [String] = []
        // v6 names topics by name or by id.
        let named: [(name: String?, id: KafkaUUID)] = context.apiVersion >= 6 ? request.topics.map { ($0.name, $0.topicId) } : request.topicNames.map { ($0, .zero) }
        for (requestedName, id) in named {
            let name = requestedName ?? broker.topics.values.first { $0.id == id }?.name ?? broker.cluster?.topics.first { $0.value.id == id }?.key
            var result = DeleteTopicsResponse.DeletableTopicResult(name: name, topicId: id)
            if let name, !broker.authorizedTopic(.delete, name, context) {
                result.errorCode = ErrorCode.topicAuthorizationFailed.rawValue
                result.errorMessage = "needs DELETE on topic \(name)"
            } else if name == Broker.offsetsTopic {
                result.errorCode = ErrorCode.invalidTopic.rawValue
                result.errorMessage = "\(Broker.offsetsTopic) holds the groups' committed offsets and cannot be deleted"
            } else if let name, let cluster = broker.cluster, let entry = cluster.topics[name] {
                inCluster.append(name)  // cluster mode: it leaves the cluster's metadata (below)
                result.topicId = entry.id
            } else if let name, broker.cluster == nil, !broker.deleting.contains(name), let topic = broker.mesh.catalog.remove(name) {
                broker.deleting.insert(name)
                doomed.append(topic)
                result.topicId = topic.id
            } else if name == nil {
                result.errorCode = ErrorCode.unknownTopicId.rawValue
                result.errorMessage = "no topic has id \(id.base64URL)"
            } else {
                result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                result.errorMessage = "unknown topic \(name!)"
            }
            response.responses.append(result)
        }
        if !inCluster.isEmpty {
            // The topics leave the cluster's metadata first; every broker (this one included)
            // then deletes its logs when its view drops them.
            broker.deleteClusterTopics(inCluster) { broker, _, failure in
                if let failure {
                    for i in response.responses.indices where response.responses[i].errorCode == 0 {
                        response.responses[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                        response.responses[i].errorMessage = "cluster metadata: \(failure)"
                    }
                }
                broker.answerLater(broker.frame(response, context), context)
            }
            return .pending
        }
        guard !doomed.isEmpty else { return broker.respond(response, context) }
        broker.deleteTopicsLocally(doomed.map(\.name), removed: doomed) { broker, failed in
            for name in failed {
                if let i = response.responses.firstIndex(where: { $0.name == name }) {
                    response.responses[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                }
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        return .pending
    }

    /// Deletes topics' logs and files here (shard 0): each owner drops its logs, then the disk
    /// worker removes the files; `done` gets the topics whose files could not all be removed.
    /// `removed`: the catalog entries already taken out (else they are taken out here).
    func deleteTopicsLocally(_ names: [String], removed: [CatalogTopic]? = nil, then done: @escaping (Broker, Set<String>) -> Void) {
        let doomed = removed ?? names.compactMap { name -> CatalogTopic? in
            guard !deleting.contains(name), let topic = mesh.catalog.remove(name) else { return nil }
            deleting.insert(name)
            return topic
        }
        let partitions = doomed.flatMap { topic in (0..<Int32(topic.partitionCount)).map { (topic, $0) } }
        let context = RequestContext(connection: -1, sequence: 0, apiKey: DeleteTopicsRequest.apiKey, apiVersion: 0, correlationId: 0,
                                     clientId: nil, nowMs: 0, responseHeaderVersion: 0, session: Broker.plaintextSession)
        _ = scatter(context, partitions, owner: { $0.0.owners[Int($0.1)] }, work: { owner, share in
            share.map { owner.dropLog($0.0.logs[Int($0.1)]) }
        }, gathered: { broker, _ in
            // The files go on the disk worker; `done` runs once they are gone (until then the
            // names stay reserved in `deleting`).
            let partitions = doomed.map { topic in topic.logs.map(\.topicPartition) }
            let names = doomed.map(\.name)
            let logs = broker.logs
            broker.mesh.afterDiskWork(on: broker.index, {
                zip(names, partitions).map { name, topic in
                    try? logs.writeTopicConfig(name, [:])
                    return topic.filter { tp in (try? logs.deleteLog(tp)) == nil }
                }
            }, then: { broker, failures in
                var failed = Set<String>()
                for (topic, failedPartitions) in zip(doomed, failures) {
                    for tp in failedPartitions {
                        failed.insert(topic.name)
                        broker.logger.error("could not delete a partition's files", metadata: ["partition": "\(tp)"])
                    }
                    broker.deleting.remove(topic.name)
                    broker.logger.info("deleted topic", metadata: ["topic": "\(topic.name)"])
                }
                done(broker, failed)
            })
            return nil
        })
    }
}