import ApusCluster
import ArgumentParser
import Foundation

/// `apus cluster status`: the brokers registered in a cluster's etcd metadata and its controller.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "A cluster's metadata on etcd.", subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Live brokers (registered under a lease) and the controller.")
        @Option(help: "etcd endpoints, as cluster.metadata: etcd://host:port[,host:port] (or host:port).") var etcd = "etcd://127.0.0.1:2379"
        @Option(help: "The cluster's key prefix (cluster.prefix).") var prefix = "/apus"
        @Flag(help: "Print JSON instead of a table.") var json = false

        struct Report: Encodable {
            struct Broker: Encodable { var nodeId: Int32; var listeners: [String]; var controller: Bool }
            var brokers: [Broker]
            var controller: Int32?
            var revision: Int64
        }

        func run() throws {
            let endpoints = (etcd.hasPrefix("etcd://") ? String(etcd.dropFirst(7)) : etcd).split(separator: ",").map(String.init)
            let view = try ClusterKeys(prefix: prefix).read(try EtcdClient(endpoints: endpoints))
            let report = Report(brokers: view.brokers.map { b in
                .init(nodeId: b.nodeId, listeners: b.listeners.map { "\($0.name)://\($0.host):\($0.port)" }, controller: b.nodeId == view.controller)
            }, controller: view.controller, revision: view.revision)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(AdminOptions.columns([["NODE", "CONTROLLER", "LISTENERS"]]
                    + report.brokers.map { [String($0.nodeId), $0.controller ? "yes" : "", $0.listeners.joined(separator: ",")] }), terminator: "")
            }
        }
    }
}
