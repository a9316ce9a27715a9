import ApusIO
import ApusStorage
import KafkaProtocol
import KafkaWire
import Logging

/// Identifies a client connection to the broker (assigned by the server).
public typealias ConnectionID = Int

/// What the server does with a request once the broker has seen it.
public enum HandleOutcome {
    /// Send this response (in order with the connection's other responses).
    case respond(ResponseFrame)
    /// Nothing is sent (Produce with acks=0).
    case noResponse
    /// The response comes later, from ``Broker/endOfTurn(nowMs:)``.
    case pending
    /// Close this connection (malformed or unsupported request), logging the reason.
    case close(String)
}

/// A response completed after its request's turn (produce acks, long-poll fetches).
public struct Completion {
    public var connection: ConnectionID
    /// The connection's number for the request (see ``RequestContext/sequence``).
    public var sequence: UInt64
    public var correlationId: Int32
    public var frame: ResponseFrame
}

/// What a loop turn produced for the server (``Broker/endOfTurn(nowMs:)``).
public struct TurnOutcome {
    /// Responses now ready for this shard's connections.
    public var completions: [Completion] = []
    /// Connections of this shard to close, with the reason (a forwarded request was malformed).
    public var closes: [(connection: ConnectionID, reason: String)] = []
}

/// What a handler knows about the request it serves.
public struct RequestContext {
    public var connection: ConnectionID
    /// The request's position on its connection (assigned by the server): completions are
    /// matched by it, since a client may reuse correlation ids.
    public var sequence: UInt64
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?
    public var nowMs: Int64
    /// Response header version (0, or 1 for flexible versions; always 0 for ApiVersions).
    public var responseHeaderVersion: Int16
    /// The connection's listener, principal and SASL state.
    public var session: ClientSession
    /// The listener the request came in on (what Metadata advertises to it).
    public var listener: Int { session.listener }
    public var principal: String { session.principal }
}

