import ApusBroker
import ApusConfig
import ApusIO
import ApusStorage
import Foundation
import KafkaProtocol
import Synchronization

/// One metric family the endpoint exports. ``MetricsCatalog/all`` is the one table of them:
/// the exposition takes each family's type and help from it, and docs/metrics.md is generated
/// from it (`apus serve --print-metrics`).
struct MetricInfo: Sendable {
    enum Kind: String, Sendable { case counter, gauge, histogram }
    /// The family name; counters are exposed with `_total` appended.
    let name: String
    let kind: Kind
    let labels: [String]
    let help: String
    /// Kafka's (or the Prometheus convention's) well-known equivalent.
    let kafka: String
}

enum MetricsCatalog {
    static let all: [MetricInfo] = [
        .init(name: "apus_requests", kind: .counter, labels: ["request"], help: "Requests handled, per API.",
              kafka: "kafka.network:type=RequestMetrics,name=RequestsPerSec,request=*"),
        .init(name: "apus_request_errors", kind: .counter, labels: ["request", "error"],
              help: "Error codes in responses, per API and code; each occurrence counts (a Produce response with two failed partitions counts two).",
              kafka: "kafka.network:type=RequestMetrics,name=ErrorsPerSec,request=*,error=*"),
        .init(name: "apus_request_duration_seconds", kind: .histogram, labels: ["request"],
              help: "From the start of the loop turn that read a request until its response is ready to send: waiting behind the turn's earlier work, handling, forwarding to other shards, the group commit and any sync it waits for (sending excluded).",
              kafka: "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=*"),
        .init(name: "apus_request_queue_seconds", kind: .histogram, labels: ["request"],
              help: "The part spent before the handler ran: from the start of the loop turn that read the request (its poller wait returning) behind the turn's jobs from other shards and the connections read before it.",
              kafka: "kafka.network:type=RequestMetrics,name=RequestQueueTimeMs,request=*"),
        .init(name: "apus_request_handler_seconds", kind: .histogram, labels: ["request"],
              help: "The part of a request's time spent in its handler on the shard that read it (decoding, validating, staging; for forwarded requests, handing them on).",
              kafka: "kafka.network:type=RequestMetrics,name=LocalTimeMs,request=*"),
        .init(name: "apus_request_wait_seconds", kind: .histogram, labels: ["request"],
              help: "The part spent after the handler until the response was ready: the group commit, a sync (acks=all under a syncing durability), other shards, a long poll.",
              kafka: "kafka.network:type=RequestMetrics,name=RemoteTimeMs,request=*"),
        .init(name: "apus_request_send_seconds", kind: .histogram, labels: ["request"],
              help: "From the response being ready until its last byte was written to the socket (behind earlier responses on the connection, then the socket's room).",
              kafka: "kafka.network:type=RequestMetrics,name=ResponseQueueTimeMs + ResponseSendTimeMs,request=*"),
        .init(name: "apus_topic_bytes_in", kind: .counter, labels: ["topic"], help: "Bytes appended to the topic's logs.",
              kafka: "kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec,topic=*"),
        .init(name: "apus_topic_bytes_out", kind: .counter, labels: ["topic"], help: "Bytes of the topic's logs handed out to fetches.",
              kafka: "kafka.server:type=BrokerTopicMetrics,name=BytesOutPerSec,topic=*"),
        .init(name: "apus_topic_messages_in", kind: .counter, labels: ["topic"], help: "Records appended to the topic's logs.",
              kafka: "kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec,topic=*"),
        .init(name: "apus_log_start_offset", kind: .gauge, labels: ["topic", "partition"], help: "The partition's first offset.",
              kafka: "kafka.log:type=Log,name=LogStartOffset"),
        .init(name: "apus_log_end_offset", kind: .gauge, labels: ["topic", "partition"], help: "The partition's log end offset (its high watermark on one broker).",
              kafka: "kafka.log:type=Log,name=LogEndOffset"),
        .init(name: "apus_log_size_bytes", kind: .gauge, labels: ["topic", "partition"], help: "Bytes in the partition's segments.",
              kafka: "kafka.log:type=Log,name=Size"),
        .init(name: "apus_log_segments", kind: .gauge, labels: ["topic", "partition"], help: "Segments of the partition.",
              kafka: "kafka.log:type=Log,name=NumLogSegments"),
        .init(name: "apus_log_high_watermark", kind: .gauge, labels: ["topic", "partition"],
              help: "What consumers may read: the lowest log end among the in-sync replicas (the log end with one replica).",
              kafka: "kafka.cluster:type=Partition,name=LastStableOffsetLag (Kafka has no high watermark gauge; ListOffsets returns it)"),
        .init(name: "apus_under_replicated_partitions", kind: .gauge, labels: [],
              help: "Replicated partitions this broker leads whose in-sync replicas are fewer than their replicas.",
              kafka: "kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions"),
        .init(name: "apus_partition_in_sync_replicas", kind: .gauge, labels: ["topic", "partition"],
              help: "In-sync replicas of a replicated partition this broker leads.",
              kafka: "kafka.cluster:type=Partition,name=InSyncReplicasCount"),
        .init(name: "apus_replica_lag_records", kind: .gauge, labels: ["topic", "partition", "replica"],
              help: "For each follower of a partition this broker leads: the leader's log end minus the follower's last fetch offset.",
              kafka: "kafka.server:type=FetcherLagMetrics,name=ConsumerLag (measured on the follower)"),
        .init(name: "apus_isr_shrinks", kind: .counter, labels: [], help: "Followers this broker's leaders removed from the in-sync replicas.",
              kafka: "kafka.server:type=ReplicaManager,name=IsrShrinksPerSec"),
        .init(name: "apus_isr_expands", kind: .counter, labels: [], help: "Followers this broker's leaders added back to the in-sync replicas.",
              kafka: "kafka.server:type=ReplicaManager,name=IsrExpandsPerSec"),
        .init(name: "apus_log_retention_deleted_segments", kind: .counter, labels: ["topic"], help: "Segments deleted by retention since start.",
              kafka: "(kafka.log:type=LogCleanerManager has no equivalent; Kafka logs each deletion)"),
        .init(name: "apus_consumer_group_committed_offset", kind: .gauge, labels: ["group", "topic", "partition"], help: "The group's committed offset.",
              kafka: "kafka_consumergroup_current_offset (kafka-exporter)"),
        .init(name: "apus_consumer_group_lag", kind: .gauge, labels: ["group", "topic", "partition"],
              help: "Log end offset minus the group's committed offset (0 when the log was truncated below it).",
              kafka: "kafka_consumergroup_lag (kafka-exporter)"),
        .init(name: "apus_consumer_group_members", kind: .gauge, labels: ["group"], help: "Members of the group.",
              kafka: "kafka_consumergroup_members (kafka-exporter)"),
        .init(name: "apus_consumer_group_state", kind: .gauge, labels: ["group", "state"], help: "1 for the group's state (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).",
              kafka: "kafka.coordinator.group:type=GroupMetadataManager,name=NumGroups* (counts per state)"),
        .init(name: "apus_connections", kind: .gauge, labels: ["shard"], help: "Client connections open.",
              kafka: "kafka.server:type=socket-server-metrics,name=connection-count"),
        .init(name: "apus_connections_accepted", kind: .counter, labels: ["shard"], help: "Client connections accepted.",
              kafka: "kafka.server:type=socket-server-metrics,name=connection-creation-total"),
        .init(name: "apus_connections_closed", kind: .counter, labels: ["shard"], help: "Client connections closed (by the client or the broker).",
              kafka: "kafka.server:type=socket-server-metrics,name=connection-close-total"),
        .init(name: "apus_connections_rejected", kind: .counter, labels: ["shard"],
              help: "Connections the broker closed for a reason: a malformed or oversized frame, an unknown API or version, a failed read or write.",
              kafka: "kafka.network:type=SocketServer (failed-authentication/invalid request closes)"),
        .init(name: "apus_append_write_duration_seconds", kind: .histogram, labels: ["backend"], help: "How long each group commit's writes took (one io_uring submission or the pwritev calls).",
              kafka: "kafka.log:type=LogFlushStats,name=LogFlushRateAndTimeMs (closest)"),
        .init(name: "apus_append_sync_duration_seconds", kind: .histogram, labels: ["backend"], help: "How long each sync of a partition's segments took, from start to the last fdatasync's completion.",
              kafka: "kafka.log:type=LogFlushStats,name=LogFlushRateAndTimeMs"),
        .init(name: "apus_shard_busy_seconds", kind: .counter, labels: ["shard"], help: "Time the shard's thread spent in loop turns rather than waiting for I/O (its rate is the busy ratio).",
              kafka: "kafka.network:type=SocketServer,name=NetworkProcessorAvgIdlePercent (inverse)"),
        .init(name: "apus_shard_turns", kind: .counter, labels: ["shard"], help: "Loop turns of the shard.", kafka: ""),
        .init(name: "apus_shard_turn_duration_seconds", kind: .histogram, labels: ["shard"],
              help: "How long each loop turn took, from its poller wait returning to the next wait: what a request arriving during a turn waits before the next turn reads it (turns under loop.stall.warn.ms included).",
              kafka: "(Redpanda: vectorized_reactor_utilization, closest)"),
        .init(name: "apus_shard_stalls", kind: .counter, labels: ["shard", "cause"],
              help: "Turns longer than loop.stall.warn.ms, by cause: on-cpu (the work), blocked (slept in a call), preempted (runnable, CPU taken), stolen (hypervisor or interrupts).",
              kafka: "(Redpanda: vectorized_reactor_stalls)"),
        .init(name: "apus_shard_longest_stall_seconds", kind: .gauge, labels: ["shard"], help: "The shard's longest turn since start.", kafka: ""),
        .init(name: "apus_shard_jobs", kind: .counter, labels: ["shard"], help: "Jobs the shard ran for other shards (forwarded requests, scattered parts, answers).", kafka: ""),
        .init(name: "apus_shard_job_delay_seconds", kind: .histogram, labels: ["shard"],
              help: "How long the oldest job in the shard's inbox had waited when a turn took it: the shard's wake-up and the rest of the turn it arrived in (requests forwarded between shards wait this, and no turn length shows it).",
              kafka: ""),
        .init(name: "apus_shard_queued_jobs", kind: .gauge, labels: ["shard"], help: "Jobs waiting in the shard's inbox: the queue depth between shards.",
              kafka: "kafka.network:type=RequestChannel,name=RequestQueueSize (closest)"),
        .init(name: "apus_shard_disk_waits", kind: .counter, labels: [], help: "Calls that may wait on the disk made on a shard thread outside the declared exceptions (should stay 0).", kafka: ""),
        .init(name: "apus_shard_declared_disk_waits", kind: .counter, labels: ["reason"], help: "Declared exceptions of the shard-thread contract taken (a roll without a spare, a sync with nowhere else to go, a failed write cut back): allowed, but each may have waited on the disk.", kafka: ""),
        .init(name: "apus_recovery_seconds", kind: .gauge, labels: [], help: "How long opening the data directory took at the last start (recovery included).", kafka: ""),
        .init(name: "apus_ready", kind: .gauge, labels: [], help: "1 when the broker has recovered, listens and every shard is turning (as /health/ready).", kafka: ""),
        .init(name: "process_cpu_seconds", kind: .counter, labels: [], help: "User and system CPU time of the process.", kafka: "(Prometheus process collector)"),
        .init(name: "process_resident_memory_bytes", kind: .gauge, labels: [], help: "Resident memory of the process.", kafka: "(Prometheus process collector)"),
        .init(name: "process_open_fds", kind: .gauge, labels: [], help: "Open file descriptors.", kafka: "(Prometheus process collector)"),
        .init(name: "process_max_fds", kind: .gauge, labels: [], help: "The open-files limit (soft).", kafka: "(Prometheus process collector)"),
        .init(name: "process_start_time_seconds", kind: .gauge, labels: [], help: "Start time of the process since the Unix epoch.", kafka: "(Prometheus process collector)"),
    ]

