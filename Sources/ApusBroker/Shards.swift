import ApusIO
import ApusStorage
import KafkaWire
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Work for one shard, run on that shard's thread with its broker.
typealias ShardJob = (Broker) -> Void

/// Carries a value that only its home shard touches across a thread that merely passes it on.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// The shards of one broker process and the only ways they touch each other: the topic
/// catalog, and inboxes of jobs. Each shard owns some partitions (``ShardMesh/owner(topic:partition:)``)
/// and its own connections; a request needing another shard's partitions sends that shard a
/// job, whose answer comes back as a job to the sender.
public final class ShardMesh: @unchecked Sendable {
    public let count: Int
    public let catalog: TopicCatalog
    /// SCRAM credentials and ACLs (changed by shard 0, read by all).
    public let security: SecurityStore
    /// The cluster's metadata (`cluster.metadata`), nil for a single broker. Set before the
    /// shards start.
    public var cluster: ClusterMembership?
    private let inboxes: [Inbox]
    /// Jobs posted and not yet finished (shutdown waits for none).
    let inFlight = Atomic<Int>(0)
    /// Bit per shard: set while that shard still has something to finish (shutdown).
    let busy = Atomic<UInt64>(0)

    private final class Inbox: @unchecked Sendable {
        let lock = Mutex<Void>(())
        var jobs: [ShardJob] = []
        /// When the oldest job queued arrived (monotonic ns).
        var oldestNs: UInt64 = 0
        var wake: (@Sendable () -> Void)?
        /// The shard has stopped: nothing posted runs any more.
        var closed = false
    }
    private let shuttingDown = Atomic<Bool>(false)

    /// - Parameter count: shards (1...64).
    public init(count: Int, catalog: TopicCatalog, security: SecurityStore = SecurityStore()) {
        precondition((1...64).contains(count), "1 to 64 shards")
        self.count = count
        self.catalog = catalog
        self.security = security
        inboxes = (0..<count).map { _ in Inbox() }
    }

    /// Installs how shard `index` is woken when a job arrives (its event loop's eventfd).
    /// Call before the shards start.
    public func setWake(_ index: Int, _ wake: @escaping @Sendable () -> Void) {
        inboxes[index].wake = wake
    }

    /// Wakes shard `index` without a job (a partition it watches advanced).
    func wake(_ index: Int) { inboxes[index].wake?() }

    /// Runs `job` on the shard owning the partition (any thread: the replica fetchers).
    public func onOwner(topic: String, partition: Int32, _ job: @escaping (Broker) -> Void) {
        post(to: owner(topic: topic, partition: partition), job)
    }

    /// Queues `job` for shard `index` and wakes it if its inbox was empty. A job for a shard
    /// that has stopped (shutdown) is dropped.
    func post(to index: Int, _ job: @escaping ShardJob) {
        let inbox = inboxes[index]
        let wasEmpty = inbox.lock.withLock { _ -> Bool? in
            guard !inbox.closed else { return nil }
            inFlight.add(1, ordering: .sequentiallyConsistent)
            let empty = inbox.jobs.isEmpty
            if empty { inbox.oldestNs = Sys.monotonicNs() }
            inbox.jobs.append(job)
            return empty
        }
        if wasEmpty == true { inbox.wake?() }
    }

    /// Runs `work` on the disk worker (file work that may wait on the disk), then `job` with
    /// its result on shard `index`. Counted as a job in flight meanwhile, so shutdown waits.
    func afterDiskWork<T: Sendable>(on index: Int, worker: DiskWorker = .shared, _ work: @escaping @Sendable () -> T,
                                     then job: @escaping (Broker, T) -> Void) {
        inFlight.add(1, ordering: .sequentiallyConsistent)
        let continuation = UncheckedSendable(job)
        worker.run { [self] in
            let result = work()
            post(to: index) { broker in continuation.value(broker, result) }
            inFlight.subtract(1, ordering: .sequentiallyConsistent)
        }
    }

    /// Jobs waiting in shard `index`'s inbox (the metrics endpoint's queue depth).
    public func queuedJobs(_ index: Int) -> Int {
        let inbox = inboxes[index]
        return inbox.lock.withLock { _ in inbox.jobs.count }
    }

    /// Stops shard `index`'s inbox: jobs still queued are dropped, later ones refused.
    public func close(_ index: Int) {
        let inbox = inboxes[index]
        let dropped = inbox.lock.withLock { _ in
            inbox.closed = true
            defer { inbox.jobs.removeAll() }
            return inbox.jobs.count
        }
        if dropped > 0 { inFlight.subtract(dropped, ordering: .sequentiallyConsistent) }
    }