/// The Kafka broker's request handling for one shard: pure logic over the storage engine, no
/// sockets.
///
/// Used from one thread (its shard's); not thread-safe. The server hands it complete request
/// frames with ``handle(frame:connection:sequence:nowMs:)`` and, once per loop turn, calls
/// ``startOfTurn()`` (jobs from other shards) and ``endOfTurn(nowMs:)``, which commits the
/// turn's appends (group commit) and returns the responses that became ready.
///
/// With several shards (``ShardMesh``) each broker owns the partitions the mesh assigns it;
/// Produce, Fetch and ListOffsets send the parts for other shards' partitions to them, and
/// requests that touch shared state (topics, groups, producer ids) run on shard 0.
public final class Broker {
    public let config: BrokerConfig
    let logs: LogManager
    let shard: LogShard
    let logger: Logger
    public let mesh: ShardMesh
    /// This shard's number in the mesh.
    public let index: Int
    /// The catalog as this shard last saw it.
    var topics: [String: CatalogTopic] = [:]
    private var topicsVersion: UInt64 = 0
    /// The catalog version this shard last saw (it moves with every topic change).
    var catalogVersion: UInt64 { topicsVersion }
    /// The logs this shard owns, adopted by its `LogShard`.
    private var owned: [ObjectIdentifier: PartitionLog] = [:]
    /// Logs appended this turn, whose signals are published after the commit.
    var appended: [(log: PartitionLog, signal: PartitionSignal)] = []
    var pendingProduces: [PendingProduce] = []
    /// Produce requests' batches, reused across requests (written, then given back).
    let batchBuffers = BatchBuffers(limitBytes: 64 << 20)
    var parkedFetches: [FetchInFlight] = []
    var producerIds: ProducerIdAllocator
    /// Idempotent-producer state per partition, rebuilt from the log on first use.
    var producerStates: [TopicPartition: ProducerStateTable] = [:]
    /// Classic consumer groups (used on shard 0); committed offsets live in the internal
    /// `__consumer_offsets` log.
    var groups: GroupCoordinator<GroupToken>
    /// Groups of the consumer group protocol (KIP-848; shard 0). Their committed offsets live in
    /// `groups`' offset store like any other.
    var consumerGroups: ConsumerProtocolGroups
    var offsetsLog: PartitionLog?
    /// Topics unpublished whose files are not deleted yet (shard 0).
    var deleting: Set<String> = []
    /// Topics whose files are being created, not published yet (shard 0).
    var creating: Set<String> = []
    /// Topics this shard is writing to the cluster's metadata (cluster mode): the logs follow
    /// when the view shows them, whether or not the write has returned by then.
    var writingToCluster: Set<String> = []
    var groupCompletions: [Completion] = []
    var pendingGroupWrites: [PendingGroupWrite] = []
    /// Responses finished by jobs (other shards' answers) this turn.
    var arrivedCompletions: [Completion] = []
    /// Requests and error codes, for the metrics endpoint (``metricsSnapshot()``).
    var counters = BrokerCounters()
    /// The logs this shard owns.
    var ownedLogs: Dictionary<ObjectIdentifier, PartitionLog>.Values { owned.values }
    /// Connections of this shard to close, returned with the next ``TurnOutcome``.
    var closeRequests: [(connection: ConnectionID, reason: String)] = []
    /// SCRAM credentials as the last alteration being written leaves them (shard 0).
    var pendingCredentials: SecurityStore.Credentials?
    /// ACLs as the last CreateAcls/DeleteAcls being written leaves them (shard 0).
    var pendingAcls: Authorizer?
    /// Failed authentications are logged at most 10 a second per shard (a password guesser
    /// must not flood the log).
    var saslFailureLog = LogRateLimit(perSecond: 10)
    /// Failed client-driven creations in the cluster (Metadata's auto-creation, the offsets
    /// topic at FindCoordinator) are logged at most once a second per shard: while etcd fails,
    /// every client asking would add a line (``logCreationFailure``).
    var creationFailureLog = LogRateLimit(perSecond: 1)
    /// The store's ACLs and the version they were read at (``acls``).
    var aclsSeen: (version: UInt64, acls: Authorizer) = (.max, Authorizer())
    /// The cluster view and the version it was read at (``cluster``).
    var clusterSeen: (version: UInt64, state: ClusterState) = (.max, ClusterState())
    /// Topics shard 0 has seen in the cluster's metadata (only those are deleted when they go).
    var clusterTopicsSeen: Set<String> = []
    /// Local topics the cluster does not have, already warned about.
    var warnedLocalOnly: Set<String> = []
    /// Topics whose configuration from the cluster is being stored here.
    var reconfiguring: Set<String> = []
    /// Replicated partitions this shard owns and leads: what each follower has (cluster mode).
    var replicaSets: [TopicPartition: ReplicaSet] = [:]
    /// Batches staged this turn (follower appends, offset commits), freed after the commit.
    var stagedBuffers: [UnsafeMutableRawBufferPointer] = []
    /// When the in-sync replicas are checked next (``checkInSyncReplicas(nowMs:)``).
    var nextReplicaCheckMs: Int64 = 0
    /// The leader epoch each partition this shard follows was last followed at: a new one means
    /// a new leader, whose log may differ from this one past some offset.
    var followedEpochs: [TopicPartition: Int32] = [:]
    /// Followed partitions whose log must be cut before fetching (``FollowerTruncation``).
    var followerTruncations: [TopicPartition: FollowerTruncation] = [:]
    /// Cluster mode (shard 0): the `__consumer_offsets` partitions this broker leads whose commits
    /// are in `groups`, with the leader epoch they were loaded at.
    var coordinatedPartitions: [Int32: Int32] = [:]
    /// Offsets partitions being read back into `groups`: the epoch, and the next offset to replay.
    var loadingPartitions: [Int32: (epoch: Int32, next: Int64)] = [:]
    /// FindCoordinator has said that too few brokers are live to create the offsets topic.
    var warnedOffsetsTopicWait = false
    /// The cluster view and catalog versions group coordination was last brought in line with.
    var coordinationSeen: (cluster: UInt64, catalog: UInt64) = (.max, .max)
    /// The time of the latest request or turn end (for work that has no clock of its own: jobs).
    var turnMs: Int64 = 0
    /// Produce requests whose only wait is for the in-sync replicas (no need to poll for them).
    var awaitingReplicas = 0

