import ApusStorage
import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeConfigs v0...4 for topics and this broker. Every topic has the broker's log
    /// settings (per-topic overrides do not exist yet); a value reports `DEFAULT_CONFIG` when it is
    /// Apus's default and `STATIC_BROKER_CONFIG` when the broker's configuration set it.
    static let describeConfigs = HandlerEntry(api: .describeConfigs, versions: 0...4) { broker, context, r throws(WireError) in
        let request = try DescribeConfigsRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeConfigsResponse()
        for resource in request.resources {
            var result = DescribeConfigsResponse.DescribeConfigsResult(resourceType: resource.resourceType, resourceName: resource.resourceName)
            let entries: [ConfigEntry]
            switch resource.resourceType {
            case ConfigEntry.topicResource:
                guard broker.topics[resource.resourceName] != nil else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    result.errorMessage = "unknown topic \(resource.resourceName)"
                    response.results.append(result)
                    continue
                }
                entries = ConfigEntry.topic(broker.config)
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
                .init(name: e.name, value: e.value, readOnly: e.readOnly, isDefault: e.isDefault, configSource: e.isDefault ? ConfigEntry.defaultSource : ConfigEntry.staticBrokerSource,
                      isSensitive: false, synonyms: [], configType: e.type, documentation: nil)
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
    static let staticBrokerSource: Int8 = 4
    static let defaultSource: Int8 = 5
    /// Kafka's ConfigType codes.
    static let boolean: Int8 = 1, string: Int8 = 2, int: Int8 = 3, long: Int8 = 5

    let name: String
    let value: String
    let type: Int8
    let isDefault: Bool
    var readOnly = false

    init<T: Equatable & CustomStringConvertible>(_ name: String, _ value: T, default d: T, _ type: Int8, readOnly: Bool = false) {
        self.name = name
        self.value = value.description
        self.type = type
        self.isDefault = value == d
        self.readOnly = readOnly
    }

    /// A topic's configuration: the broker's log settings under Kafka's topic-level names.
    static func topic(_ c: BrokerConfig) -> [ConfigEntry] {
        let log = c.log, d = LogConfig(), b = BrokerConfig()
        return [
            ConfigEntry("cleanup.policy", "delete", default: "delete", string),
            ConfigEntry("compression.type", "producer", default: "producer", string),
            ConfigEntry("flush.messages", log.flushMessages, default: d.flushMessages, long),
            ConfigEntry("flush.ms", log.flushMs, default: d.flushMs, long),
            ConfigEntry("index.interval.bytes", log.indexIntervalBytes, default: d.indexIntervalBytes, int),
            ConfigEntry("max.message.bytes", c.messageMaxBytes, default: b.messageMaxBytes, int),
            ConfigEntry("message.timestamp.type", "CreateTime", default: "CreateTime", string),
            ConfigEntry("min.insync.replicas", 1, default: 1, int),
            ConfigEntry("retention.bytes", log.retentionBytes, default: d.retentionBytes, long),
            ConfigEntry("retention.ms", log.retentionMs, default: d.retentionMs, long),
            ConfigEntry("segment.bytes", log.segmentBytes, default: d.segmentBytes, int),
            ConfigEntry("segment.ms", log.segmentMs, default: d.segmentMs, long),
            ConfigEntry("unclean.leader.election.enable", false, default: false, boolean),
        ]
    }

    /// This broker's configuration under Kafka's broker-level names (read-only: no dynamic
    /// broker configuration yet).
    static func broker(_ c: BrokerConfig) -> [ConfigEntry] {
        let log = c.log, d = LogConfig(), b = BrokerConfig()
        return [
            ConfigEntry("auto.create.topics.enable", c.autoCreateTopics, default: b.autoCreateTopics, boolean, readOnly: true),
            ConfigEntry("broker.id", c.nodeId, default: b.nodeId, int, readOnly: true),
            ConfigEntry("log.flush.interval.messages", log.flushMessages, default: d.flushMessages, long, readOnly: true),
            ConfigEntry("log.flush.interval.ms", log.flushMs, default: d.flushMs, long, readOnly: true),
            ConfigEntry("log.index.interval.bytes", log.indexIntervalBytes, default: d.indexIntervalBytes, int, readOnly: true),
            ConfigEntry("log.retention.bytes", log.retentionBytes, default: d.retentionBytes, long, readOnly: true),
            ConfigEntry("log.retention.ms", log.retentionMs, default: d.retentionMs, long, readOnly: true),
            ConfigEntry("log.roll.ms", log.segmentMs, default: d.segmentMs, long, readOnly: true),
            ConfigEntry("log.segment.bytes", log.segmentBytes, default: d.segmentBytes, int, readOnly: true),
            ConfigEntry("message.max.bytes", c.messageMaxBytes, default: b.messageMaxBytes, int, readOnly: true),
            ConfigEntry("num.partitions", c.numPartitions, default: b.numPartitions, int, readOnly: true),
        ]
    }
}
