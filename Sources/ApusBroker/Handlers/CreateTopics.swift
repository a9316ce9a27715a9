import KafkaProtocol
import KafkaWire

extension Broker {
    /// CreateTopics v0–4: validates names, partition counts and replication factor (only 1
    /// replica exists on a single broker).
    static let createTopics = HandlerEntry(api: .createTopics, versions: 0...4, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try CreateTopicsRequest.decode(from: &r, version: context.apiVersion)
        var response = CreateTopicsResponse()
        var toCreate: [(name: String, partitions: Int32)] = []
        for topic in request.topics {
            var result = CreateTopicsResponse.CreatableTopicResult(name: topic.name)
            let partitions = topic.numPartitions == -1 ? broker.config.numPartitions : topic.numPartitions
            if !Broker.isValidTopicName(topic.name) {
                result.errorCode = ErrorCode.invalidTopic.rawValue
                result.errorMessage = "topic names are 1–249 characters of [a-zA-Z0-9._-]"
            } else if broker.deleting.contains(topic.name) || broker.creating.contains(topic.name) || toCreate.contains(where: { $0.name == topic.name }) {
                result.errorCode = ErrorCode.topicAlreadyExists.rawValue
                result.errorMessage = broker.deleting.contains(topic.name) ? "topic '\(topic.name)' is marked for deletion" : "topic '\(topic.name)' is being created"
            } else if broker.topics[topic.name] != nil {
                result.errorCode = ErrorCode.topicAlreadyExists.rawValue
                result.errorMessage = "topic '\(topic.name)' already exists"
            } else if !topic.assignments.isEmpty {
                result.errorCode = ErrorCode.invalidRequest.rawValue
                result.errorMessage = "manual replica assignment is not supported"
            } else if partitions <= 0 || partitions > 10_000 {
                result.errorCode = ErrorCode.invalidPartitions.rawValue
                result.errorMessage = "number of partitions must be between 1 and 10000"
            } else if topic.replicationFactor != -1 && topic.replicationFactor != 1 {
                result.errorCode = ErrorCode.invalidReplicationFactor.rawValue
                result.errorMessage = "replication factor must be 1 on a single broker"
            } else if !request.validateOnly {
                toCreate.append((topic.name, partitions))
            }
            if result.errorCode == 0 {
                result.numPartitions = partitions
                result.replicationFactor = 1
            }
            response.topics.append(result)
        }
        guard !toCreate.isEmpty else { return broker.respond(response, context) }
        broker.createTopics(toCreate) { broker, failures in
            for (name, error) in failures {
                guard let i = response.topics.firstIndex(where: { $0.name == name }) else { continue }
                response.topics[i].errorCode = ErrorCode.kafkaStorageError.rawValue
                response.topics[i].errorMessage = "\(error)"
                response.topics[i].numPartitions = -1
                response.topics[i].replicationFactor = -1
            }
            broker.answerLater(broker.frame(response, context), context)
        }
        return .pending
    }
}