    /// A broker that is the only shard (tests, tools): it loads every topic itself.
    public convenience init(config: BrokerConfig, logs: LogManager, shard: LogShard, logger: Logger, nowMs: Int64) throws(StorageError) {
        let catalog = try TopicCatalog.load(logs: logs, shards: 1, broker: config, logger: logger, nowMs: nowMs)
        try self.init(config: config, logs: logs, shard: shard, logger: logger, nowMs: nowMs, mesh: ShardMesh(count: 1, catalog: catalog, security: SecurityStore.load(logs: logs, logger: logger)), index: 0)
    }

    /// Shard `index` of `mesh`, whose catalog is loaded (``TopicCatalog/load(logs:shards:broker:logger:nowMs:)``).
    public init(config: BrokerConfig, logs: LogManager, shard: LogShard, logger: Logger, nowMs: Int64,
                mesh: ShardMesh, index: Int) throws(StorageError) {
        self.config = config
        self.logs = logs
        self.shard = shard
        self.logger = logger
        self.mesh = mesh
        self.index = index
        self.producerIds = ProducerIdAllocator(seed: nowMs, nodeId: config.nodeId)
        self.groups = GroupCoordinator(config: config.groups)
        let seed = UInt64(bitPattern: nowMs) ^ UInt64.random(in: .min ... .max)
        var sequence: UInt64 = 0
        self.consumerGroups = ConsumerProtocolGroups(config: config.consumerGroups, newMemberId: {
            sequence &+= 1
            return groupMemberUUID(seed: seed, sequence: sequence)
        })
        refreshTopics()
        if index == 0 && mesh.cluster == nil {  // a cluster's offsets are a replicated topic
            try loadGroupOffsets(nowMs: nowMs)
            if let offsetsLog { owned[ObjectIdentifier(offsetsLog)] = offsetsLog }  // checkpointed with the rest
        }
    }

    // MARK: Dispatch

    /// The session of a request whose caller gives none (tests, tools): listener 0, anonymous.
    /// Never mutated: only SASL exchanges change a session, and a plaintext one has none.
    nonisolated(unsafe) public static let plaintextSession = ClientSession()

    /// Handles one request frame (the bytes after the size prefix).
    public func handle(frame: UnsafeRawBufferPointer, connection: ConnectionID, sequence: UInt64 = 0, nowMs: Int64,
                       session: ClientSession = Broker.plaintextSession) -> HandleOutcome {
        turnMs = nowMs
        if session.rawTokens { return saslRawToken(frame, connection: connection, sequence: sequence, nowMs: nowMs, session: session) }
        guard let preamble = RequestPreamble(frame) else { return .close("request shorter than its header") }
        guard let entry = Handlers.byKey[preamble.apiKey] else {
            return .close("unknown API key \(preamble.apiKey)")
        }
        guard entry.versions.contains(preamble.apiVersion) || entry.legacy?.contains(preamble.apiVersion) == true else {
            if preamble.apiKey == ApiVersionsRequest.apiKey {
                return .respond(Handlers.unsupportedApiVersions(correlationId: preamble.correlationId))
            }
            return .close("unsupported version \(preamble.apiVersion) of \(entry.api.name)")
        }
        if !session.authenticated || session.failed || session.expiresAtMs.map({ nowMs >= $0 }) == true {
            if session.failed { return .close("request after a failed SASL authentication") }
            if !entry.duringAuthentication {
                return .close(session.authenticated ? "SASL session expired (connections.max.reauth.ms) before \(entry.api.name)"
                                                    : "\(entry.api.name) before SASL authentication")
            }
        }
        if entry.onCoordinator && index != 0 {
            forwardToCoordinator(frame, connection: connection, sequence: sequence, nowMs: nowMs, session: session.forwarded())
            return .pending  // counted where it is handled
        }
        counters.noteRequest(preamble.apiKey)
        let requestType = entry.api.requestType
        var r = WireReader(frame)
        do {
            let header = try RequestHeader.decode(from: &r, version: requestType.requestHeaderVersion(preamble.apiVersion))
            let context = RequestContext(
                connection: connection, sequence: sequence, apiKey: preamble.apiKey, apiVersion: preamble.apiVersion,
                correlationId: preamble.correlationId, clientId: header.clientId, nowMs: nowMs,
                responseHeaderVersion: requestType.responseHeaderVersion(preamble.apiVersion), session: session)
            return try entry.handle(self, context, &r)
        } catch {
            return .close("malformed request: \(error)")
        }
    }

