import ApusCluster
import ArgumentParser
import Foundation

/// `apus cluster status`: the brokers registered in a cluster's etcd metadata, its controller, and
/// every partition's leader, epoch, replicas and in-sync replicas (under-replicated and offline
/// ones marked).
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "A cluster's metadata on etcd.", subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Live brokers (registered under a lease), the controller, and each partition's replicas.")
        @Option(help: "etcd endpoints, as cluster.metadata: etcd://host:port[,host:port] (or host:port).") var etcd = "etcd://127.0.0.1:2379"
        @Option(help: "The cluster's key prefix (cluster.prefix).") var prefix = "/apus"
        @Flag(help: "Print JSON instead of a table.") var json = false

        struct Report: Encodable {
            struct Broker: Encodable { var nodeId: Int32; var listeners: [String]; var controller: Bool }
            struct Partition: Encodable {
                var topic: String, partition: Int, leader: Int32, epoch: Int32, replicas: [Int32], isr: [Int32]
                var underReplicated: Bool, offline: Bool
            }
            var brokers: [Broker]
            var controller: Int32?
            var revision: Int64
            var partitions: [Partition]
            var underReplicated: Int
            var offline: Int
        }

        func run() throws {
            let endpoints = (etcd.hasPrefix("etcd://") ? String(etcd.dropFirst(7)) : etcd).split(separator: ",").map(String.init)
            let view = try ClusterKeys(prefix: prefix).read(try EtcdClient(endpoints: endpoints))
            var report = Report(brokers: view.brokers.map { b in
                .init(nodeId: b.nodeId, listeners: b.listeners.map { "\($0.name)://\($0.host):\($0.port)" }, controller: b.nodeId == view.controller)
            }, controller: view.controller, revision: view.revision, partitions: [], underReplicated: 0, offline: 0)
            let live = Set(view.brokers.map(\.nodeId))
            for (name, record) in view.topics.sorted(by: { $0.key < $1.key }) {
                let replicas = record.partitionReplicas, isrs = record.inSyncReplicas, epochs = record.leaderEpochs
                for (p, leader) in record.leaders.enumerated() {
                    let isr = isrs[p]
                    report.partitions.append(Report.Partition(topic: name, partition: p, leader: leader, epoch: epochs[p], replicas: replicas[p], isr: isr,
                                                   underReplicated: isr.filter(live.contains).count < replicas[p].count, offline: !live.contains(leader)))
                }
            }
            report.underReplicated = report.partitions.filter { $0.underReplicated }.count
            report.offline = report.partitions.filter { $0.offline }.count
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(AdminOptions.columns([["NODE", "CONTROLLER", "LISTENERS"]]
                    + report.brokers.map { [String($0.nodeId), $0.controller ? "yes" : "", $0.listeners.joined(separator: ",")] }), terminator: "")
                guard !report.partitions.isEmpty else { return }
                print("")
                var rows = [["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "STATE"]]
                for p in report.partitions {
                    let state = p.offline ? "offline" : p.underReplicated ? "under-replicated" : ""
                    let replicas = p.replicas.map { String($0) }.joined(separator: ","), isr = p.isr.map { String($0) }.joined(separator: ",")
                    rows.append([p.topic, String(p.partition), String(p.leader), String(p.epoch), replicas, isr, state])
                }
                print(AdminOptions.columns(rows), terminator: "")
                print("\(report.partitions.count) partitions, \(report.underReplicated) under-replicated, \(report.offline) offline")
            }
        }
    }
}
