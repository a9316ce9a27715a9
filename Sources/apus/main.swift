import ApusIO
import ApusServer
import ApusStorage
import ArgumentParser
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct Apus: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A Kafka-compatible broker and the lab that measures it.",
        subcommands: [Serve.self]
    )
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker in the foreground (logs to stderr).")

    @Option(help: "Where partition logs live.") var dataDir = "./apus-data"
    @Option(help: "host:port to listen on (port 0 picks a free one).") var listen = "127.0.0.1:9092"
    @Option(help: "Append path: auto (io_uring if it works, else posix), uring, posix.") var ioBackend = "auto"
    @Option(help: "page-cache, fsync-on-ack-all or fsync-always.") var durability = "page-cache"
    @Option(help: "Partitions of an auto-created topic (num.partitions).") var numPartitions: Int32 = 1
    @Option(help: "segment.bytes of new segments.") var segmentBytes: Int64 = 1 << 30
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func run() throws {
        var config = ServerConfig()
        config.dataDirectory = dataDir
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw ValidationError("--listen: expected host:port, got '\(listen)'") }
        config.listenHost = String(parts[0])
        config.listenPort = port
        guard let backend = IOBackendKind(rawValue: ioBackend) else { throw ValidationError("--io-backend: expected auto, uring or posix") }
        config.ioBackend = backend
        guard let mode = Durability(rawValue: durability) else { throw ValidationError("--durability: expected page-cache, fsync-on-ack-all or fsync-always") }
        config.broker.log.durability = mode
        guard numPartitions > 0 else { throw ValidationError("--num-partitions must be positive") }
        config.broker.numPartitions = numPartitions
        config.broker.log.segmentBytes = segmentBytes
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "apus")
        let server = try Server(config: config, logger: logger)
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { server.requestStop() }
            source.resume()
            sources.append(source)
        }
        try server.run()
        _ = sources
    }
}

Apus.main()