    /// Encodes `response` with the response header for `context`.
    func frame<R: KafkaResponse>(_ response: R, _ context: RequestContext) -> ResponseFrame {
        response.forEachErrorCode { code in if code != 0 { counters.noteError(context.apiKey, code) } }
        return ResponseFrame(correlationId: context.correlationId, headerVersion: context.responseHeaderVersion) {
            response.encode(into: &$0, version: context.apiVersion)
        }
    }

    func respond<R: KafkaResponse>(_ response: R, _ context: RequestContext) -> HandleOutcome {
        .respond(frame(response, context))
    }

    /// Answers a request that returned `.pending`, once its work (on another shard or on the
    /// disk worker) is done: sent with this turn's completions.
    func answerLater(_ frame: ResponseFrame, _ context: RequestContext) {
        arrivedCompletions.append(Completion(connection: context.connection, sequence: context.sequence,
                                             correlationId: context.correlationId, frame: frame))
    }

    // MARK: Turns

    /// Runs the jobs other shards sent and picks up catalog changes. Call at the start of
    /// every loop turn, before reading requests.
    public func startOfTurn() {
        refreshTopics()
        let (jobs, waitedNs) = mesh.take(index)
        if !jobs.isEmpty { jobDelay.record(ns: waitedNs) }
        for job in jobs { job(self) }
        jobsRun += jobs.count
        counters.jobs &+= UInt64(jobs.count)
    }

    /// Jobs run this turn whose completion is not yet counted (see ``finishJobs()``).
    private var jobsRun = 0
    /// How long the oldest job taken at each turn's start had waited in the inbox: the other
    /// shard's wake-up and the rest of the turn it arrived in (a forwarded request waits this).
    public private(set) var jobDelay = LatencyBuckets()

    /// Counts this turn's jobs as finished. The server calls it after ``endOfTurn(nowMs:)``
    /// (which sends the responses they produced) and after reporting whether the shard is
    /// idle, so that while a job's consequences are under way some count shows it (shutdown).
    public func finishJobs() {
        guard jobsRun > 0 else { return }
        mesh.inFlight.subtract(jobsRun, ordering: .sequentiallyConsistent)
        jobsRun = 0
    }

    /// Commits this turn's appends and returns every response for this shard's connections
    /// that is now ready (responses for other shards' connections are sent to them) and the
    /// connections to close.
    public func endOfTurn(nowMs: Int64) -> TurnOutcome {
        var completions: [Completion] = []
        turnMs = nowMs
        let failures = shard.commit(nowMs: nowMs)
        shard.poll()
        if !stagedBuffers.isEmpty {
            stagedBuffers.forEach { $0.deallocate() }
            stagedBuffers.removeAll(keepingCapacity: true)
        }
        if !followerTruncations.isEmpty { truncateFollowers() }
        if !replicaSets.isEmpty { checkInSyncReplicas(nowMs: nowMs) }
        publishAppends()
        completeProduces(failures: failures, nowMs: nowMs, into: &completions)
        completeFetches(nowMs: nowMs, into: &completions)
        if index == 0 { coordinateGroups() }
        completeGroups(nowMs: nowMs, into: &completions)
        completions += arrivedCompletions
        arrivedCompletions.removeAll()
        if mesh.count > 1 {
            completions.removeAll { completion in
                let home = shardOf(completion.connection)
                guard home != index else { return false }
                mesh.post(to: home) { $0.arrivedCompletions.append(completion) }
                return true
            }
        }
        defer { closeRequests.removeAll() }
        return TurnOutcome(completions: completions, closes: closeRequests)
    }

