import Yams
import ApusBroker
import ApusIO
import ApusStorage

/// A configuration key that does not exist or a value it cannot take.
public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

extension ServerConfig {
    /// Every key of the config file (and of `--set key=value`), with its default and meaning;
    /// docs/configuration.md is generated from the same table by `apus serve --print-config-keys`.
    public static let keys: [(key: String, defaultValue: String, meaning: String)] = [
        ("listeners", "PLAINTEXT://127.0.0.1:9092", "where to listen, as Kafka writes it: NAME://host:port entries separated by commas (a bare host:port is PLAINTEXT; port 0 picks a free port; an empty host binds every interface); each client is answered with its own listener's advertised address"),
        ("advertised.listeners", "(each listener's bound address)", "NAME://host:port per listener that clients are told to connect to (Metadata, FindCoordinator); a bare host:port applies to the first listener"),
        ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", "listener name → security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), NAME:PROTOCOL pairs separated by commas"),
        ("ssl.keystore.location", "none", "PEM file holding the certificate chain and private key of SSL and SASL_SSL listeners (Kafka's ssl.keystore.type=PEM; other keystore types are not read); SIGHUP re-reads it without dropping connections"),
        ("ssl.key.password", "none", "password of an encrypted private key in ssl.keystore.location (never logged)"),
        ("ssl.truststore.location", "none", "PEM file of the CAs that client certificates must chain to (ssl.client.auth)"),
        ("ssl.client.auth", "none", "none | requested | required: ask TLS clients for a certificate; its subject (RFC 2253) becomes the principal User:<subject> on SSL listeners"),
        ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", "TLS versions accepted: TLSv1.2,TLSv1.3 or TLSv1.3 alone"),
        ("ssl.cipher.suites", "none", "cipher suites, comma-separated: OpenSSL names for TLS 1.2, TLS_* names for TLS 1.3 (none: OpenSSL's defaults)"),
        ("listener.name.<listener>.ssl.*", "(the ssl.* value)", "one listener's own TLS setting, as in Kafka: listener.name.internal.ssl.keystore.location gives the INTERNAL listener its own certificate; unset keys fall back to the ssl.* ones"),
        ("sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN", "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners; PLAIN checks the password against the user's SCRAM credential (off the shard threads), so every mechanism uses the one credential store (`apus user`, AlterUserScramCredentials)"),
        ("connections.max.reauth.ms", "0", "a SASL session expires after this long (KIP-368): the client re-authenticates on the same connection, or the connection is closed at its next request; 0: sessions never expire"),
        ("authorizer", "none", "none: every authenticated principal may do anything; acl: Kafka's ACL authorizer — every request is checked against the ACLs (CreateAcls/DescribeAcls/DeleteAcls, `apus acl`), kept in <data.dir>/.security/acls"),
        ("super.users", "none", "principals allowed everything whatever the ACLs, separated by semicolons as in Kafka: User:admin;User:ops"),
        ("allow.everyone.if.no.acl.found", "false", "with authorizer = acl, whether a resource that has no ACL at all is open to every principal"),
        ("cluster.metadata", "none", "etcd://host:port[,host:port…]: join a cluster whose metadata lives on etcd: brokers register under leases and elect a controller (`apus cluster status`), topics' partitions are placed on distinct live brokers and replicated (followers fetch from leaders; the high watermark is what the in-sync replicas have; acks=all waits for them) and every broker answers Metadata for the whole cluster; none: a single broker"),
        ("default.replication.factor", "1", "replicas of an auto-created topic, or of CreateTopics with -1, in cluster mode (at most the live brokers)"),
        ("replica.lag.time.max.ms", "10000", "in cluster mode, a follower that has not caught up with its leader's log end for this long leaves the in-sync replicas; it returns once it has the high watermark"),
        ("offsets.topic.num.partitions", "50", "in cluster mode, partitions of the replicated __consumer_offsets topic (created at the first FindCoordinator): a group's coordinator is the leader of the partition its id hashes to, and the group moves with that partition's leadership"),
        ("offsets.topic.replication.factor", "3", "in cluster mode, replicas of __consumer_offsets; FindCoordinator answers COORDINATOR_NOT_AVAILABLE until this many brokers are live to create it, as in Kafka"),
        ("offsets.commit.timeout.ms", "5000", "in cluster mode, how long an offset commit waits for the in-sync replicas of its __consumer_offsets partition before it fails with COORDINATOR_NOT_AVAILABLE (the client retries)"),
        ("broker.session.timeout.ms", "6000", "in cluster mode, the TTL of this broker's registration lease on etcd (whole seconds, 2000 at least): a broker that stops renewing it (crashed, paused, cut off) is declared dead this long after its last renewal, and its partitions fail over; shorter detects crashes sooner, longer rides out pauses (the lease is renewed every second)"),
        ("cluster.prefix", "/apus", "the etcd key prefix of this cluster's metadata (several clusters can share one etcd)"),
        ("auto.leader.rebalance.enable", "true", "in cluster mode, the controller gives each partition's leadership back to its preferred replica (the first one) once that replica has been in sync for leader.imbalance.check.interval.seconds, so that leaders spread out again after a failover"),
        ("leader.imbalance.check.interval.seconds", "300", "how long a preferred replica must have been in sync before the controller makes it leader again"),
        ("data.dir", "./apus-data", "directory holding the partition logs"),
        ("io.backend", "auto", "appends and network I/O: uring (io_uring rings), posix (pwritev + epoll), or auto: uring when appends are synced and a NOP round trip works, else posix"),
        ("durability", "page-cache", "page-cache | fsync-on-ack-all | fsync-always: when an append is acknowledged relative to fdatasync"),
        ("cpus", "all", "CPUs that each run one shard (a pinned thread with its own event loop and partitions): all, a count N (the first N allowed), or a list such as 0,2-3"),
        ("numa", "auto", "auto: each shard prefers memory on its CPU's NUMA node when libnuma reports several nodes; off: no NUMA placement"),
        ("node.id", "1", "this broker's id (1, not 0: some clients, such as kafka-go, reject node id 0)"),
        ("cluster.id", "apus-cluster", "cluster id reported in Metadata"),
        ("auto.create.topics.enable", "true", "create a topic when Metadata asks for an unknown one"),
        ("num.partitions", "1", "partitions of an auto-created topic"),
        ("message.max.bytes", "1060876", "largest record batch accepted (MESSAGE_TOO_LARGE above)"),
        ("socket.request.max.bytes", "104857600", "largest request frame; a larger one closes its connection"),
        ("segment.bytes", "1073741824", "roll to a new segment past this size"),
        ("segment.ms", "604800000", "roll a non-empty segment this old"),
        ("retention.ms", "604800000", "delete segments whose newest record is older (-1: keep)"),
        ("retention.bytes", "-1", "delete old segments while a partition is larger (-1: no limit)"),
        ("index.interval.bytes", "4096", "bytes of log between sparse index entries"),
        ("segment.preallocate.bytes", "67108864", "blocks reserved (fallocate, file sizes unchanged) in a new segment before a shard writes it, never in a file a shard is writing (ext4 holds the file's inode lock meanwhile, which every write needs): a partition that would fill segment.bytes within a minute rolls onto segments reserved whole, made ahead on a worker (its first segment ends once one is ready); a slower one's segments after the first start with this much reserved. Writes past a reservation take the file system's delayed allocation. 0: none"),
        ("flush.messages", "none", "sync after this many unsynced records (none: never)"),
        ("flush.ms", "none", "sync data older than this many ms (none: never)"),
        ("group.initial.rebalance.delay.ms", "3000", "how long a new group waits for more members before its first rebalance"),
        ("group.min.session.timeout.ms", "6000", "smallest session timeout a consumer may ask for"),
        ("group.consumer.heartbeat.interval.ms", "5000", "how often members of consumer-protocol groups (group.protocol=consumer) heartbeat"),
        ("group.consumer.session.timeout.ms", "45000", "a consumer-protocol member is removed after this long without a heartbeat"),
        ("group.max.session.timeout.ms", "1800000", "largest session timeout a consumer may ask for"),
        ("shutdown.timeout.ms", "10000", "how long SIGTERM waits for in-flight requests"),
        ("page.cache.max.bytes", "auto", "how much of what the broker's appends write may stay in the page cache, in all (split evenly over the shards); beyond it the oldest written data is written back and dropped from the cache on a worker thread (sync_file_range, POSIX_FADV_DONTNEED), so that memory is free when the next writes need it — with the cache full, every write first reclaims pages in the shard's own thread (after a heavy run on this project's machine, with 8 GiB: 1.7× the 16 KiB maximum, p99.9 18 ms instead of 70 ms at 1.88 M records/s; Results/2026-12-05-page-cache-budget). Until the budget is full, writes land in memory the broker has not used yet: on a VM whose host takes back free memory (free page reporting) that costs ~10× the CPU per byte, so there a smaller budget (1 GiB: 2.1× the 16 KiB maximum in 30 s runs; Results/2026-12-06-tail-recycle) is faster for consumers near the head. Consumers reading older data read it from the disk. auto: a third of the machine's memory; 0: no limit (the kernel decides, as for Kafka)"),
        ("loop.read.bytes", "1048576", "bytes a shard reads from one connection in one turn, at most (about; at least 64 KiB): a client with many large requests queued has the first answered this turn instead of all at the end of one long turn"),
        ("loop.stall.warn.ms", "10", "a shard turn (the work between two waits for I/O) longer than this is a stall: counted, logged at most once per second per shard with the phase it was in, summed up at shutdown"),
        ("loop.stall.stats.file", "none", "write every shard's turn and stall counts and the recent stalls to this file every second (JSON; the lab reads it)"),
        ("metrics.listen", "127.0.0.1:9644", "host:port of the HTTP endpoint serving /metrics (Prometheus text; OpenMetrics when asked), /health/live and /health/ready, off the shard threads; off: none (docs/metrics.md)"),
        ("log.level", "info", "trace, debug, info, notice, warning, error, critical"),
        ("log.format", "text", "text: one readable line per event; json: one JSON object per line (ts, level, logger, msg, source and every metadata field) for log shippers"),
    ]

    /// Sets one key from its text form; throws naming the key on an unknown key or bad value.
    public mutating func set(_ key: String, _ value: String) throws(ConfigError) {
        func int(_ range: ClosedRange<Int64> = Int64.min...Int64.max) throws(ConfigError) -> Int64 {
            guard let v = Int64(value), range.contains(v) else { throw ConfigError("\(key): expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(value)'") }
            return v
        }
        func hostPort() throws(ConfigError) -> (String, UInt16) {
            let parts = value.split(separator: ":")
            guard parts.count == 2, let port = UInt16(parts[1]), !parts[0].isEmpty else { throw ConfigError("\(key): expected host:port, got '\(value)'") }
            return (String(parts[0]), port)
        }
        switch key {
        case "listeners": listeners = try ListenerAddress.parseList(value, key: key)
        case "advertised.listeners":
            var advertised: [String: ListenerAddress] = [:]
            for var entry in try ListenerAddress.parseList(value, key: key) {
                if !value.contains("://") { entry.name = listeners[0].name }  // host:port: the first listener
                advertised[entry.name] = entry
            }
            advertisedListeners = advertised
        case "listener.security.protocol.map":
            var map: [String: SecurityProtocol] = [:]
            for pair in value.split(separator: ",") {
                let parts = pair.split(separator: ":").map { $0.trimmingSpaces }
                guard parts.count == 2, let p = SecurityProtocol(rawValue: parts[1].uppercased()) else {
                    throw ConfigError("listener.security.protocol.map: expected NAME:PROTOCOL pairs (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), got '\(pair)'")
                }
                map[parts[0].uppercased()] = p
            }
            securityProtocolMap = map
        case _ where key.hasPrefix("ssl."):
            try Self.setTLS(key, value, &tls)
        case _ where key.hasPrefix("listener.name."):
            // listener.name.<name>.ssl.*: that listener's own TLS settings (Kafka's form).
            let rest = key.dropFirst("listener.name.".count)
            guard let dot = rest.firstIndex(of: "."), !rest[..<dot].isEmpty, rest[rest.index(after: dot)...].hasPrefix("ssl.") else {
                throw ConfigError("\(key): expected listener.name.<listener>.ssl.<key>")
            }
            let listener = rest[..<dot].uppercased(), sslKey = String(rest[rest.index(after: dot)...])
            var scratch = TLSSettings()
            try Self.setTLS(sslKey, value, &scratch)  // checks the key and the value
            listenerTLS[listener, default: [:]][sslKey] = value
        case "sasl.enabled.mechanisms":
            var mechanisms: [SaslMechanism] = []
            for name in value.split(separator: ",").map({ $0.trimmingSpaces.uppercased() }) where !name.isEmpty {
                guard let m = SaslMechanism(rawValue: name) else {
                    throw ConfigError("sasl.enabled.mechanisms: \(name) is not one of \(SaslMechanism.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                mechanisms.append(m)
            }
            broker.saslMechanisms = mechanisms
        case "connections.max.reauth.ms": broker.reauthenticationMs = try int(0...Int64.max)
        case "authorizer":
            guard value == "none" || value == "acl" else { throw ConfigError("authorizer: expected none or acl, got '\(value)'") }
            broker.authorizer.enabled = value == "acl"
        case "super.users":
            broker.authorizer.superUsers = value == "none" ? [] : Set(value.split(separator: ";").map { $0.trimmingSpaces }.filter { !$0.isEmpty })
            for user in broker.authorizer.superUsers where !user.contains(":") {
                throw ConfigError("super.users: expected principals such as User:admin separated by semicolons, got '\(user)'")
            }
        case "allow.everyone.if.no.acl.found":
            guard let b = Bool(value) else { throw ConfigError("allow.everyone.if.no.acl.found: expected true or false, got '\(value)'") }
            broker.authorizer.allowEveryoneIfNoAclFound = b
        case "cluster.metadata":
            if value == "none" || value.isEmpty {
                clusterEtcd = []
            } else {
                guard value.hasPrefix("etcd://") else { throw ConfigError("cluster.metadata: expected etcd://host:port[,host:port…] or none, got '\(value)'") }
                let endpoints = value.dropFirst("etcd://".count).split(separator: ",").map { $0.trimmingSpaces }
                for endpoint in endpoints {
                    let parts = endpoint.split(separator: ":")
                    guard parts.count == 2, !parts[0].isEmpty, UInt16(parts[1]) != nil else {
                        throw ConfigError("cluster.metadata: expected host:port endpoints, got '\(endpoint)'")
                    }
                }
                clusterEtcd = endpoints
            }
        case "auto.leader.rebalance.enable":
            guard let b = Bool(value) else { throw ConfigError("auto.leader.rebalance.enable: expected true or false, got '\(value)'") }
            rebalanceLeaders = b
        case "leader.imbalance.check.interval.seconds":
            rebalanceDelaySeconds = try int(1...86_400)
        case "broker.session.timeout.ms":
            sessionTimeoutMs = try int(2_000...300_000)
        case "cluster.prefix":
            guard value.hasPrefix("/"), value.count > 1 else { throw ConfigError("cluster.prefix: expected a key prefix such as /apus, got '\(value)'") }
            clusterPrefix = value
        case "data.dir":
            guard !value.isEmpty else { throw ConfigError("data.dir: may not be empty") }
            dataDirectory = value
        case "io.backend":
            guard let kind = IOBackendKind(rawValue: value) else { throw ConfigError("io.backend: expected auto, uring or posix, got '\(value)'") }
            ioBackend = kind
        case "durability":
            guard let mode = Durability(rawValue: value) else { throw ConfigError("durability: expected page-cache, fsync-on-ack-all or fsync-always, got '\(value)'") }
            broker.log.durability = mode
        case "cpus":
            guard let selection = CPUSelection(value) else {
                throw ConfigError("cpus: expected all, a count 1...64, or a list of CPU ids and ranges such as 0,2-3, got '\(value)'")
            }
            cpus = selection
        case "numa":
            guard value == "auto" || value == "off" else { throw ConfigError("numa: expected auto or off, got '\(value)'") }
            numa = value == "auto"
        case "node.id": broker.nodeId = Int32(try int(0...Int64(Int32.max)))
        case "cluster.id": broker.clusterId = value
        case "auto.create.topics.enable":
            guard let b = Bool(value) else { throw ConfigError("auto.create.topics.enable: expected true or false, got '\(value)'") }
            broker.autoCreateTopics = b
        case "num.partitions": broker.numPartitions = Int32(try int(1...10_000))
        case "default.replication.factor": broker.defaultReplicationFactor = Int(try int(1...16))
        case "replica.lag.time.max.ms": broker.replicaLagTimeMaxMs = try int(100...Int64(Int32.max))
        case "offsets.topic.num.partitions": broker.offsetsTopicPartitions = Int32(try int(1...1_000))
        case "offsets.topic.replication.factor": broker.offsetsTopicReplicationFactor = Int(try int(1...16))
        case "offsets.commit.timeout.ms": broker.offsetCommitTimeoutMs = try int(1...Int64(Int32.max))
        case "message.max.bytes": broker.messageMaxBytes = Int(try int(64...Int64(Int32.max)))
        case "socket.request.max.bytes": requestMaxBytes = Int(try int(64...Int64(Int32.max)))
        case "segment.bytes": broker.log.segmentBytes = try int(1024...Int64(Int32.max))
        case "segment.ms": broker.log.segmentMs = try int(1...Int64.max)
        case "retention.ms": broker.log.retentionMs = try int(-1...Int64.max)
        case "retention.bytes": broker.log.retentionBytes = try int(-1...Int64.max)
        case "index.interval.bytes": broker.log.indexIntervalBytes = Int(try int(0...Int64(Int32.max)))
        case "segment.preallocate.bytes": broker.log.preallocateBytes = try int(0...Int64(Int32.max))
        case "flush.messages": broker.log.flushMessages = value == "none" ? .max : try int(1...Int64.max)
        case "flush.ms": broker.log.flushMs = value == "none" ? .max : try int(0...Int64.max)
        case "group.initial.rebalance.delay.ms": broker.groups.initialRebalanceDelayMs = Int32(try int(0...Int64(Int32.max)))
        case "group.min.session.timeout.ms": broker.groups.minSessionTimeoutMs = Int32(try int(0...Int64(Int32.max)))
        case "group.consumer.heartbeat.interval.ms": broker.consumerGroups.heartbeatIntervalMs = Int32(try int(1...Int64(Int32.max)))
        case "group.consumer.session.timeout.ms": broker.consumerGroups.sessionTimeoutMs = try int(1...Int64(Int32.max))
        case "group.max.session.timeout.ms": broker.groups.maxSessionTimeoutMs = Int32(try int(0...Int64(Int32.max)))
        case "shutdown.timeout.ms": shutdownDeadlineMs = try int(0...Int64.max)
        case "loop.read.bytes": turnReadBytes = Int(try int(4096...Int64(Int32.max)))
        case "page.cache.max.bytes": pageCacheMaxBytes = value == "auto" ? nil : try int(0...Int64.max)
        case "loop.stall.warn.ms": stallWarnMs = Int(try int(1...3_600_000))
        case "loop.stall.stats.file": stallStatsFile = value == "none" || value.isEmpty ? nil : value
        case "metrics.listen": metricsListen = value == "off" ? nil : try hostPort()
        case "log.format":
            guard value == "text" || value == "json" else { throw ConfigError("log.format: expected text or json, got '\(value)'") }
            logJSON = value == "json"
        case "log.level":
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw ConfigError("log.level: unknown level '\(value)'")
            }
            logLevel = value
        default:
            throw ConfigError("unknown configuration key '\(key)' (see docs/configuration.md)")
        }
    }

    /// Sets one `ssl.*` key of `settings`.
    static func setTLS(_ key: String, _ value: String, _ tls: inout TLSSettings) throws(ConfigError) {
        switch key {
        case "ssl.keystore.location": tls.keystore = value == "none" || value.isEmpty ? nil : value
        case "ssl.key.password": tls.keyPassword = value == "none" || value.isEmpty ? nil : value
        case "ssl.truststore.location": tls.truststore = value == "none" || value.isEmpty ? nil : value
        case "ssl.client.auth":
            guard let auth = TLSSettings.ClientAuth(rawValue: value.lowercased()) else {
                throw ConfigError("ssl.client.auth: expected none, requested or required, got '\(value)'")
            }
            tls.clientAuth = auth
        case "ssl.enabled.protocols":
            let names = Set(value.split(separator: ",").map { $0.trimmingSpaces })
            guard !names.isEmpty, names.isSubset(of: ["TLSv1.2", "TLSv1.3"]) else {
                throw ConfigError("ssl.enabled.protocols: expected TLSv1.2,TLSv1.3 or TLSv1.3, got '\(value)'")
            }
            tls.minProtocol = names.contains("TLSv1.2") ? "TLSv1.2" : "TLSv1.3"
        case "ssl.cipher.suites":
            tls.cipherSuites = value == "none" ? [] : value.split(separator: ",").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        default:
            throw ConfigError("unknown configuration key '\(key)' (see docs/configuration.md)")
        }
    }

    /// The TLS settings of listener `name`: the `ssl.*` keys, with its `listener.name.<name>.ssl.*`
    /// overrides applied.
    public func tlsSettings(forListener name: String) -> TLSSettings {
        var settings = tls
        for (key, value) in listenerTLS[name.uppercased()] ?? [:] { try? Self.setTLS(key, value, &settings) }
        return settings
    }

    /// Reads a YAML config file: a flat mapping of the keys above to scalar values.
    public mutating func load(yaml text: String, path: String) throws(ConfigError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError("\(path): not valid YAML: \(error)")
        }
        guard let root else { return }  // an empty file
        guard let mapping = root.mapping else { throw ConfigError("\(path): expected a mapping of configuration keys") }
        for (keyNode, valueNode) in mapping {
            let line = keyNode.mark.map { ":\($0.line)" } ?? ""
            guard let key = keyNode.scalar?.string, let value = valueNode.scalar?.string else {
                throw ConfigError("\(path)\(line): '\(keyNode.scalar?.string ?? "?")' must map a key to a single value")
            }
            do {
                try set(key, value)
            } catch {
                throw ConfigError("\(path)\(line): \(error.description)")
            }
        }
    }
}
