import ApusStorage
import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeConfigs v0...4 for topics and this broker. A topic value reports
    /// `DYNAMIC_TOPIC_CONFIG` when the topic sets it, else `STATIC_BROKER_CONFIG` when the broker's
    /// configuration set it, else `DEFAULT_CONFIG`; synonyms (v1+) list each level.
    static let describeConfigs = HandlerEntry(api: .describeConfigs, versions: 0...4) { broker, context, r throws(WireError) in
        let request = try DescribeConfigsRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeConfigsResponse()
        for resource in request.resources {
            var result = DescribeConfigsResponse.DescribeConfigsResult(resourceType: resource.resourceType, resourceName: resource.resourceName)
            let entries: [ConfigEntry]
            switch resource.resourceType {
            case ConfigEntry.topicResource where !broker.authorizedTopic(.describeConfigs, resource.resourceName, context),
                 ConfigEntry.brokerResource where broker.denyCluster(.describeConfigs, context) != nil:
                let topic = resource.resourceType == ConfigEntry.topicResource
                result.errorCode = (topic ? ErrorCode.topicAuthorizationFailed : .clusterAuthorizationFailed).rawValue
                result.errorMessage = "needs DESCRIBE_CONFIGS on \(topic ? "topic \(resource.resourceName)" : "the cluster")"
                response.results.append(result)
                continue
            case ConfigEntry.topicResource:
                guard let topic = broker.topic(resource.resourceName) else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    result.errorMessage = "unknown topic \(resource.resourceName)"
                    response.results.append(result)
                    continue
                }
                entries = TopicConfig.entries(topic.overrides, broker: broker.config)
            case ConfigEntry.brokerResource:
                guard resource.resourceName.isEmpty || resource.resourceName == String(broker.config.nodeId) else {
                    result.errorCode = ErrorCode.invalidRequest.rawValue
                    result.errorMessage = "this is broker \(broker.config.nodeId)"
                    response.results.append(result)
                    continue
                }
                entries = ConfigEntry.broker(broker.config)
            default:
                result.errorCode = ErrorCode.invalidRequest.rawValue
                result.errorMessage = "resource type \(resource.resourceType) is not described"
                response.results.append(result)
                continue
            }
            let wanted = resource.configurationKeys.map(Set.init)
            result.configs = entries.filter { wanted?.contains($0.name) ?? true }.map { e in
                .init(name: e.name, value: e.value, readOnly: e.readOnly, isDefault: e.isDefault, configSource: e.source,
                      isSensitive: false,
                      synonyms: request.includeSynonyms ? e.synonyms.map { .init(name: $0.name, value: $0.value, source: $0.source) } : [],
                      configType: e.type, documentation: nil)
            }
            response.results.append(result)
        }
        return broker.respond(response, context)
    }
}

/// One configuration value as DescribeConfigs reports it.
struct ConfigEntry {
    static let topicResource: Int8 = 2
    static let brokerResource: Int8 = 4
    /// Kafka's ConfigSource codes.
    static let dynamicTopicSource: Int8 = 1
    static let staticBrokerSource: Int8 = 4
    static let defaultSource: Int8 = 5
    /// Kafka's ConfigType codes.
    static let boolean: Int8 = 1, string: Int8 = 2, int: Int8 = 3, long: Int8 = 5, list: Int8 = 7

    struct Synonym {
        let name: String
        let value: String
        let source: Int8
    }

    let name: String
    let value: String
    let type: Int8
    let source: Int8
    var readOnly = false
    var synonyms: [Synonym] = []

    var isDefault: Bool { source == Self.defaultSource }

    /// A broker-level value: `STATIC_BROKER_CONFIG` when the configuration file set it, else
    /// `DEFAULT_CONFIG`. Read-only: there is no dynamic broker configuration.
    init<T: Equatable & CustomStringConvertible>(_ name: String, _ value: T, default d: T, _ type: Int8) {
        self.init(name: name, value: value.description, type: type, source: value == d ? Self.defaultSource : Self.staticBrokerSource, readOnly: true)
    }

    init(name: String, value: String, type: Int8, source: Int8, readOnly: Bool, synonyms: [Synonym] = []) {
        self.name = name
        self.value = value
        self.type = type
        self.source = source
        self.readOnly = readOnly
        self.synonyms = synonyms
    }

    /// This broker's configuration under Kafka's broker-level names.
    static func broker(_ c: BrokerConfig) -> [ConfigEntry] {
        let log = c.log, d = LogConfig(), b = BrokerConfig()
        return [
            ConfigEntry("auto.create.topics.enable", c.autoCreateTopics, default: b.autoCreateTopics, boolean),
            ConfigEntry("broker.id", c.nodeId, default: b.nodeId, int),
            ConfigEntry("log.flush.interval.messages", log.flushMessages, default: d.flushMessages, long),
            ConfigEntry("log.flush.interval.ms", log.flushMs, default: d.flushMs, long),
            ConfigEntry("log.index.interval.bytes", log.indexIntervalBytes, default: d.indexIntervalBytes, int),
            ConfigEntry("log.retention.bytes", log.retentionBytes, default: d.retentionBytes, long),
            ConfigEntry("log.retention.ms", log.retentionMs, default: d.retentionMs, long),
            ConfigEntry("log.roll.ms", log.segmentMs, default: d.segmentMs, long),
            ConfigEntry("log.segment.bytes", log.segmentBytes, default: d.segmentBytes, int),
            ConfigEntry("message.max.bytes", c.messageMaxBytes, default: b.messageMaxBytes, int),
            ConfigEntry("node.id", c.nodeId, default: b.nodeId, int),
            ConfigEntry("num.partitions", c.numPartitions, default: b.numPartitions, int),
        ]
    }
}