    /// The earliest time something parked needs attention (long-poll deadlines), if any.
    public var nextDeadlineMs: Int64? {
        (parkedFetches.map(\.deadlineMs) + pendingProduces.compactMap(\.replicationDeadlineMs) + pendingGroupWrites.compactMap(\.deadlineMs)
            + [groups.nextDeadlineMs].compactMap { $0 }).min()
    }

    /// Whether responses are waiting on a sync in flight or on another shard (the server
    /// should poll soon).
    public var awaitingSync: Bool {
        pendingProduces.count > awaitingReplicas || pendingGroupWrites.contains { write in
            write.writes.contains { $0.log.config.durability != .pageCache && $0.log.durableOffset <= $0.lastOffset }
        }
    }

    /// Set at shutdown: every fetch is answered with what there is, none parks.
    var fetchesExpire = false

    /// Whether long polls are parked (shutdown answers them first).
    public var hasParkedFetches: Bool { !parkedFetches.isEmpty }

    /// A connection went away: forget what it was waiting for.
    public func connectionClosed(_ connection: ConnectionID) {
        parkedFetches.removeAll { $0.context.connection == connection }
        for i in pendingProduces.indices where pendingProduces[i].context.connection == connection {
            pendingProduces[i].abandoned = true
        }
    }

    /// Periodic upkeep (every few seconds) of the logs this shard owns: retention, and
    /// recovery points so that recovery after a crash scans only what came since.
    public func maintenance(nowMs: Int64) {
        for log in owned.values where log !== offsetsLog { log.enforceRetention(nowMs: nowMs) }
        logs.checkpointInBackground(Array(owned.values))
    }

    /// Syncs every log this shard owns (before ``LogManager/close()`` at shutdown).
    public func syncAll(nowMs: Int64) {
        shard.syncAll(nowMs: nowMs)
    }

    /// Syncs every log and marks a clean shutdown (the only shard).
    public func shutdown(nowMs: Int64) throws(StorageError) {
        shard.syncAll(nowMs: nowMs)
        try logs.close()
    }

    /// Marks this shard as having nothing left to finish, or not (shutdown waits until every
    /// shard is idle and no job is under way; see ``ShardMesh/quiescent``).
    public func reportIdle(_ idle: Bool) {
        let bit = UInt64(1) << UInt64(index)
        if idle { mesh.busy.bitwiseAnd(~bit, ordering: .sequentiallyConsistent) } else { mesh.busy.bitwiseOr(bit, ordering: .sequentiallyConsistent) }
    }

    /// Whether every shard is idle and no job is under way.
    public var meshQuiescent: Bool { mesh.quiescent }

    /// This shard has stopped: jobs sent to it from now on are dropped.
    public func closeInbox() { mesh.close(index) }

    // MARK: Shards

    /// The shard serving `connection` (the server numbers connections so that this holds).
    func shardOf(_ connection: ConnectionID) -> Int { mesh.count > 1 ? connection % mesh.count : index }

    /// Adopts the logs of topics this shard owns that appeared in the catalog, and drops those
    /// of topics deleted since.
    func refreshTopics() {
        let version = mesh.catalog.version.load(ordering: .acquiring)
        guard version != topicsVersion else { return }
        let snapshot = mesh.catalog.snapshot()
        topics = snapshot.topics
        topicsVersion = snapshot.version
        var stillOwned: [ObjectIdentifier: PartitionLog] = [:]
        if let offsetsLog { stillOwned[ObjectIdentifier(offsetsLog)] = offsetsLog }
        for topic in topics.values {
            for (p, log) in topic.logs.enumerated() where topic.owners[p] == index {
                stillOwned[ObjectIdentifier(log)] = log
                if owned[ObjectIdentifier(log)] == nil { shard.adopt(log) }
                if log.config != topic.settings.log { log.config = topic.settings.log }  // altered, or adopted
            }
        }
        for (id, log) in owned where stillOwned[id] == nil { dropLog(log) }
        owned = stillOwned
        configureReplication()
    }