    static let byName: [String: MetricInfo] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// docs/metrics.md's table (`apus serve --print-metrics`).
    static var markdownTable: String {
        var out = "| metric | type | labels | meaning | Kafka's equivalent |\n|---|---|---|---|---|\n"
        for m in all {
            let exposed = m.kind == .counter ? m.name + "_total" : m.name
            out += "| `\(exposed)` | \(m.kind.rawValue) | \(m.labels.map { "`\($0)`" }.joined(separator: ", ")) | \(m.help) | \(m.kafka.isEmpty ? "–" : m.kafka) |\n"
        }
        return out
    }
}

/// What a shard's loop and connections count for the metrics endpoint: plain integers on
/// its own thread.
struct ShardStats: Sendable {
    var accepted: UInt64 = 0
    var closed: UInt64 = 0
    var rejected: UInt64 = 0
    /// Request latency per API key: in all (arrival → response ready), and its parts.
    var requestLatency = Self.perAPI
    var queueLatency = Self.perAPI
    var handlerLatency = Self.perAPI
    var waitLatency = Self.perAPI
    var sendLatency = Self.perAPI

    static let perAPI = [LatencyBuckets](repeating: LatencyBuckets(), count: BrokerCounters.apiKeyLimit)

    /// A response became ready: `queueNs` before the handler, `handlerNs` in it, `waitNs` after it.
    @inline(__always)
    mutating func requestReady(_ apiKey: Int16, queueNs: UInt64, handlerNs: UInt64, waitNs: UInt64) {
        guard apiKey >= 0 && Int(apiKey) < requestLatency.count else { return }
        requestLatency[Int(apiKey)].record(ns: queueNs &+ handlerNs &+ waitNs)
        queueLatency[Int(apiKey)].record(ns: queueNs)
        handlerLatency[Int(apiKey)].record(ns: handlerNs)
        waitLatency[Int(apiKey)].record(ns: waitNs)
    }