    /// Takes every job queued for shard `index`, and how long the oldest of them waited (0
    /// when there was none).
    func take(_ index: Int) -> (jobs: [ShardJob], waitedNs: UInt64) {
        let inbox = inboxes[index]
        let (jobs, oldest) = inbox.lock.withLock { _ in
            defer { inbox.jobs.removeAll(keepingCapacity: true) }
            return (inbox.jobs, inbox.oldestNs)
        }
        guard !jobs.isEmpty else { return (jobs, 0) }
        let now = Sys.monotonicNs()
        return (jobs, now &- min(oldest, now))
    }

    /// The shard owning partition `partition` of `topic`: consecutive partitions go to
    /// consecutive shards, from a start that depends on the topic name (FNV-1a), so that
    /// single-partition topics spread too. Stable for a given shard count.
    public func owner(topic: String, partition: Int32) -> Int {
        Self.owner(topic: topic, partition: partition, shards: count)
    }

    static func owner(topic: String, partition: Int32, shards count: Int) -> Int {
        // Shard 0 keeps the groups, so it owns their offsets logs.
        guard count > 1, topic != consumerOffsetsTopic else { return 0 }
        return Int((fnv1a(topic) &+ UInt64(partition)) % UInt64(count))
    }

    /// Marks every shard busy until it reports itself idle (``Broker/reportIdle(_:)``), so
    /// that no shard stops while another may still send it work.
    public func beginShutdown() {
        // Once: a second signal must not mark shards busy that have already stopped.
        guard shuttingDown.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged else { return }
        busy.store(count == 64 ? .max : (UInt64(1) << UInt64(count)) - 1, ordering: .sequentiallyConsistent)
    }

    /// Whether every shard has finished its work and no job is under way (shutdown).
    var quiescent: Bool {
        busy.load(ordering: .sequentiallyConsistent) == 0 && inFlight.load(ordering: .sequentiallyConsistent) == 0
    }
}

/// What another shard may read about a partition without touching its log: the high
/// watermark its owner published after its last commit, and which shards wait for it to move
/// (long-poll fetches parked there).
final class PartitionSignal: Sendable {
    let highWatermark: Atomic<Int64>
    /// The log end (what a follower's fetch waits for; the high watermark lags it when the
    /// partition is replicated).
    let logEnd: Atomic<Int64>
    let interest = Atomic<UInt64>(0)
    /// The log's leader epoch cache as its owner last published it (OffsetForLeaderEpoch is
    /// answered on any shard), and the log's `epochsVersion` it was published at.
    let epochs: Mutex<[EpochStart]>
    let epochsVersion: Atomic<UInt64>

    init(_ log: PartitionLog) {
        highWatermark = Atomic(log.highWatermark)
        logEnd = Atomic(log.logEndOffset)
        epochs = Mutex(log.epochStarts)
        epochsVersion = Atomic(log.epochsVersion)
    }
}

/// A topic as published in the catalog: immutable; its logs are touched only by their owners.
/// A configuration change or new partitions publish a new entry sharing the logs and signals.
public final class CatalogTopic: @unchecked Sendable {
    public let name: String
    /// The topic id (persisted in each partition's `partition.metadata`).
    let id: KafkaUUID
    let logs: [PartitionLog]
    let owners: [Int]
    let signals: [PartitionSignal]
    /// The topic's own configuration (dynamic topic configs), persisted by the coordinator.
    let overrides: [String: String]
    /// What the topic runs with: the broker's defaults with `overrides` applied.
    let settings: TopicSettings

    var partitionCount: Int { logs.count }

    init(name: String, id: KafkaUUID, logs: [PartitionLog], shards: Int, overrides: [String: String], settings: TopicSettings) {
        self.name = name
        self.id = id
        self.logs = logs
        owners = logs.indices.map { ShardMesh.owner(topic: name, partition: Int32($0), shards: shards) }
        signals = logs.map(PartitionSignal.init)
        self.overrides = overrides
        self.settings = settings
    }

    private init(_ topic: CatalogTopic, logs: [PartitionLog], signals: [PartitionSignal], owners: [Int],
                 overrides: [String: String], settings: TopicSettings) {
        name = topic.name
        id = topic.id
        self.logs = logs
        self.signals = signals
        self.owners = owners
        self.overrides = overrides
        self.settings = settings
    }

    /// This topic with another configuration.
    func reconfigured(_ overrides: [String: String], settings: TopicSettings) -> CatalogTopic {
        CatalogTopic(self, logs: logs, signals: signals, owners: owners, overrides: overrides, settings: settings)
    }