    /// The catalog entry of `name`, looking at the catalog again if this shard's copy is stale.
    func topic(_ name: String) -> CatalogTopic? {
        if let topic = topics[name] { return topic }
        refreshTopics()
        return topics[name]
    }

    /// Publishes the high watermarks of the logs appended this turn and wakes the shards
    /// whose parked fetches wait for them.
    private func publishAppends() {
        guard !appended.isEmpty else { return }
        for (log, signal) in appended {
            if !replicaSets.isEmpty, let replicas = replicaSets[log.topicPartition] { advanceHighWatermark(log, replicas) }
            signal.logEnd.store(log.logEndOffset, ordering: .sequentiallyConsistent)
            signal.highWatermark.store(log.highWatermark, ordering: .sequentiallyConsistent)
            if log.epochsVersion != signal.epochsVersion.load(ordering: .relaxed) {  // a new leader epoch, or a cut: rare
                signal.epochs.withLock { $0 = log.epochStarts }
                signal.epochsVersion.store(log.epochsVersion, ordering: .releasing)
            }
            let waiting = signal.interest.exchange(0, ordering: .sequentiallyConsistent)
            guard waiting != 0 else { continue }
            for shard in 0..<mesh.count where waiting & (1 << UInt64(shard)) != 0 && shard != index { mesh.wake(shard) }
        }
        appended.removeAll(keepingCapacity: true)
    }

    /// Sends a request that must run on shard 0 (topics, groups, producer ids) there; its
    /// response comes back as a completion.
    private func forwardToCoordinator(_ frame: UnsafeRawBufferPointer, connection: ConnectionID, sequence: UInt64, nowMs: Int64, session: ClientSession) {
        let bytes = [UInt8](frame)
        let origin = index
        mesh.post(to: 0) { coordinator in
            let outcome = bytes.withUnsafeBytes { coordinator.handle(frame: $0, connection: connection, sequence: sequence, nowMs: nowMs, session: session) }
            switch outcome {
            case .respond(let response):
                let preamble = bytes.withUnsafeBytes { RequestPreamble($0) }
                let completion = Completion(connection: connection, sequence: sequence, correlationId: preamble?.correlationId ?? 0, frame: response)
                coordinator.mesh.post(to: origin) { $0.arrivedCompletions.append(completion) }
            case .pending, .noResponse:
                break  // a pending response is routed back by the coordinator's endOfTurn
            case .close(let reason):
                coordinator.mesh.post(to: origin) { $0.closeRequests.append((connection, reason)) }
            }
        }
    }

    /// Runs `work` on the shard owning each item (grouped, in item order within a shard) and
    /// calls `gathered` on this shard with every result in item order: before returning when
    /// every item is local, else once the last shard has answered. `gathered` returns the
    /// response, or nil when it keeps the request (a fetch parked again).
    func scatter<Item, Result>(
        _ context: RequestContext, _ items: [Item], owner: (Item) -> Int,
        work: @escaping (Broker, [Item]) -> [Result], gathered: @escaping (Broker, [Result]) -> ResponseFrame?
    ) -> HandleOutcome {
        var byShard: [Int: [Int]] = [:]
        for (i, item) in items.enumerated() { byShard[owner(item), default: []].append(i) }
        let gather = Gather<Result>(count: items.count)
        if let local = byShard.removeValue(forKey: index) {
            gather.fill(local, work(self, local.map { items[$0] }))
        }
        if byShard.isEmpty {
            return gathered(self, gather.results()).map { .respond($0) } ?? .pending
        }
        gather.outstanding = byShard.count
        let origin = index
        for (shard, positions) in byShard {
            let share = positions.map { items[$0] }
            mesh.post(to: shard) { owner in
                let results = work(owner, share)
                owner.mesh.post(to: origin) { broker in
                    gather.fill(positions, results)
                    gather.outstanding -= 1
                    guard gather.outstanding == 0, let frame = gathered(broker, gather.results()) else { return }
                    broker.answerLater(frame, context)
                }
            }
        }
        return .pending
    }