    /// A response's last byte went out `ns` after it was ready.
    @inline(__always)
    mutating func responseSent(_ apiKey: Int16, ns: UInt64) {
        guard apiKey >= 0 && Int(apiKey) < sendLatency.count else { return }
        sendLatency[Int(apiKey)].record(ns: ns)
    }
}

/// A shard's ``ShardStats``, shared by its loop and its connections (one thread).
final class ShardCounters {
    var stats = ShardStats()
}

/// Where shards leave their statistics once a second and the metrics endpoint reads them:
/// the only place the two meet (one lock per shard per second, none on the hot path).
final class MetricsHub: Sendable {
    struct ShardSample: Sendable {
        var atMs: Int64
        var broker: BrokerSnapshot
        var stats: ShardStats
        var connectionsOpen: Int
        var turns: UInt64
        var busyNs: UInt64
        var turnLatency: LatencyBuckets
    }

    private let samples: Mutex<[ShardSample?]>
    private let listening = Atomic<Bool>(false)
    private let recoveryNs = Atomic<UInt64>(0)
    let startTimeSeconds = Date().timeIntervalSince1970

    init(shards: Int) {
        samples = Mutex(Array(repeating: nil, count: shards))
    }

    func publish(_ shard: Int, _ sample: ShardSample) {
        samples.withLock { $0[shard] = sample }
    }

