import ApusClient
import ArgumentParser
import Foundation
import KafkaProtocol

/// Options every admin command takes: the cluster to ask, and the output form.
struct AdminOptions: ParsableArguments {
    @Option(help: "host:port of any broker of the cluster (Apus or any Kafka-compatible one).") var bootstrap = "127.0.0.1:9092"
    @Flag(help: "Print JSON instead of a table.") var json = false

    func admin() throws -> KafkaAdmin {
        do { return try KafkaAdmin(bootstrap: bootstrap) } catch { throw ValidationError("\(bootstrap): \(error)") }
    }

    /// Prints `value` as JSON, or `text()` (tables made with ``columns(_:)``).
    func output<T: Encodable>(_ value: T, text: () -> String) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else {
            print(text(), terminator: "")
        }
    }

    /// Rows padded into columns (the first row is the header).
    static func columns(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: width)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}

struct TopicCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "List, describe, create and delete topics (a Kafka client of any broker).",
        subcommands: [List.self, Describe.self, Create.self, Alter.self, Delete.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Topic names.")
        @OptionGroup var options: AdminOptions
        @Flag(help: "Include internal topics (__consumer_offsets).") var includeInternal = false

        func run() throws {
            let names = try options.admin().listTopics(includeInternal: includeInternal)
            try options.output(names) { AdminOptions.columns([["TOPIC"]] + names.map { [$0] }) }
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Partitions with their leader, replicas, in-sync replicas and start/end offsets.")
        @OptionGroup var options: AdminOptions
        @Argument(help: "Topics (default: every topic).") var topics: [String] = []
        @Flag(help: "Also show each topic's configuration (DescribeConfigs) with its source.") var configs = false

        func run() throws {
            let admin = try options.admin()
            var described = try admin.describeTopics(topics.isEmpty ? nil : topics)
            if configs {
                for i in described.indices { described[i].configs = try admin.describeConfigs(topic: described[i].name) }
            }
            try options.output(described) {
                var rows = [["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "START", "END", "RECORDS"]]
                for t in described {
                    for p in t.partitions {
                        rows.append([t.name, String(p.partition), String(p.leader), p.replicas.map(String.init).joined(separator: ","),
                                     p.isr.map(String.init).joined(separator: ","), String(p.startOffset), String(p.endOffset),
                                     String(max(0, p.endOffset - p.startOffset))])
                    }
                }
                var text = AdminOptions.columns(rows)
                for t in described {
                    guard let configs = t.configs else { continue }
                    text += "\n" + AdminOptions.columns([["TOPIC", "CONFIG", "VALUE", "SOURCE"]] + configs.map { [t.name, $0.name, $0.value ?? "-", $0.source] })
                }
                return text
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.")
        @OptionGroup var options: AdminOptions
        @Argument var topic: String
        @Option(help: "Partitions.") var partitions = 1
        @Option(name: .customLong("config"), help: "A topic configuration key=value (repeatable), e.g. retention.ms=86400000.")
        var configs: [String] = []

        func run() throws {
            let admin = try options.admin()
            try admin.createTopic(topic, partitions: partitions, configs: try keyValues(configs))
            try options.output(["created": topic]) { "created \(topic) with \(partitions) partition(s)\n" }
        }
    }

    struct Alter: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a topic's configuration or add partitions.",
            discussion: "Keys not named keep their values (IncrementalAlterConfigs); --partitions grows the topic (CreatePartitions).")
        @OptionGroup var options: AdminOptions
        @Argument var topic: String
        @Option(name: .customLong("set"), help: "Override a configuration key=value (repeatable).") var sets: [String] = []
        @Option(name: .customLong("delete"), help: "Return a key to the broker's value (repeatable).") var deletes: [String] = []
        @Option(help: "Grow the topic to this many partitions.") var partitions: Int?

        func validate() throws {
            guard !sets.isEmpty || !deletes.isEmpty || partitions != nil else {
                throw ValidationError("nothing to change: give --set, --delete or --partitions")
            }
        }

        func run() throws {
            let admin = try options.admin()
            let set = try keyValues(sets)
            if !set.isEmpty || !deletes.isEmpty { try admin.alterTopicConfigs(topic, set: set, delete: deletes) }
            if let partitions { try admin.addPartitions(topic, total: partitions) }
            try options.output(["altered": topic]) { "altered \(topic)\n" }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete topics.")
        @OptionGroup var options: AdminOptions
        @Argument var topics: [String]

        func run() throws {
            try options.admin().deleteTopics(topics)
            try options.output(["deleted": topics]) { "deleted \(topics.joined(separator: ", "))\n" }
        }
    }
}

struct GroupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "List and describe consumer groups: members, assignments, committed offsets and lag (a Kafka client of any broker).",
        subcommands: [List.self, Describe.self, Delete.self, ResetOffsets.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every group of every broker.")
        @OptionGroup var options: AdminOptions

        func run() throws {
            let groups = try options.admin().listGroups()
            try options.output(groups) { AdminOptions.columns([["GROUP", "TYPE", "STATE"]] + groups.map { [$0.groupId, $0.protocolType, $0.state] }) }
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A group's state, members and, per partition, committed offset, log end offset and lag.")
        @OptionGroup var options: AdminOptions
        @Argument var group: String

        func run() throws {
            let info = try options.admin().describeGroup(group)
            try options.output(info) {
                var rows = [["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]]
                for o in info.offsets {
                    rows.append([info.groupId, o.topic, String(o.partition), String(o.committed), String(o.endOffset), String(o.lag), o.memberId ?? "-"])
                }
                let members = info.members.map { m in
                    "  \(m.memberId) (client \(m.clientId)\(m.groupInstanceId.map { ", instance \($0)" } ?? "")): "
                        + (m.assignment.isEmpty ? "nothing assigned" : m.assignment.sorted { $0.key < $1.key }
                            .map { "\($0.key) \($0.value.map(String.init).joined(separator: ","))" }.joined(separator: "; "))
                }
                let summary = "group \(info.groupId): \(info.state), \(info.members.count) member(s), protocol \(info.protocolName.isEmpty ? "-" : info.protocolName), coordinator \(info.coordinator)"
                return ([summary] + members).joined(separator: "\n") + "\n\n" + AdminOptions.columns(rows)
            }
        }
    }
}

extension GroupCommand {
    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete groups that have no members, with their committed offsets.")
        @OptionGroup var options: AdminOptions
        @Argument var groups: [String]

        func run() throws {
            try options.admin().deleteGroups(groups)
            try options.output(["deleted": groups]) { "deleted \(groups.joined(separator: ", "))\n" }
        }
    }

    struct ResetOffsets: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Move a group's committed offsets for a topic (the group must have no members).",
            discussion: "Prints the plan; --execute commits it. As kafka-consumer-groups.sh --reset-offsets.")
        @OptionGroup var options: AdminOptions
        @Argument var group: String
        @Option(help: "The topic whose partitions are reset.") var topic: String
        @Flag(help: "To each partition's log start.") var toEarliest = false
        @Flag(help: "To each partition's log end.") var toLatest = false
        @Option(help: "To this offset (kept within each partition's log).") var toOffset: Int64?
        @Option(help: "To the first record at or after this time, in milliseconds since the epoch.") var toTimestamp: Int64?
        @Flag(help: "Commit the new offsets (otherwise only print them).") var execute = false

        func validate() throws {
            let chosen = [toEarliest, toLatest, toOffset != nil, toTimestamp != nil].filter { $0 }.count
            guard chosen == 1 else { throw ValidationError("give exactly one of --to-earliest, --to-latest, --to-offset, --to-timestamp") }
        }

        func run() throws {
            let target: KafkaAdmin.OffsetReset = toEarliest ? .earliest : toLatest ? .latest
                : toOffset.map { .offset($0) } ?? .timestamp(toTimestamp!)
            let plan = try options.admin().resetOffsets(group, topic: topic, to: target, execute: execute)
            try options.output(plan) {
                AdminOptions.columns([["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]] + plan.map { [group, $0.topic, String($0.partition), String($0.offset)] })
                    + (execute ? "" : "(not committed: add --execute)\n")
            }
        }
    }
}

struct BrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "broker", abstract: "The cluster's brokers and controller.", subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cluster id, controller, brokers and their topic counts.")
        @OptionGroup var options: AdminOptions

        struct Report: Encodable {
            struct Broker: Encodable { var nodeId: Int32; var host: String; var port: Int32; var leaderOf: Int }
            var clusterId: String?
            var controllerId: Int32
            var brokers: [Broker]
            var topics: Int
            var partitions: Int
        }

        func run() throws {
            let metadata = try options.admin().metadata(topics: nil)
            let partitions = metadata.topics.flatMap(\.partitions)
            let report = Report(
                clusterId: metadata.clusterId, controllerId: metadata.controllerId,
                brokers: metadata.brokers.sorted { $0.nodeId < $1.nodeId }.map { b in
                    Report.Broker(nodeId: b.nodeId, host: b.host, port: b.port, leaderOf: partitions.filter { $0.leaderId == b.nodeId }.count)
                },
                topics: metadata.topics.count, partitions: partitions.count)
            try options.output(report) {
                "cluster \(report.clusterId ?? "-"), controller \(report.controllerId), \(report.topics) topic(s), \(report.partitions) partition(s)\n\n"
                    + AdminOptions.columns([["BROKER", "HOST", "PORT", "LEADER OF"]]
                        + report.brokers.map { [String($0.nodeId), $0.host, String($0.port), String($0.leaderOf)] })
            }
        }
    }
}

/// Parses `key=value` arguments.
func keyValues(_ pairs: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw ValidationError("expected key=value, got '\(pair)'")
        }
        out[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    return out
}