    // MARK: Topics

    static func isValidTopicName(_ name: String) -> Bool {
        guard !name.isEmpty, !name.hasPrefix("__"), name.utf8.count <= 249, name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }

    /// A topic to create: its name, partition count and configuration overrides (validated).
    struct TopicSpec {
        var name: String
        var partitions: Int32
        var overrides: [String: String] = [:]
        var id = KafkaUUID.random()
        /// Replicas per partition (cluster mode).
        var replicationFactor = 1
        /// Each partition's replicas as CreateTopics assigned them (cluster mode), the leader first.
        var assignment: [[Int32]]?
    }

    /// Creates topics' partitions (empty logs) and stores their configuration on the disk
    /// worker — directories and files, which may wait on the disk — then publishes them here
    /// (shard 0) and calls `done` with each topic's failure, if any. Until then the names are
    /// reserved in `creating`. A topic that fails part-way (out of descriptors, out of space)
    /// leaves nothing behind: the partitions already opened are closed and their files removed.
    func createTopics(_ specs: [TopicSpec], then done: @escaping (Broker, [String: StorageError]) -> Void) {
        for spec in specs { creating.insert(spec.name) }
        let logs = self.logs, broker = self.config
        mesh.afterDiskWork(on: index, { () -> [UncheckedSendable<Result<[PartitionLog], StorageError>>] in
            specs.map { spec in
                let settings = TopicConfig.settings(spec.overrides, broker: broker)
                var opened: [PartitionLog] = []
                do throws(StorageError) {
                    try logs.writeTopicConfig(spec.name, spec.overrides)
                    for p in 0..<spec.partitions {
                        opened.append(try logs.openLog(TopicPartition(spec.name, p), config: settings.log))
                        try logs.writeTopicId(spec.id, of: TopicPartition(spec.name, p))
                    }
                    return UncheckedSendable(.success(opened))
                } catch {
                    for p in 0..<spec.partitions { try? logs.deleteLog(TopicPartition(spec.name, p)) }
                    try? logs.writeTopicConfig(spec.name, [:])
                    return UncheckedSendable(.failure(error))
                }
            }
        }, then: { broker, results in
            var failures: [String: StorageError] = [:]
            for (spec, result) in zip(specs, results) {
                broker.creating.remove(spec.name)
                switch result.value {
                case .success(let created):
                    broker.mesh.catalog.publish(CatalogTopic(
                        name: spec.name, id: spec.id, logs: created, shards: broker.mesh.count, overrides: spec.overrides,
                        settings: TopicConfig.settings(spec.overrides, broker: broker.config)))
                    broker.logger.info("created topic", metadata: ["topic": "\(spec.name)", "partitions": "\(spec.partitions)"])
                case .failure(let error):
                    failures[spec.name] = error
                    broker.logger.error("could not create topic; its files were removed", metadata: ["topic": "\(spec.name)", "error": "\(error)"])
                }
            }
            broker.refreshTopics()
            done(broker, failures)
        })
    }

