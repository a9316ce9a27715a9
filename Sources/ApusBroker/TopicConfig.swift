import ApusStorage

/// What a topic's configuration means to the broker once resolved: the log settings its
/// partitions run with and the topic-level rules the Produce handler applies.
public struct TopicSettings: Sendable, Equatable {
    public var log: LogConfig
    /// `max.message.bytes`: the largest record batch accepted.
    public var maxMessageBytes: Int
    /// `message.timestamp.type=LogAppendTime`: batches are stamped with the broker's time.
    public var logAppendTime = false
    /// `min.insync.replicas`: an acks=all produce needs this many in-sync replicas (one here).
    public var minInsyncReplicas = 1
}

/// A topic-level configuration key: how a value is checked, applied and reported, with
/// Kafka's names, types and limits. The one table (``TopicConfig/keys``) serves CreateTopics,
/// AlterConfigs, IncrementalAlterConfigs and DescribeConfigs.
struct TopicConfigKey: Sendable {
    let name: String
    /// Kafka's ConfigType code (``ConfigEntry``).
    let type: Int8
    /// The broker-level key whose value it takes when the topic does not set it (Kafka's
    /// synonym), if there is one.
    let brokerKey: String?
    /// The value the broker's configuration gives it.
    let brokerValue: @Sendable (BrokerConfig) -> String
    /// Why `value` is refused, or nil when it is accepted.
    let check: @Sendable (String) -> String?
    /// Applies an accepted value.
    let apply: @Sendable (String, inout TopicSettings) -> Void
    /// Reported but not settable: Apus does not implement what it would change.
    var readOnly = false
}

enum TopicConfig {
    /// The topic-level keys Apus accepts or reports, sorted by name.
    static let keys: [TopicConfigKey] = [
        TopicConfigKey(name: "cleanup.policy", type: ConfigEntry.list, brokerKey: "log.cleanup.policy", brokerValue: { _ in "delete" }, check: { value in
            let policies = value.split(separator: ",").map { $0.trimmingSpaces() }
            if policies.contains("compact") { return "log compaction is not implemented in Apus; cleanup.policy must be delete" }
            return policies == ["delete"] ? nil : "cleanup.policy must be delete (or compact, which Apus does not implement)"
        }, apply: { _, _ in }),
        TopicConfigKey(name: "compression.type", type: ConfigEntry.string, brokerKey: "compression.type", brokerValue: { _ in "producer" }, check: { value in
            value == "producer" ? nil : "Apus keeps batches as the producer compressed them: compression.type must be producer"
        }, apply: { _, _ in }),
        long("flush.messages", brokerKey: "log.flush.interval.messages", min: 1, { $0.log.flushMessages }, { $1.log.flushMessages = $0 }),
        long("flush.ms", brokerKey: "log.flush.interval.ms", min: 0, { $0.log.flushMs }, { $1.log.flushMs = $0 }),
        long("index.interval.bytes", brokerKey: "log.index.interval.bytes", min: 0, max: Int64(Int32.max), type: ConfigEntry.int,
             { Int64($0.log.indexIntervalBytes) }, { $1.log.indexIntervalBytes = Int($0) }),
        long("max.message.bytes", brokerKey: "message.max.bytes", min: 0, max: Int64(Int32.max), type: ConfigEntry.int,
             { Int64($0.messageMaxBytes) }, { $1.maxMessageBytes = Int($0) }),
        TopicConfigKey(name: "message.timestamp.type", type: ConfigEntry.string, brokerKey: "log.message.timestamp.type",
                       brokerValue: { _ in "CreateTime" }, check: { value in
            ["CreateTime", "LogAppendTime"].contains(value) ? nil : "message.timestamp.type must be CreateTime or LogAppendTime"
        }, apply: { value, settings in settings.logAppendTime = value == "LogAppendTime" }),
        long("min.insync.replicas", brokerKey: "min.insync.replicas", min: 1, max: Int64(Int32.max), type: ConfigEntry.int,
             { _ in 1 }, { $1.minInsyncReplicas = Int($0) }),
        TopicConfigKey(name: "preallocate", type: ConfigEntry.boolean, brokerKey: "log.preallocate", brokerValue: { _ in "false" },
                       check: { _ in nil }, apply: { _, _ in }, readOnly: true),
        long("retention.bytes", brokerKey: "log.retention.bytes", min: .min, { $0.log.retentionBytes }, { $1.log.retentionBytes = $0 }),
        long("retention.ms", brokerKey: "log.retention.ms", min: -1, { $0.log.retentionMs }, { $1.log.retentionMs = $0 }),
        // Kafka 4.0's minimum (KIP-1030): smaller segments only cost descriptors and rolls.
        long("segment.bytes", brokerKey: "log.segment.bytes", min: 1 << 20, max: Int64(Int32.max), type: ConfigEntry.int,
             { $0.log.segmentBytes }, { $1.log.segmentBytes = $0 }),
        TopicConfigKey(name: "segment.index.bytes", type: ConfigEntry.int, brokerKey: "log.index.size.max.bytes",
                       brokerValue: { _ in "10485760" }, check: { _ in nil }, apply: { _, _ in }, readOnly: true),
        long("segment.ms", brokerKey: "log.roll.ms", min: 1, { $0.log.segmentMs }, { $1.log.segmentMs = $0 }),
        TopicConfigKey(name: "unclean.leader.election.enable", type: ConfigEntry.boolean, brokerKey: "unclean.leader.election.enable",
                       brokerValue: { _ in "false" }, check: { value in
            ["true", "false"].contains(value.lowercased()) ? nil : "unclean.leader.election.enable must be true or false"
        }, apply: { _, _ in }),
    ]

