import ApusClient
import ApusIO
import ApusLab
import ApusServer
import ApusStorage
import ArgumentParser
import Dispatch
import Foundation
import Logging
struct Perf: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The lab: load generators for any Kafka-compatible broker.",
        subcommands: [Produce.self, Consume.self, EndToEnd.self, Sink.self]
    )

    struct Produce: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open-loop produce load with HDR latency histograms (like kafka-producer-perf-test).",
            discussion: "Latency is recorded per batch, weighted by its record count, from the intended send time (coordinated-omission corrected) and from the batch's first send()."
        )

        @OptionGroup var load: LoadOptions

        func run() throws {
            let (workload, config) = try load.produceSide()
            signal(SIGPIPE, SIG_IGN)
            try load.prepareTopic()
            let cpu = HostCPU.sample()
            let result = try ProducePerf.run(workload: workload, config: config, reportInterval: load.reportInterval) { line in print(line) }
            print(ProducePerf.summary(result))
            load.reportMetrics(result.metrics)
            try load.write(run: RunRecord(result, targetRate: workload.throughput), intervals: result.intervals, cpuBefore: cpu,
                           tool: "apus perf produce", workload: workload, producer: config, consumer: nil)
            if result.errors > 0 { throw ExitCode(2) }
        }
    }
    static func props(_ items: [String], flag: String, _ set: (String, String) throws(ClientError) -> Void) throws {
        for item in items {
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("\(flag): expected key=value, got '\(item)'") }
            do {
                try set(String(item[..<eq]), String(item[item.index(after: eq)...]))
            } catch {
                throw ValidationError(error.description)
            }
        }
    }

    struct Consume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Consume every partition of a topic as fast as possible (like kafka-consumer-perf-test).",
            discussion: "One assign-mode consumer (no group); progress every 5 s; MB/sec counts keys + values, GB/s counts the batches fetched."
        )

        @Option(help: "host:port of a broker.") var bootstrap: String
        @Option(help: "Topic to consume.") var topic: String
        @Option(help: "Records to consume.") var numRecords: Int?
        @Option(help: "Seconds to run (instead of --num-records).") var duration: Double?
        @Option(help: "With --num-records: stop after this many seconds without a record.") var timeout: Double = 10
        @Option(parsing: .upToNextOption, help: "Consumer properties: fetch.min.bytes, fetch.max.wait.ms, max.partition.fetch.bytes, fetch.max.bytes, auto.offset.reset (default earliest), check.crcs, receive.thread (default true here), fetches.in.flight.")
        var consumerProps: [String] = []
        @Option(help: "Write a JSON summary here.") var json: String?

        func validate() throws {
            guard (numRecords == nil) != (duration == nil) else { throw ValidationError("give exactly one of --num-records and --duration") }
        }

        func run() throws {
            var config = ConsumerConfig(bootstrap: bootstrap)
            config.receiveThread = true  // receive and walk records on two cores, unless the props say otherwise
            try Perf.props(consumerProps, flag: "--consumer-props") { (k, v) throws(ClientError) in try config.set(k, v) }
            var workload = ConsumePerfWorkload(topic: topic)
            workload.numRecords = numRecords
            workload.durationSeconds = duration
            workload.timeoutSeconds = timeout
            signal(SIGPIPE, SIG_IGN)
            let result = try ConsumePerf.run(workload: workload, config: config) { line in print(line) }
            print(ConsumePerf.summary(result))
            if let json {
                try ConsumePerf.json(result, workload: workload, config: config).write(toFile: json, atomically: true, encoding: .utf8)
            }
            if result.timedOut { throw ExitCode(2) }
        }
    }

    struct EndToEnd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "e2e",
            abstract: "Produce at an open-loop rate and consume concurrently; end-to-end latency per batch.",
            discussion: "The producer stamps the first record of each batch with its send time (monotonic clock, so producer and consumer run on this host); the consumer records now − stamp weighted by the batch's record count. The consumer starts at the log end."
        )

        @OptionGroup var load: LoadOptions
        @Option(parsing: .upToNextOption, help: "Consumer properties (as for perf consume; auto.offset.reset is always latest).")
        var consumerProps: [String] = []

        func run() throws {
            let (workload, pconfig) = try load.produceSide()
            var cconfig = ConsumerConfig(bootstrap: load.bootstrap)
            cconfig.receiveThread = true
            try Perf.props(consumerProps, flag: "--consumer-props") { (k, v) throws(ClientError) in try cconfig.set(k, v) }
            signal(SIGPIPE, SIG_IGN)
            try load.prepareTopic()
            let cpu = HostCPU.sample()
            let result = try EndToEndPerf.run(workload: EndToEndPerfWorkload(produce: workload), producerConfig: pconfig,
                                              consumerConfig: cconfig, reportInterval: load.reportInterval) { line in print(line) }
            print(EndToEndPerf.summary(result))
            load.reportMetrics(result.produced.metrics)
            try load.write(run: RunRecord(result, targetRate: workload.throughput), intervals: result.produced.intervals, cpuBefore: cpu,
                           tool: "apus perf e2e", workload: workload, producer: pconfig, consumer: cconfig)
            if result.produced.errors > 0 || result.consumedRecords < result.produced.records { throw ExitCode(2) }
        }
    }
}

