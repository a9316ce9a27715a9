import KafkaProtocol
import KafkaWire

extension Broker {
    /// AlterConfigs v0–2 (on shard 0): replaces a topic's whole configuration with the values
    /// given (keys left out return to the broker's value), as Kafka's legacy API does. The
    /// broker's own configuration is static: only an empty change is accepted for it.
    static let alterConfigs = HandlerEntry(api: .alterConfigs, versions: 0...2, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try AlterConfigsRequest.decode(from: &r, version: context.apiVersion)
        let alterations = request.resources.map { resource in
            ConfigAlteration(resourceType: resource.resourceType, resourceName: resource.resourceName, changes: resource.configs.count) { _ in
                var overrides: [String: String] = [:]
                for config in resource.configs {
                    guard let value = config.value else { return .failure(.init(.invalidRequest, "null value for \(config.name)")) }
                    guard overrides.updateValue(value, forKey: config.name) == nil else {
                        return .failure(.init(.invalidRequest, "\(config.name) is given twice"))
                    }
                }
                return .success(overrides)
            }
        }
        return broker.alter(alterations, validateOnly: request.validateOnly, context) { results in
            AlterConfigsResponse(responses: results.map {
                .init(errorCode: $0.error.rawValue, errorMessage: $0.message, resourceType: $0.resourceType, resourceName: $0.resourceName)
            })
        }
    }
}

/// Why an alteration of a configuration is refused: Kafka's error code and a message.
struct ConfigRefusal: Error {
    let code: ErrorCode
    let message: String
    init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request: the edit turns a
/// topic's current overrides into its new ones.
struct ConfigAlteration {
    let resourceType: Int8
    let resourceName: String
    /// How many configuration changes the request asks of this resource.
    let changes: Int
    let edit: ([String: String]) -> Result<[String: String], ConfigRefusal>
}

/// The outcome for one resource, in request order.
struct ConfigAlterationResult {
    let resourceType: Int8
    let resourceName: String
    var error: ErrorCode = .none
    var message: String?
}

extension Broker {
    /// Validates every alteration (Kafka's rules: the topic exists, each key is a known topic
    /// configuration with an acceptable value, a resource appears once), then — unless only
    /// validating — stores and publishes the accepted topic changes and answers once they are
    /// on disk.
    func alter<R: KafkaResponse>(
        _ alterations: [ConfigAlteration], validateOnly: Bool, _ context: RequestContext,
        response: @escaping ([ConfigAlterationResult]) -> R
    ) -> HandleOutcome {
        var results: [ConfigAlterationResult] = []
        var changes: [(name: String, overrides: [String: String])] = []
        for alteration in alterations {
            var result = ConfigAlterationResult(resourceType: alteration.resourceType, resourceName: alteration.resourceName)
            let duplicate = alterations.filter { $0.resourceType == alteration.resourceType && $0.resourceName == alteration.resourceName }.count > 1
            switch alteration.resourceType {
            case _ where duplicate:
                result.error = .invalidRequest
                result.message = "the resource is named more than once"
            case ConfigEntry.topicResource where !authorizedTopic(.alterConfigs, alteration.resourceName, context):
                result.error = .topicAuthorizationFailed
                result.message = "needs ALTER_CONFIGS on topic \(alteration.resourceName)"
            case ConfigEntry.brokerResource where denyCluster(.alterConfigs, context) != nil:
                result.error = .clusterAuthorizationFailed
                result.message = "needs ALTER_CONFIGS on the cluster"
            case ConfigEntry.topicResource:
                guard let topic = topic(alteration.resourceName), !deleting.contains(alteration.resourceName) else {
                    result.error = .unknownTopicOrPartition
                    result.message = "unknown topic \(alteration.resourceName)"
                    break
                }
                switch alteration.edit(topic.overrides) {
                case .failure(let refusal):
                    result.error = refusal.code
                    result.message = refusal.message
                case .success(let overrides):
                    if let (name, problem) = TopicConfig.problem(in: overrides.filter { topic.overrides[$0.key] != $0.value }) {
                        result.error = .invalidConfig
                        result.message = "\(name): \(problem)"
                    } else if overrides != topic.overrides {
                        changes.append((topic.name, overrides))
                    }
                }
            case ConfigEntry.brokerResource where alteration.resourceName.isEmpty || alteration.resourceName == String(config.nodeId):
                if alteration.changes > 0 {
                    result.error = .invalidRequest
                    result.message = "the broker's configuration is static in Apus: set it in its configuration file and restart"
                }
            case ConfigEntry.brokerResource:
                result.error = .invalidRequest
                result.message = "this is broker \(config.nodeId)"
            default:
                result.error = .invalidRequest
                result.message = "resource type \(alteration.resourceType) cannot be altered"
            }
            results.append(result)
        }
        guard !validateOnly, !changes.isEmpty else { return respond(response(results), context) }
        // Each topic that could not be stored is answered KAFKA_STORAGE_ERROR; the rest succeed.
        let answer = { (broker: Broker, failures: [String: String]) in
            for (name, message) in failures {
                guard let i = results.firstIndex(where: { $0.resourceType == ConfigEntry.topicResource && $0.resourceName == name }) else { continue }
                results[i].error = .kafkaStorageError
                results[i].message = message
            }
            broker.answerLater(broker.frame(response(results), context), context)
        }
        if cluster != nil {
            // Cluster mode: the configuration lives in the topic's record; every broker applies
            // it when its view shows the change (reconcileWithCluster).
            updateClusterTopicConfigs(changes) { broker, failures in answer(broker, failures.mapValues { "cluster metadata: \($0)" }) }
        } else {
            reconfigureTopics(changes) { broker, failures in answer(broker, failures.mapValues { "\($0)" }) }
        }
        return .pending
    }
}
