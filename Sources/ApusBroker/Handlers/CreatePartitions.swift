import ApusIO
import ApusStorage
import KafkaProtocol
import KafkaWire

extension Broker {
    /// CreatePartitions v0–3 (on shard 0): grows topics to the count asked. The new partitions'
    /// logs are opened on the disk worker with the topic's configuration, then published; each
    /// new partition goes to the shard the mesh assigns it (the existing ones stay where they are).
    static let createPartitions = HandlerEntry(api: .createPartitions, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try CreatePartitionsRequest.decode(from: &r, version: context.apiVersion)
        var response = CreatePartitionsResponse()
        var growing: [(topic: CatalogTopic, count: Int32)] = []
        for topic in request.topics {
            var result = CreatePartitionsResponse.CreatePartitionsTopicResult(name: topic.name)
            func refuse(_ code: ErrorCode, _ message: String) {
                result.errorCode = code.rawValue
                result.errorMessage = message
            }
            if !broker.authorizedTopic(.alter, topic.name, context) {
                refuse(.topicAuthorizationFailed, "needs ALTER on topic \(topic.name)")
            } else if broker.cluster != nil {
                refuse(.invalidRequest, "adding partitions is not supported in cluster mode yet")
            } else if request.topics.filter({ $0.name == topic.name }).count > 1 {
                refuse(.invalidRequest, "the topic is named more than once")
            } else if broker.creating.contains(topic.name) {
                refuse(.invalidRequest, "topic '\(topic.name)' is being created or growing")
            } else if broker.deleting.contains(topic.name) {
                refuse(.unknownTopicOrPartition, "topic '\(topic.name)' is marked for deletion")
            } else if let current = broker.topic(topic.name) {
                let have = Int32(current.partitionCount)
                let assignments = topic.assignments ?? []
                if topic.count < have {
                    refuse(.invalidPartitions, "topic has \(have) partitions, more than the \(topic.count) asked: partitions cannot be removed")
                } else if topic.count == have {
                    refuse(.invalidPartitions, "topic already has \(have) partitions")
                } else if topic.count > 10_000 {
                    refuse(.invalidPartitions, "number of partitions must be at most 10000")
                } else if !assignments.isEmpty && assignments.count != Int(topic.count - have) {
                    refuse(.invalidReplicaAssignment, "\(assignments.count) assignments for \(topic.count - have) new partitions")
                } else if let problem = broker.assignmentProblem(
                    assignments.enumerated().map { (have + Int32($0.offset), $0.element.brokerIds) }, firstPartition: have) {
                    refuse(.invalidReplicaAssignment, problem)
                } else if !request.validateOnly {
                    growing.append((current, topic.count))
                }
            } else {
                refuse(.unknownTopicOrPartition, "unknown topic \(topic.name)")
            }
            response.results.append(result)
        }
        guard !growing.isEmpty else { return broker.respond(response, context) }
        broker.addPartitions(growing) { broker, failures in
            for (name, error) in failures {
                guard let i = response.results.firstIndex(where: { $0.name == name }) else { continue }
                response.results[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                response.results[i].errorMessage = "\(error)"
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        return .pending
    }

    /// Opens the new partitions' logs on the disk worker, then publishes each grown topic (shard
    /// 0). A topic that fails part-way keeps its partitions and loses the new files; one deleted
    /// meanwhile loses them too.
    func addPartitions(_ growing: [(topic: CatalogTopic, count: Int32)], then done: @escaping (Broker, [String: StorageError]) -> Void) {
        for (topic, _) in growing { creating.insert(topic.name) }
        let logs = self.logs
        let work = growing.map { (name: $0.topic.name, id: $0.topic.id, from: Int32($0.topic.partitionCount), to: $0.count, config: $0.topic.settings.log) }
        mesh.afterDiskWork(on: index, { () -> [UncheckedSendable<Result<[PartitionLog], StorageError>>] in
            work.map { topic in
                var opened: [PartitionLog] = []
                do throws(StorageError) {
                    for p in topic.from..<topic.to {
                        opened.append(try logs.openLog(TopicPartition(topic.name, p), config: topic.config))
                        try logs.writeTopicId(topic.id, of: TopicPartition(topic.name, p))
                    }
                    return UncheckedSendable(.success(opened))
                } catch {
                    for p in topic.from..<topic.to { try? logs.deleteLog(TopicPartition(topic.name, p)) }
                    return UncheckedSendable(.failure(error))
                }
            }
        }, then: { broker, results in
            var failures: [String: StorageError] = [:]
            for ((topic, count), result) in zip(growing, results) {
                broker.creating.remove(topic.name)
                switch result.value {
                case .success(let added):
                    if let current = broker.mesh.catalog.snapshot().topics[topic.name], current.logs.count == topic.logs.count {
                        broker.mesh.catalog.publish(current.extended(added, shards: broker.mesh.count))
                        broker.logger.info("added partitions", metadata: ["topic": "\(topic.name)", "partitions": "\(count)"])
                    } else {
                        let partitions = added.map(\.topicPartition)
                        let logs = broker.logs
                        DiskWorker.shared.run { for tp in partitions { try? logs.deleteLog(tp) } }
                    }
                case .failure(let error):
                    failures[topic.name] = error
                    broker.logger.error("could not add partitions; their files were removed", metadata: ["topic": "\(topic.name)", "error": "\(error)"])
                }
            }
            broker.refreshTopics()
            done(broker, failures)
        })
    }
}