extension Perf {
    struct Sink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A Kafka-speaking sink that acknowledges produce requests without storing or reading their records.",
            discussion: "Point apus perf produce (or any producer) at it to measure the load generator's own ceiling. It answers ApiVersions, Metadata (every topic has --partitions partitions) and Produce; anything else closes the connection."
        )

        @Option(help: "host:port to listen on (port 0 picks a free one).") var listen = "127.0.0.1:9093"
        @Option(help: "Partitions of every topic.") var partitions = 4

        func run() throws {
            guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
                throw ValidationError("--listen: expected host:port, got '\(listen)'")
            }
            let host = String(listen[..<colon])
            let sink = try ProduceSink(host: host, port: port, partitions: partitions)
            print("sink listening on \(host):\(sink.port), \(partitions) partitions per topic; Ctrl-C stops it")
            var last = (records: 0, at: Date())
            while true {
                Thread.sleep(forTimeInterval: 5)
                let now = Date(), records = sink.acceptedRecords
                print(String(format: "%d records accepted, %.1f records/sec, %d produce requests.",
                             records - last.records, Double(records - last.records) / now.timeIntervalSince(last.at), sink.produceRequests))
                last = (records, now)
            }
        }
    }
}

/// The produce side of `perf produce` and `perf e2e`: broker, topic, how much and how fast,
/// producer properties, warm-up, payload, keys, and result files.
struct LoadOptions: ParsableArguments {
    @Option(help: "host:port of a broker.") var bootstrap: String
    @Option(help: "Topic to produce to (auto-created if the broker allows).") var topic: String
    @Option(help: "Records to send over all producers.") var numRecords: Int?
    @Option(help: "Seconds to run (instead of --num-records).") var duration: Double?
    @Option(help: "Bytes per record value (e2e: at least 8, for the latency stamp).") var recordSize = 100
    @Option(parsing: .unconditional, help: "Target records/s over all producers; -1 for the maximum rate.") var throughput: Double = -1
    @Option(parsing: .upToNextOption, help: "Producer properties: acks, batch.size, linger.ms, compression.type, max.in.flight.requests.per.connection, max.request.size, buffer.memory, partitioner, retries, retry.backoff.ms, delivery.timeout.ms, enable.idempotence, metadata.max.age.ms, request.timeout.ms, client.id, send.waits (full-request: wait while the next request is full, the default; buffer-memory: only while buffer.memory is, as Kafka's clients).")
    var producerProps: [String] = []
    @Option(help: "Producer threads, one connection each.") var producers = 1
    @Option(help: "Seconds at the start whose batches are sent but not counted or recorded.") var warmup: Double = 0
    @Option(help: "Record values: random, text:<ratio> (compresses about ratio:1) or file:<path>.") var payload = "random"
    @Option(help: "Record keys: none, uniform:<n> or zipf:<n>,<s> (keyed records use the murmur2 partitioner).") var keys = "none"
    @Option(help: "Write a JSON result document here: config, machine, git revision, totals, errors by code, encoded histograms.") var json: String?
    @Option(help: "Write an HdrHistogram interval log (.hlog) of produce latency from the intended send time here.") var hlog: String?
    @Option(help: "Create the topic with this many partitions first (an existing topic must have as many).") var partitions: Int?
    @Flag(help: "Print the producer's metrics (batches, requests, retries, request latency…) at the end.") var printMetrics = false
    @Option(help: "Milliseconds between progress lines, which are also the --hlog and --json intervals (at least 100; a short one shows a stall that a second's percentiles average away).")
    var reportingInterval = 5000