    static let byName: [String: TopicConfigKey] = Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })

    /// A numeric key stored as Int64 in the settings.
    private static func long(
        _ name: String, brokerKey: String, min: Int64, max: Int64 = .max, type: Int8 = ConfigEntry.long,
        _ get: @escaping @Sendable (BrokerConfig) -> Int64, _ set: @escaping @Sendable (Int64, inout TopicSettings) -> Void
    ) -> TopicConfigKey {
        TopicConfigKey(name: name, type: type, brokerKey: brokerKey, brokerValue: { String(get($0)) }, check: { value in
            guard let n = Int64(value) else { return "\(name) must be a whole number" }
            return (min...max).contains(n) ? nil : "\(name) must be between \(min) and \(max)"
        }, apply: { value, settings in if let n = Int64(value) { set(n, &settings) } })
    }

    /// Why the override `name = value` is refused, or nil. Kafka answers a refusal with
    /// INVALID_CONFIG.
    static func problem(_ name: String, _ value: String?) -> String? {
        guard let key = byName[name] else { return "unknown topic config name: \(name)" }
        if key.readOnly { return "\(name) cannot be set in Apus" }
        guard let value else { return nil }  // removing an override is always allowed
        if value.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) { return "a configuration value is one line" }
        return key.check(value)
    }

    /// The first refused override of `overrides`, as (key, reason).
    static func problem(in overrides: [String: String]) -> (String, String)? {
        for name in overrides.keys.sorted() {
            if let reason = problem(name, overrides[name]) { return (name, reason) }
        }
        return nil
    }

    /// What a topic with `overrides` runs with on a broker configured as `broker`.
    static func settings(_ overrides: [String: String], broker: BrokerConfig) -> TopicSettings {
        var settings = TopicSettings(log: broker.log, maxMessageBytes: broker.messageMaxBytes)
        for (name, value) in overrides { byName[name]?.apply(value, &settings) }
        return settings
    }

    /// The topic's configuration as DescribeConfigs reports it: every key with its value and
    /// source (dynamic topic, static broker or default), and Kafka's synonyms.
    static func entries(_ overrides: [String: String], broker: BrokerConfig) -> [ConfigEntry] {
        let defaults = BrokerConfig()
        return keys.map { key in
            let brokerValue = key.brokerValue(broker)
            let defaultValue = key.brokerValue(defaults)
            var synonyms: [ConfigEntry.Synonym] = []
            if let value = overrides[key.name] { synonyms.append(.init(name: key.name, value: value, source: ConfigEntry.dynamicTopicSource)) }
            if let brokerKey = key.brokerKey {
                if brokerValue != defaultValue { synonyms.append(.init(name: brokerKey, value: brokerValue, source: ConfigEntry.staticBrokerSource)) }
                synonyms.append(.init(name: brokerKey, value: defaultValue, source: ConfigEntry.defaultSource))
            }
            let source: Int8 = overrides[key.name] != nil ? ConfigEntry.dynamicTopicSource
                : brokerValue != defaultValue ? ConfigEntry.staticBrokerSource : ConfigEntry.defaultSource
            return ConfigEntry(name: key.name, value: overrides[key.name] ?? brokerValue, type: key.type, source: source,
                               readOnly: key.readOnly, synonyms: synonyms)
        }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
