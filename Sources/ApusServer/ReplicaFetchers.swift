import ApusBroker
import ApusClient
import ApusStorage
import Foundation
import KafkaProtocol
import Logging
import Synchronization

/// The follower side of replication (cluster mode): one thread per leader this broker follows
/// partitions of, as Kafka's replica fetcher threads. Each sends the leader Fetch requests with
/// this broker's id as the replica id (so the leader serves its log end and counts the fetch
/// offsets as this broker's progress), one long poll for all the partitions it follows there,
/// and hands each partition's batches to the shard owning its log, which appends them with the
/// leader's offsets. Blocking sockets, on threads of their own: never a shard.
final class ReplicaFetchers: @unchecked Sendable {
    private let mesh: ShardMesh
    private let nodeId: Int32
    /// The listener followers connect to on their leaders (the first PLAINTEXT one).
    private let listener: String
    private let logger: Logger
    private let fetchers = Mutex<[Int32: ReplicaFetcher]>([:])
    private let stopped = Atomic<Bool>(false)

    init(mesh: ShardMesh, nodeId: Int32, listener: String, logger: Logger) {
        self.mesh = mesh
        self.nodeId = nodeId
        self.listener = listener
        self.logger = logger
    }

    /// The cluster view moved: each live leader's fetcher gets the partitions this broker follows
    /// there; fetchers of leaders it no longer follows stop.
    func update(_ state: ClusterState) {
        guard !stopped.load(ordering: .acquiring) else { return }
        var wanted: [Int32: Set<TopicPartition>] = [:]
        for (name, topic) in state.topics {
            for p in topic.replicas.indices {
                let leader = topic.leaders[p]
                guard topic.replicas[p].count > 1, topic.replicas[p].contains(nodeId), leader != nodeId, state.isLive(leader) else { continue }
                wanted[leader, default: []].insert(TopicPartition(name, Int32(p)))
            }
        }
        var retired: [ReplicaFetcher] = []
        fetchers.withLock { fetchers in
            for (leader, fetcher) in fetchers where wanted[leader] == nil {
                retired.append(fetcher)
                fetchers[leader] = nil
            }
            for (leader, partitions) in wanted {
                guard let broker = state.brokers.first(where: { $0.nodeId == leader }), let address = broker.listeners[listener] else { continue }
                if let fetcher = fetchers[leader], fetcher.address == address {
                    fetcher.follow(partitions)
                    continue
                }
                if let old = fetchers[leader] { retired.append(old) }
                let fetcher = ReplicaFetcher(leader: leader, address: address, nodeId: nodeId, mesh: mesh, logger: logger)
                fetcher.follow(partitions)
                fetcher.start()
                fetchers[leader] = fetcher
            }
        }
        for fetcher in retired { fetcher.stop() }
    }

    /// Stops every fetcher (shutdown begins: the shards will take no more jobs).
    func stop() {
        stopped.store(true, ordering: .releasing)
        let all = fetchers.withLock { fetchers in
            defer { fetchers.removeAll() }
            return Array(fetchers.values)
        }
        for fetcher in all { fetcher.stop() }
    }
}

/// Fetches the partitions this broker follows on one leader.
private final class ReplicaFetcher: @unchecked Sendable {
    let leader: Int32
    let address: ClusterState.Address
    let nodeId: Int32
    let mesh: ShardMesh
    let logger: Logger
    private let partitions = Mutex<Set<TopicPartition>>([])
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    /// Where each followed partition's next fetch starts (the local log end), and the leader
    /// epoch it fetches at (sent to the leader, and checked by the append: KIP-320).
    private var offsets: [TopicPartition: (offset: Int64, epoch: Int32)] = [:]
    /// Partitions set aside until then (their log diverged from the leader's, or failed).
    private var resting: [TopicPartition: Date] = [:]
    private var lastWarning = Date.distantPast

    init(leader: Int32, address: ClusterState.Address, nodeId: Int32, mesh: ShardMesh, logger: Logger) {
        self.leader = leader
        self.address = address
        self.nodeId = nodeId
        self.mesh = mesh
        self.logger = logger
    }

    func follow(_ set: Set<TopicPartition>) { partitions.withLock { $0 = set } }