    var reportInterval: Double { Double(reportingInterval) / 1000 }

    func validate() throws {
        guard (numRecords == nil) != (duration == nil) else { throw ValidationError("give exactly one of --num-records and --duration") }
        guard producers >= 1 else { throw ValidationError("--producers must be at least 1") }
        guard recordSize >= 0 else { throw ValidationError("--record-size must not be negative") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard reportingInterval >= 100 else { throw ValidationError("--reporting-interval must be at least 100 (ms)") }
        if let partitions, partitions < 1 { throw ValidationError("--partitions must be at least 1") }
        _ = try payloadSpec()
        _ = try keySpec()
    }

    func payloadSpec() throws -> PayloadSpec {
        guard let p = PayloadSpec.parse(payload) else { throw ValidationError("--payload: expected random, text:<ratio ≥ 1> or file:<path>, got '\(payload)'") }
        return p
    }

    func keySpec() throws -> KeySpec {
        guard let k = KeySpec.parse(keys) else { throw ValidationError("--keys: expected none, uniform:<n> or zipf:<n>,<s>, got '\(keys)'") }
        return k
    }

    /// The workload and the producer configuration (sticky partitioner for keyless records,
    /// murmur2 for keyed ones, unless --producer-props names one).
    func produceSide() throws -> (ProducePerfWorkload, ProducerConfig) {
        var workload = ProducePerfWorkload(topic: topic)
        workload.numRecords = numRecords
        workload.durationSeconds = duration
        workload.recordSize = recordSize
        workload.throughput = throughput
        workload.producers = producers
        workload.warmupSeconds = warmup
        workload.payload = try payloadSpec()
        workload.keys = try keySpec()
        var config = ProducerConfig(bootstrap: bootstrap)
        config.partitioner = workload.keys == .none ? .sticky : .murmur2
        try Perf.props(producerProps, flag: "--producer-props") { (k, v) throws(ClientError) in try config.set(k, v) }
        return (workload, config)
    }

    /// With --partitions: creates the topic, or checks that it has that many partitions.
    func prepareTopic() throws {
        guard let partitions else { return }
        let connection = try KafkaConnection(bootstrap: bootstrap)
        try connection.createTopic(topic, partitions: partitions, existingIsFine: true)
        let actual = try connection.partitions(of: topic).partitions.count
        guard actual == partitions else { throw ValidationError("--partitions \(partitions): topic \(topic) already exists with \(actual)") }
    }

    func reportMetrics(_ metrics: ProducerMetrics) {
        guard printMetrics else { return }
        print("\nProducer metrics:")
        for (name, value) in metrics.lines { print("  \(name): \(value)") }
    }

    func write(run: RunRecord, intervals: [IntervalHistogram], cpuBefore: (busy: UInt64, iowait: UInt64, steal: UInt64, total: UInt64)?,
               tool: String, workload: ProducePerfWorkload, producer: ProducerConfig?, consumer: ConsumerConfig?) throws {
        var run = run
        run.hostCPU = HostCPU(from: cpuBefore, to: HostCPU.sample())
        run.overTime = intervals.map(IntervalSummary.init)
        if let steal = run.hostCPU?.stealPercent, steal >= 10 {
            print(String(format: "note: the hypervisor took %.0f%% of this host's CPU time during the run (steal); expect noisy numbers.", steal))
        }
        if let json {
            let document = PerfDocument(tool: tool, workload: workload, producerConfig: producer, consumerConfig: consumer, run: run)
            try document.json().write(toFile: json, atomically: true, encoding: .utf8)
        }
        if let hlog {
            let elapsed = intervals.last.map { $0.startSeconds + $0.lengthSeconds } ?? 0
            var writer = HistogramLogWriter(startTimeEpochSeconds: Date().timeIntervalSince1970 - elapsed)
            for i in intervals { writer.append(start: i.startSeconds, length: i.lengthSeconds, histogram: i.histogram, tag: nil) }
            try writer.text.write(toFile: hlog, atomically: true, encoding: .utf8)
        }
    }
}