    var all: [ShardSample?] { samples.withLock { $0 } }

    func setRecovery(ns: UInt64) { recoveryNs.store(ns, ordering: .relaxed) }
    var recoverySeconds: Double { Double(recoveryNs.load(ordering: .relaxed)) / 1e9 }

    func setListening(_ on: Bool) { listening.store(on, ordering: .releasing) }

    /// Ready: listening (recovery is over by then), and every shard published within the
    /// last `staleMs` (a shard stuck in a turn stops publishing).
    func isReady(nowMs: Int64 = Sys.wallClockMs(), staleMs: Int64 = 5_000) -> Bool {
        guard listening.load(ordering: .acquiring) else { return false }
        return all.allSatisfy { sample in sample.map { nowMs - $0.atMs <= staleMs } ?? false }
    }
}

/// The Prometheus text exposition (version 0.0.4), or OpenMetrics 1.0 on request.
struct MetricsExposition {
    let openMetrics: Bool
    private(set) var text = ""

    static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"
    static let openMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    init(openMetrics: Bool) { self.openMetrics = openMetrics }

    /// Starts a family: its HELP and TYPE lines.
    mutating func family(_ name: String) {
        guard let m = MetricsCatalog.byName[name] else { preconditionFailure("\(name) is not in MetricsCatalog") }
        let declared = m.kind == .counter && !openMetrics ? name + "_total" : name
        text += "# HELP \(declared) \(m.help)\n# TYPE \(declared) \(m.kind.rawValue)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.number(value) + "\n"
    }

    mutating func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        sample(name + "_total", labels, Double(value))
    }

    mutating func histogram(_ name: String, _ labels: [(String, String)], _ h: LatencyBuckets) {
        var cumulative: UInt64 = 0
        for (i, bound) in LatencyBuckets.boundsSeconds.enumerated() {
            cumulative &+= h.counts[i]
            sample(name + "_bucket", labels + [("le", Self.number(bound))], Double(cumulative))
        }
        sample(name + "_bucket", labels + [("le", "+Inf")], Double(h.count))
        sample(name + "_sum", labels, Double(h.sumNs) / 1e9)
        sample(name + "_count", labels, Double(h.count))
    }

    mutating func finish() {
        if openMetrics { text += "# EOF\n" }
    }

    static func escape(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return s }
        return s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

