import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteTopics v0–3: removes the topics' logs and files.
    static let deleteTopics = HandlerEntry(api: .deleteTopics, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DeleteTopicsRequest.decode(from: &r, version: context.apiVersion)
        var response = DeleteTopicsResponse()
        for name in request.topicNames {
            var result = DeleteTopicsResponse.DeletableTopicResult(name: name)
            if broker.topics[name] == nil {
                result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
            } else {
                do {
                    try broker.deleteTopic(name)
                } catch {
                    result.errorCode = ErrorCode.kafkaStorageError.rawValue
                }
            }
            response.responses.append(result)
        }
        return broker.respond(response, context)
    }
}
