import ArgumentParser

struct Apus: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A Kafka-compatible broker and the lab that measures it.",
        subcommands: [Serve.self, Perf.self, Sweep.self, Compare.self, Report.self, TopicCommand.self, GroupCommand.self, BrokerCommand.self, UserCommand.self, AclCommand.self, ClusterCommand.self]
    )
}

Apus.main()