extension MetricsExposition {
    /// Every family of ``MetricsCatalog`` from the shards' latest samples, summed over shards.
    static func render(hub: MetricsHub, stalls: StallReport.Snapshot, process: ProcessStats, openMetrics: Bool) -> String {
        var e = MetricsExposition(openMetrics: openMetrics)
        let samples = hub.all.compactMap { $0 }
        let apiName: (Int) -> String = { key in ApiKey(rawValue: Int16(key)).map { "\($0.name)" } ?? "api\(key)" }

        // Requests.
        var requests = [UInt64](repeating: 0, count: BrokerCounters.apiKeyLimit)
        var errors: [Int32: UInt64] = [:]
        var latency = ShardStats.perAPI, queue = ShardStats.perAPI, handler = ShardStats.perAPI, wait = ShardStats.perAPI, send = ShardStats.perAPI
        for s in samples {
            for i in requests.indices {
                requests[i] &+= s.broker.counters.requests[i]
                latency[i].add(s.stats.requestLatency[i])
                queue[i].add(s.stats.queueLatency[i])
                handler[i].add(s.stats.handlerLatency[i])
                wait[i].add(s.stats.waitLatency[i])
                send[i].add(s.stats.sendLatency[i])
            }
            for (k, v) in s.broker.counters.errors { errors[k, default: 0] &+= v }
        }
        e.family("apus_requests")
        for (key, n) in requests.enumerated() where n > 0 { e.counter("apus_requests", [("request", apiName(key))], n) }
        e.family("apus_request_errors")
        for (k, n) in errors.sorted(by: { $0.key < $1.key }) {
            e.counter("apus_request_errors", [("request", apiName(Int(k >> 16))), ("error", errorName(Int16(truncatingIfNeeded: k & 0xFFFF)))], n)
        }
        e.family("apus_request_duration_seconds")
        for (key, h) in latency.enumerated() where h.count > 0 { e.histogram("apus_request_duration_seconds", [("request", apiName(key))], h) }
        for (name, parts) in [("apus_request_queue_seconds", queue), ("apus_request_handler_seconds", handler), ("apus_request_wait_seconds", wait), ("apus_request_send_seconds", send)] {
            e.family(name)
            for (key, h) in parts.enumerated() where h.count > 0 { e.histogram(name, [("request", apiName(key))], h) }
        }

        // Topics and partitions.
        let partitions = samples.flatMap(\.broker.partitions).sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        var byTopic: [String: LogTraffic] = [:]
        for p in partitions { byTopic[p.topic, default: LogTraffic()].add(p.traffic) }
        let topics = byTopic.sorted { $0.key < $1.key }
        for (name, value) in [("apus_topic_bytes_in", \LogTraffic.bytesIn), ("apus_topic_bytes_out", \.bytesOut),
                              ("apus_topic_messages_in", \.recordsIn), ("apus_log_retention_deleted_segments", \.segmentsDeleted)] {
            e.family(name)
            for (topic, t) in topics { e.counter(name, [("topic", topic)], t[keyPath: value]) }
        }
        // Consumers read up to the high watermark: lag is measured against it.
        let endOffsets = Dictionary(partitions.map { (TopicPartition($0.topic, $0.partition), $0.highWatermark) }, uniquingKeysWith: { a, _ in a })
        for (name, value) in [("apus_log_start_offset", { (p: PartitionStats) in Double(p.logStartOffset) }),
                              ("apus_log_end_offset", { Double($0.logEndOffset) }),
                              ("apus_log_size_bytes", { Double($0.sizeBytes) }),
                              ("apus_log_segments", { Double($0.segments) }),
                              ("apus_log_high_watermark", { Double($0.highWatermark) })] {
            e.family(name)
            for p in partitions { e.sample(name, [("topic", p.topic), ("partition", String(p.partition))], value(p)) }
        }

        // Replication (cluster mode): partitions this broker leads.
        let led = partitions.compactMap { p in p.leading.map { (p, $0) } }
        e.family("apus_under_replicated_partitions")
        e.sample("apus_under_replicated_partitions", [], Double(led.filter { $0.1.inSync < $0.1.replicas }.count))
        e.family("apus_partition_in_sync_replicas")
        for (p, r) in led { e.sample("apus_partition_in_sync_replicas", [("topic", p.topic), ("partition", String(p.partition))], Double(r.inSync)) }
        e.family("apus_replica_lag_records")
        for (p, r) in led {
            for (replica, lag) in r.followerLag.sorted(by: { $0.key < $1.key }) {
                e.sample("apus_replica_lag_records", [("topic", p.topic), ("partition", String(p.partition)), ("replica", String(replica))], Double(lag))
            }
        }
        for (name, value) in [("apus_isr_shrinks", \BrokerCounters.isrShrinks), ("apus_isr_expands", \.isrExpands)] {
            e.family(name)
            e.counter(name, [], samples.reduce(0) { $0 &+ $1.broker.counters[keyPath: value] })
        }

        // Consumer groups (shard 0's coordinator).
        let groups = samples.flatMap(\.broker.groups)
        e.family("apus_consumer_group_committed_offset")
        for g in groups {
            for o in g.offsets { e.sample("apus_consumer_group_committed_offset", [("group", g.groupId), ("topic", o.topic), ("partition", String(o.partition))], Double(o.committed)) }
        }
        e.family("apus_consumer_group_lag")
        for g in groups {
            for o in g.offsets {
                guard let end = endOffsets[TopicPartition(o.topic, o.partition)] else { continue }
                e.sample("apus_consumer_group_lag", [("group", g.groupId), ("topic", o.topic), ("partition", String(o.partition))], Double(max(0, end - o.committed)))
            }
        }
        e.family("apus_consumer_group_members")
        for g in groups { e.sample("apus_consumer_group_members", [("group", g.groupId)], Double(g.members)) }
        e.family("apus_consumer_group_state")
        for g in groups { e.sample("apus_consumer_group_state", [("group", g.groupId), ("state", g.state)], 1) }

        // Connections and shards.
        let shards = hub.all.enumerated().compactMap { i, s in s.map { (String(i), $0) } }
        e.family("apus_connections")
        for (i, s) in shards { e.sample("apus_connections", [("shard", i)], Double(s.connectionsOpen)) }
        for (name, value) in [("apus_connections_accepted", \ShardStats.accepted), ("apus_connections_closed", \.closed), ("apus_connections_rejected", \.rejected)] {
            e.family(name)
            for (i, s) in shards { e.counter(name, [("shard", i)], s.stats[keyPath: value]) }
        }
        var writes: [String: LatencyBuckets] = [:]
        var syncs: [String: LatencyBuckets] = [:]
        for s in samples {
            writes[s.broker.backend, default: LatencyBuckets()].add(s.broker.writeLatency)
            syncs[s.broker.backend, default: LatencyBuckets()].add(s.broker.syncLatency)
        }
        e.family("apus_append_write_duration_seconds")
        for (backend, h) in writes.sorted(by: { $0.key < $1.key }) { e.histogram("apus_append_write_duration_seconds", [("backend", backend)], h) }
        e.family("apus_append_sync_duration_seconds")
        for (backend, h) in syncs.sorted(by: { $0.key < $1.key }) { e.histogram("apus_append_sync_duration_seconds", [("backend", backend)], h) }
        e.family("apus_shard_busy_seconds")
        for (i, s) in shards { e.sample("apus_shard_busy_seconds_total", [("shard", i)], Double(s.busyNs) / 1e9) }
        e.family("apus_shard_turns")
        for (i, s) in shards { e.counter("apus_shard_turns", [("shard", i)], s.turns) }
        e.family("apus_shard_turn_duration_seconds")
        for (i, s) in shards { e.histogram("apus_shard_turn_duration_seconds", [("shard", i)], s.turnLatency) }
        e.family("apus_shard_stalls")
        for (i, shard) in stalls.shards.enumerated() {
            for cause in StallCause.allCases {
                e.counter("apus_shard_stalls", [("shard", String(i)), ("cause", cause.rawValue)], UInt64(shard.byCause[cause.rawValue, default: 0]))
            }
        }
        e.family("apus_shard_longest_stall_seconds")
        for (i, shard) in stalls.shards.enumerated() { e.sample("apus_shard_longest_stall_seconds", [("shard", String(i))], shard.longestMs / 1e3) }
        e.family("apus_shard_jobs")
        for (i, s) in shards { e.counter("apus_shard_jobs", [("shard", i)], s.broker.counters.jobs) }
        e.family("apus_shard_job_delay_seconds")
        for (i, s) in shards { e.histogram("apus_shard_job_delay_seconds", [("shard", i)], s.broker.jobDelay) }
        e.family("apus_shard_queued_jobs")
        for (i, s) in shards { e.sample("apus_shard_queued_jobs", [("shard", i)], Double(s.broker.queuedJobs)) }
        e.family("apus_shard_disk_waits")
        e.counter("apus_shard_disk_waits", [], UInt64(stalls.diskWaitsOnShards))
        e.family("apus_shard_declared_disk_waits")
        for (reason, n) in stalls.declaredDiskWaits.sorted(by: { $0.key < $1.key }) {
            e.counter("apus_shard_declared_disk_waits", [("reason", reason)], UInt64(n))
        }
        e.family("apus_recovery_seconds")
        e.sample("apus_recovery_seconds", [], hub.recoverySeconds)
        e.family("apus_ready")
        e.sample("apus_ready", [], hub.isReady() ? 1 : 0)

        // The process.
        e.family("process_cpu_seconds")
        e.sample("process_cpu_seconds_total", [], process.cpuSeconds)
        e.family("process_resident_memory_bytes")
        e.sample("process_resident_memory_bytes", [], Double(process.residentBytes))
        e.family("process_open_fds")
        e.sample("process_open_fds", [], Double(process.openFds))
        e.family("process_max_fds")
        e.sample("process_max_fds", [], Double(process.maxFds))
        e.family("process_start_time_seconds")
        e.sample("process_start_time_seconds", [], hub.startTimeSeconds.rounded(.down))
        e.finish()
        return e.text
    }