    /// Stores `overrides` as the configuration of the topics named (on the disk worker), then
    /// publishes them (shard 0): each owner applies the new log settings at its next turn.
    /// Calls `done` with each topic's failure, if any (the topic then keeps its configuration).
    func reconfigureTopics(_ changes: [(name: String, overrides: [String: String])], then done: @escaping (Broker, [String: StorageError]) -> Void) {
        let logs = self.logs
        mesh.afterDiskWork(on: index, { () -> [UncheckedSendable<StorageError?>] in
            changes.map { change in
                do throws(StorageError) {
                    try logs.writeTopicConfig(change.name, change.overrides)
                    return UncheckedSendable(nil)
                } catch {
                    return UncheckedSendable(error)
                }
            }
        }, then: { broker, results in
            var failures: [String: StorageError] = [:]
            for (change, result) in zip(changes, results) {
                if let error = result.value {
                    failures[change.name] = error
                    broker.logger.error("could not store a topic's configuration", metadata: ["topic": "\(change.name)", "error": "\(error)"])
                } else if let topic = broker.mesh.catalog.snapshot().topics[change.name] {  // not deleted meanwhile
                    broker.mesh.catalog.publish(topic.reconfigured(change.overrides, settings: TopicConfig.settings(change.overrides, broker: broker.config)))
                    broker.logger.info("changed topic configuration", metadata: ["topic": "\(change.name)", "overrides": "\(change.overrides.keys.sorted().map { "\($0)=\(change.overrides[$0]!)" })"])
                }
            }
            broker.refreshTopics()
            done(broker, failures)
        })
    }

    /// Takes a log of a deleted topic offline on its owner: appends staged this turn are
    /// answered with an error, and nothing touches it afterwards.
    func dropLog(_ log: PartitionLog) {
        producerStates[log.topicPartition] = nil
        log.markDeleted()
        shard.release(log)
        owned[ObjectIdentifier(log)] = nil
    }

    /// The log of a partition this shard owns; nil once its topic is deleted (a request parked
    /// since then holds the catalog entry, but the files are going).
    func log(_ topic: CatalogTopic, _ partition: Int32) -> PartitionLog? {
        guard partition >= 0, Int(partition) < topic.partitionCount, topic.owners[Int(partition)] == index else { return nil }
        let log = topic.logs[Int(partition)]
        return log.isDeleted ? nil : log
    }
}

/// A partition a request names that exists, with the request's value for it (an offset, a
/// timestamp), for its owner to work on (``Broker/scatter(_:_:owner:work:gathered:)``).
struct PartitionItem<Value> {
    var topic: CatalogTopic
    var partition: Int32
    var value: Value
    var owner: Int { topic.owners[Int(partition)] }
}

extension Broker {
    /// The partitions a request names, in its order: those that exist as items, and per topic
    /// and partition the index of its item (nil: no such topic or partition).
    func resolve<Value>(_ topics: [(name: String, partitions: [(index: Int32, value: Value)])],
                        allowed: (String) -> Bool = { _ in true }) -> (items: [PartitionItem<Value>], slots: [[Int?]]) {
        var items: [PartitionItem<Value>] = []
        var slots: [[Int?]] = []
        for (name, partitions) in topics {
            let entry = allowed(name) ? topic(name) : nil  // a topic the principal may not touch: as if unknown
            slots.append(partitions.map { p in
                guard let entry, p.index >= 0, Int(p.index) < entry.partitionCount else { return nil }
                items.append(PartitionItem(topic: entry, partition: p.index, value: p.value))
                return items.count - 1
            })
        }
        return (items, slots)
    }
}

/// Results of a ``Broker/scatter(_:_:owner:work:gathered:)`` as they arrive (touched only on
/// the requesting shard).
final class Gather<Result>: @unchecked Sendable {
    private var slots: [Result?]
    var outstanding = 0

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func fill(_ positions: [Int], _ results: [Result]) {
        for (position, result) in zip(positions, results) { slots[position] = result }
    }

    func results() -> [Result] { slots.map { $0! } }
}

/// Hands out producer ids that do not repeat across restarts (seeded from the clock).
struct ProducerIdAllocator {
    var next: Int64

    /// Ids from the start time in milliseconds × 1000 (so a restart never reuses one), with the
    /// node id in bits 52–62, so that brokers of a cluster never hand out the same id.
    init(seed: Int64, nodeId: Int32 = 0) { next = (max(seed, 1) * 1000) & ((1 << 52) - 1) | (Int64(nodeId & 0x7FF) << 52) }

    mutating func allocate() -> Int64 {
        defer { next += 1 }
        return next
    }
}