    /// This topic with `added` partitions after its own.
    func extended(_ added: [PartitionLog], shards: Int) -> CatalogTopic {
        let owners = self.owners + added.indices.map { ShardMesh.owner(topic: name, partition: Int32(logs.count + $0), shards: shards) }
        return CatalogTopic(self, logs: logs + added, signals: signals + added.map(PartitionSignal.init),
                            owners: owners, overrides: overrides, settings: settings)
    }
}

/// Every topic of the broker, shared by the shards. Shard 0 (the coordinator) creates and
/// deletes topics; every shard reads a snapshot, refreshed when ``version`` moves.
public final class TopicCatalog: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private var topics: [String: CatalogTopic] = [:]
    let version = Atomic<UInt64>(1)

    public init() {}

    /// Opens every partition log found in the data directory (recovering them if the last
    /// shutdown was not clean) with its topic's configuration and publishes their topics; the
    /// internal offsets topic is left to the coordinator shard, unless it is a cluster's
    /// replicated topic (`replicatedOffsets`), which is loaded like any other.
    public static func load(logs: LogManager, shards: Int, broker: BrokerConfig, logger: Logger, nowMs: Int64,
                            replicatedOffsets: Bool = false) throws(StorageError) -> TopicCatalog {
        let catalog = TopicCatalog()
        var found: [String: [Int32: PartitionLog]] = [:]
        let existing = try logs.existingPartitions()
        let overrides = try logs.topicConfigs()
        for tp in existing where replicatedOffsets || tp.topic != Broker.offsetsTopic {
            let settings = TopicConfig.settings(overrides[tp.topic] ?? [:], broker: broker)
            do {
                found[tp.topic, default: [:]][tp.partition] = try logs.openLog(tp, config: settings.log, nowMs: nowMs)
            } catch .io(let error) where error.errno == EMFILE || error.errno == ENFILE {
                // Say what to change rather than fail on some partition with a bare errno.
                throw .io(SystemError(error.call, errno: error.errno, "opening \(tp) of \(existing.count) partitions: each open segment "
                    + "holds 3 descriptors and the open-files limit is \(Sys.openFileLimit()); raise it (ulimit -n, or LimitNOFILE= in "
                    + "the service file)"))
            }
        }
        for (topic, partitions) in found {
            // A topic's partitions are 0..<n; a gap means a damaged data directory.
            let ordered = partitions.keys.sorted()
            guard ordered == Array(0..<Int32(ordered.count)) else {
                logger.error("topic has missing partitions; ignoring it", metadata: ["topic": "\(topic)", "partitions": "\(ordered)"])
                continue
            }
            let own = overrides[topic] ?? [:]
            // Topics from before topic ids (or a lost file) get one now, written to every partition.
            let tps = ordered.map { TopicPartition(topic, $0) }
            let id: KafkaUUID
            if let stored = tps.lazy.compactMap({ logs.topicId(of: $0) }).first {
                id = stored
            } else {
                id = KafkaUUID.random()
                logger.info("gave the topic an id", metadata: ["topic": "\(topic)", "id": "\(id.base64URL)"])
            }
            for tp in tps where logs.topicId(of: tp) != id { try logs.writeTopicId(id, of: tp) }
            catalog.publish(CatalogTopic(name: topic, id: id, logs: ordered.map { partitions[$0]! }, shards: shards,
                                         overrides: own, settings: TopicConfig.settings(own, broker: broker)))
        }
        if !found.isEmpty {
            logger.info("loaded topics", metadata: ["count": "\(found.count)", "partitions": "\(found.values.reduce(0) { $0 + $1.count })"])
        }
        return catalog
    }

    func snapshot() -> (version: UInt64, topics: [String: CatalogTopic]) {
        lock.withLock { _ in (version.load(ordering: .relaxed), topics) }
    }

    func publish(_ topic: CatalogTopic) {
        lock.withLock { _ in
            topics[topic.name] = topic
            version.add(1, ordering: .releasing)
        }
    }

    @discardableResult
    func remove(_ name: String) -> CatalogTopic? {
        lock.withLock { _ in
            defer { version.add(1, ordering: .releasing) }
            return topics.removeValue(forKey: name)
        }
    }
}

/// FNV-1a (64-bit) of a name: the same on every broker and every run (Swift's `hashValue` is
/// seeded per process), for shard ownership and cluster placement.
func fnv1a(_ name: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in name.utf8 {
        hash ^= UInt64(byte)
        hash &*= 0x100_0000_01b3
    }
    return hash
}