    /// Kafka's name for an error code (UNKNOWN_TOPIC_OR_PARTITION), or its number.
    static func errorName(_ code: Int16) -> String { KafkaErrorNames.name(code) }
}

extension MetricsCatalog {
    /// A Grafana dashboard with one panel per family (`apus serve --print-grafana-dashboard`,
    /// committed as tools/deploy/grafana-dashboard.json): rates of counters, gauges as they are,
    /// the p99 of histograms — grouped by each family's labels except `shard`.
    static var grafanaDashboard: String {
        let datasource: [String: Any] = ["type": "prometheus", "uid": "${datasource}"]
        var panels: [[String: Any]] = []
        for (i, m) in all.enumerated() {
            let by = m.labels.filter { $0 != "shard" }
            let group = by.isEmpty ? "" : " by (\(by.joined(separator: ", ")))"
            let legend = by.isEmpty ? m.name : by.map { "{{\($0)}}" }.joined(separator: " ")
            let expr: String
            let unit: String
            switch m.kind {
            case .counter:
                expr = "sum\(group) (rate(\(m.name)_total[1m]))"
                unit = m.name.hasSuffix("_seconds") ? "percentunit" : (m.name.contains("bytes") ? "Bps" : "ops")
            case .gauge:
                expr = m.labels.contains("shard") ? "sum\(group) (\(m.name))" : m.name
                unit = m.name.hasSuffix("_seconds") ? "s" : (m.name.hasSuffix("_bytes") ? "bytes" : "short")
            case .histogram:
                expr = "histogram_quantile(0.99, sum by (\((by + ["le"]).joined(separator: ", "))) (rate(\(m.name)_bucket[1m])))"
                unit = "s"
            }
            panels.append([
                "id": i + 1, "type": "timeseries", "title": m.kind == .histogram ? "\(m.name) p99" : m.name,
                "description": m.help + (m.kafka.isEmpty ? "" : " Kafka: \(m.kafka)"),
                "datasource": datasource,
                "gridPos": ["x": (i % 2) * 12, "y": (i / 2) * 8, "w": 12, "h": 8],
                "fieldConfig": ["defaults": ["unit": unit], "overrides": [Any]()],
                "targets": [["refId": "A", "datasource": datasource, "expr": expr, "legendFormat": legend]],
            ])
        }
        let dashboard: [String: Any] = [
            "title": "Apus", "uid": "apus-broker", "schemaVersion": 39, "version": 1, "editable": true,
            "time": ["from": "now-1h", "to": "now"], "refresh": "10s", "tags": ["apus", "kafka"],
            "templating": ["list": [["name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"]]],
            "panels": panels,
        ]
        let data = try! JSONSerialization.data(withJSONObject: dashboard, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