    func start() {
        let thread = Thread { [self] in
            run()
            done.signal()
        }
        thread.name = "apus-replica-\(leader)"
        thread.start()
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        done.wait()
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    private func run() {
        var connection: KafkaConnection?
        while !isStopping {
            let followed = partitions.withLock { $0 }
            offsets = offsets.filter { followed.contains($0.key) }
            let now = Date()
            resting = resting.filter { $0.value > now }
            var asks: [TopicPartition: (followedEpoch: Int32, lastEpoch: Int32)] = [:]
            for tp in followed where offsets[tp] == nil && resting[tp] == nil {
                switch onOwner(tp, { [leader] in $0.followerStart(topic: tp.topic, partition: tp.partition, leader: leader) }) ?? nil {
                case .fetch(let from, let epoch)?: offsets[tp] = (from, epoch)
                case .askLeader(let epoch, let last?)?: asks[tp] = (epoch, last)
                case .askLeader(let epoch, nil)?:  // no epochs here: cut to the high watermark
                    _ = onOwner(tp) { $0.decideTruncation(topic: tp.topic, partition: tp.partition, followedEpoch: epoch, leaderEpoch: -1, leaderEndOffset: -1) }
                case nil: break
                }
            }
            let ready = offsets.filter { resting[$0.key] == nil }
            if ready.isEmpty && asks.isEmpty {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            do {
                if connection == nil {
                    connection = try KafkaConnection(bootstrap: "\(address.host):\(address.port)", clientId: "apus-replica-\(nodeId)")
                }
                if !asks.isEmpty { try askLeader(asks, connection!) }
                if !ready.isEmpty { apply(try connection!.roundTrip(request(ready), version: 12)) }
            } catch {
                connection = nil
                warn("fetching from the leader failed; retrying", ["error": "\(error)"])
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    /// KIP-279: asks the leader where each partition's last local epoch ends, and has the owning
    /// shard cut the log there before it fetches; an error leaves the partition resting a moment.
    private func askLeader(_ asks: [TopicPartition: (followedEpoch: Int32, lastEpoch: Int32)], _ connection: KafkaConnection) throws {
        var request = OffsetForLeaderEpochRequest()
        request.replicaId = nodeId
        for (name, entries) in Dictionary(grouping: asks, by: \.key.topic).sorted(by: { $0.key < $1.key }) {
            request.topics.append(.init(topic: name, partitions: entries.map {
                .init(partition: $0.key.partition, currentLeaderEpoch: $0.value.followedEpoch, leaderEpoch: $0.value.lastEpoch)
            }))
        }
        let response = try connection.roundTrip(request, version: 4)
        for topic in response.topics {
            for result in topic.partitions {
                let tp = TopicPartition(topic.topic, result.partition)
                guard let ask = asks[tp] else { continue }
                guard result.errorCode == 0 else {
                    resting[tp] = Date().addingTimeInterval(0.5)  // the view will move (fenced, not the leader…)
                    continue
                }
                _ = onOwner(tp) { broker in
                    broker.decideTruncation(topic: tp.topic, partition: tp.partition, followedEpoch: ask.followedEpoch,
                                            leaderEpoch: result.leaderEpoch, leaderEndOffset: result.endOffset)
                }
            }
        }
    }

    /// One long poll for every partition ready to fetch.
    private func request(_ ready: [TopicPartition: (offset: Int64, epoch: Int32)]) -> FetchRequest {
        var request = FetchRequest()
        request.replicaId = nodeId
        request.maxWaitMs = 500
        request.minBytes = 1
        request.maxBytes = 16 << 20
        for (name, entries) in Dictionary(grouping: ready, by: \.key.topic).sorted(by: { $0.key < $1.key }) {
            request.topics.append(.init(topic: name, partitions: entries.sorted { $0.key.partition < $1.key.partition }.map {
                .init(partition: $0.key.partition, currentLeaderEpoch: $0.value.epoch, fetchOffset: $0.value.offset, partitionMaxBytes: 4 << 20)
            }))
        }
        return request
    }

    /// Hands each partition's batches to the shard owning its log and waits for their appends.
    private func apply(_ response: FetchResponse) {
        for topic in response.responses {
            for part in topic.partitions {
                let tp = TopicPartition(topic.topic, part.partitionIndex)
                guard let epoch = offsets[tp]?.epoch else { continue }
                switch ErrorCode(rawValue: part.errorCode) {
                case ErrorCode.none?:
                    let records = part.records ?? []
                    let mark = part.highWatermark
                    let outcome = onOwner(tp) { broker in
                        broker.appendReplicated(topic: tp.topic, partition: tp.partition, records: records, fetchedAtEpoch: epoch,
                                                leaderHighWatermark: mark, nowMs: Int64(Date().timeIntervalSince1970 * 1000))
                    }
                    switch outcome {
                    case .success(let end)?: offsets[tp]?.offset = end
                    case .failure(.fenced)?:  // the leader changed meanwhile: start again with the view
                        offsets[tp] = nil
                    case .failure(let error)?:
                        warn("a replicated append failed; refetching from the log end", ["partition": "\(tp)", "error": "\(error)"])
                        offsets[tp] = nil
                        resting[tp] = Date().addingTimeInterval(1)
                    case nil: offsets[tp] = nil
                    }
                case .offsetOutOfRange?:
                    // The local log ends past the leader's (a divergent tail) or before its start:
                    // ask the leader again where this log's last epoch ends, cut it there.
                    warn("the local log does not match the leader's; asking where to cut it",
                         ["partition": "\(tp)", "fetchOffset": "\(offsets[tp]?.offset ?? -1)", "leaderHighWatermark": "\(part.highWatermark)"])
                    _ = onOwner(tp) { $0.refollow(topic: tp.topic, partition: tp.partition) }
                    offsets[tp] = nil
                    resting[tp] = Date().addingTimeInterval(1)
                default:
                    // NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
                    // UNKNOWN_TOPIC_OR_PARTITION…: the view will move.
                    offsets[tp] = nil
                    resting[tp] = Date().addingTimeInterval(0.5)
                }
            }
        }
    }

    /// Runs `body` on the shard owning `tp` and waits for its result (nil if the shard did not run
    /// it within 5 s, or shutdown began).
    private func onOwner<T: Sendable>(_ tp: TopicPartition, _ body: @escaping @Sendable (Broker) -> T) -> T? {
        let result = Mutex<T?>(nil)
        let ran = DispatchSemaphore(value: 0)
        mesh.onOwner(topic: tp.topic, partition: tp.partition) { broker in
            result.withLock { $0 = body(broker) }
            ran.signal()
        }
        for _ in 0..<50 where !isStopping {
            if ran.wait(timeout: .now() + 0.1) == .success { return result.withLock { $0 } }
        }
        return nil
    }

    /// A warning at most once a second per leader.
    private func warn(_ message: Logger.Message, _ metadata: Logger.Metadata) {
        let now = Date()
        guard now.timeIntervalSince(lastWarning) >= 1 else { return }
        lastWarning = now
        var metadata = metadata
        metadata["leader"] = "\(leader)"
        logger.warning(message, metadata: metadata)
    }
}
