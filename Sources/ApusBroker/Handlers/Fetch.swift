import ApusStorage
import KafkaProtocol
import KafkaWire

/// A fetch being answered: its partitions are read by the shards owning them; a fetch with
/// less than `min_bytes` parks until a partition it reads advances or its wait is over.
final class FetchInFlight {
    var context: RequestContext
    let request: FetchRequest
    let deadlineMs: Int64
    /// Partitions in request order, with what the last read found.
    var reads: [Broker.PartitionRead] = []
    /// The catalog entry of each read's topic (nil: unknown topic or partition).
    var topics: [CatalogTopic?] = []
    /// Ends the long poll at once (shutdown).
    var expired = false

    init(context: RequestContext, request: FetchRequest, deadlineMs: Int64) {
        self.context = context
        self.request = request
        self.deadlineMs = deadlineMs
    }
}

extension Broker {
    /// The longest a fetch may be parked, whatever its max_wait_ms says.
    static let maxFetchWaitMs: Int64 = 30_000

    /// Fetch v4–17 (v12+ flexible, v13+ topics by id; v0–3, not advertised, get
    /// UNSUPPORTED_VERSION in every partition), sessionless (session id 0), read_uncommitted. Record data goes from the
    /// segment files to the socket zero-copy: the response carries file ranges between its
    /// encoded parts. Partitions are read by the shards owning them, each with an even share
    /// of the response's byte budget. min bytes / max wait long polls are parked and read again
    /// when a partition they read advances.
    static let fetch = HandlerEntry(api: .fetch, versions: 4...17, legacy: 0...3) { broker, context, r throws(WireError) in
        let request = try FetchRequest.decode(from: &r, version: context.apiVersion)
        guard context.apiVersion >= 4 else {
            // Message formats v0/v1 (Kafka 4.0 dropped them too): every partition is refused.
            let refused = FetchResponse(responses: request.topics.map { topic in
                .init(topic: topic.topic, partitions: topic.partitions.map {
                    .init(partitionIndex: $0.partition, errorCode: ErrorCode.unsupportedVersion.rawValue, highWatermark: -1)
                })
            })
            return broker.respond(refused, context)
        }
        let wait = min(Int64(max(request.maxWaitMs, 0)), Broker.maxFetchWaitMs)
        let fetch = FetchInFlight(context: context, request: request, deadlineMs: context.nowMs + wait)
        let byId = context.apiVersion >= 13
        // A follower's fetch reads past the high watermark and counts as that replica's progress:
        // with ACLs only a principal allowed CLUSTER_ACTION may send one, as in Kafka.
        let replicaRefused = request.follower >= 0 && broker.denyCluster(.clusterAction, context) != nil
        for topic in request.topics {
            let entry = byId ? broker.topics.values.first { $0.id == topic.topicId } : broker.topic(topic.topic)
            // READ on the topic (ACLs); a name is checked whether or not it exists, as Kafka does.
            let readable = entry == nil && byId || broker.authorizedTopic(.read, entry?.name ?? topic.topic, context)
            for p in topic.partitions {
                var read = PartitionRead(topic: entry?.name ?? topic.topic, topicId: topic.topicId, partition: p.partition, error: .none)
                let exists = entry.map { p.partition >= 0 && Int(p.partition) < $0.partitionCount } ?? false
                let led = exists && broker.leads(entry!.name, p.partition)  // cluster mode: another broker may lead it
                let known = readable && led && !replicaRefused
                if !known {
                    read.error = replicaRefused ? .clusterAuthorizationFailed : !readable ? .topicAuthorizationFailed
                        : exists ? .notLeaderOrFollower : entry == nil && byId ? .unknownTopicId : .unknownTopicOrPartition
                }
                fetch.reads.append(read)
                fetch.topics.append(known ? entry : nil)
            }
        }
        return broker.read(fetch)
    }

    struct PartitionRead {
        var topic: String
        /// The id the request named the topic by (v13+).
        var topicId: KafkaUUID = .zero
        var partition: Int32
        var error: ErrorCode
        var highWatermark: Int64 = -1
        /// The log end when read (a follower's fetch waits for it to move).
        var logEnd: Int64 = -1
        var logStartOffset: Int64 = -1
        var range: FileRange?
    }

    /// One partition to read on its owner.
    struct ReadItem {
        var topic: CatalogTopic
        var partition: Int32
        var offset: Int64
        var maxBytes: Int32
        /// The follower fetching (its node id), or -1 for a consumer.
        var replica: Int32 = -1
        /// The leader epoch the fetcher knows (KIP-320), or -1.
        var leaderEpoch: Int32 = -1
    }

    /// Reads the fetch's partitions (on their shards) and answers it, or parks it.
    func read(_ fetch: FetchInFlight) -> HandleOutcome {
        var items: [ReadItem] = []
        var positions: [Int] = []
        var owners = Set<Int>()
        let replica = fetch.request.follower
        var i = 0
        for topic in fetch.request.topics {
            for p in topic.partitions {
                if let entry = fetch.topics[i] {
                    items.append(ReadItem(topic: entry, partition: p.partition, offset: p.fetchOffset, maxBytes: p.partitionMaxBytes,
                                          replica: replica, leaderEpoch: p.currentLeaderEpoch))
                    positions.append(i)
                    owners.insert(entry.owners[Int(p.partition)])
                }
                i += 1
            }
        }
        let budget = min(Int(max(fetch.request.maxBytes, 0)), config.fetchMaxBytes) / max(owners.count, 1)
        return scatter(fetch.context, items, owner: { $0.topic.owners[Int($0.partition)] },
                       work: { owner, share in owner.readPartitions(share, budget: budget) },
                       gathered: { broker, results in
                           for (position, result) in zip(positions, results) { fetch.reads[position] = result }
                           return broker.answerOrPark(fetch)
                       })
    }

    /// Reads partitions this shard owns within `budget` bytes and each partition's limit. The
    /// first partition with data gets at least one whole batch, as Kafka does.
    func readPartitions(_ items: [ReadItem], budget total: Int) -> [PartitionRead] {
        var budget = total
        var anyData = false
        var reads: [PartitionRead] = []
        reads.reserveCapacity(items.count)
        for item in items {
            var read = PartitionRead(topic: item.topic.name, topicId: item.topic.id, partition: item.partition, error: .none)
            guard let log = log(item.topic, item.partition) else {
                read.error = .unknownTopicOrPartition
                reads.append(read)
                continue
            }
            // Checked here, on the owner, and again each time a parked fetch is read: a leader
            // that lost the partition meanwhile must not hand a follower what it wrote after.
            if let error = readRefusal(item.topic.name, item.partition, knownEpoch: item.leaderEpoch) {
                read.error = error
                reads.append(read)
                continue
            }
            read.highWatermark = log.highWatermark
            read.logEnd = log.logEndOffset
            read.logStartOffset = log.logStartOffset
            // A follower reads up to the log end and reports what it has; a consumer reads what
            // every in-sync replica has.
            if item.replica >= 0 { followerFetched(log, replica: item.replica, offset: item.offset) }
            let limit = min(Int(max(item.maxBytes, 0)), budget)
            if limit > 0 || !anyData {
                do {
                    read.range = try log.read(from: item.offset, maxBytes: max(limit, 1), upTo: item.replica >= 0 ? .max : log.highWatermark)
                } catch {
                    read.error = Broker.errorCode(for: error)
                }
            }
            if let range = read.range {
                log.countFetched(range.length)
                anyData = true
                budget = max(0, budget - range.length)
            }
            reads.append(read)
        }
        return reads
    }

    /// The response once the fetch has enough data, an error, or no more time; nil after
    /// parking it.
    private func answerOrPark(_ fetch: FetchInFlight) -> ResponseFrame? {
        let bytes = fetch.reads.reduce(0) { $0 + ($1.range?.length ?? 0) }
        let now = fetch.context.nowMs
        if bytes >= Int(fetch.request.minBytes) || fetch.expired || fetchesExpire || fetch.deadlineMs <= now
            || fetch.reads.contains(where: { $0.error != .none }) {
            return encodeFetch(Broker.limit(fetch.reads, to: min(Int(max(fetch.request.maxBytes, 0)), config.fetchMaxBytes)), fetch.context)
        }
        // Ask the owners of other shards' partitions for a wake-up when they advance, then
        // check once more so that an advance in between is not missed.
        armInterest(fetch)
        parkedFetches.append(fetch)
        if advanced(fetch) { mesh.wake(index) }  // read again next turn
        return nil
    }

    /// Kafka's response limit across every partition and shard: the record data of `reads` is
    /// at most `maxBytes`, except that the first partition with data keeps what its owner read
    /// (at least one whole batch, so that a consumer always progresses). A later partition that
    /// does not fit is cut where the budget ends — a partial batch at the end, as Kafka's own
    /// responses have, which clients skip — or left empty.
    static func limit(_ reads: [PartitionRead], to maxBytes: Int) -> [PartitionRead] {
        var reads = reads
        var remaining = maxBytes
        var first = true
        for i in reads.indices {
            guard let range = reads[i].range, range.length > 0 else { continue }
            if first {
                first = false
            } else if range.length > remaining {
                reads[i].range = remaining > 0 ? FileRange(fd: range.fd, position: range.position, length: remaining, owner: range.owner) : nil
            }
            remaining = max(0, remaining - range.length)
        }
        return reads
    }

    /// Sets this shard's bit in the interest mask of each partition of `fetch` another shard owns
    /// (where it is not set already): the owner wakes this shard when the partition advances.
    private func armInterest(_ fetch: FetchInFlight) {
        let bit = UInt64(1) << UInt64(index)
        for (read, topic) in zip(fetch.reads, fetch.topics) {
            guard let topic else { continue }
            let p = Int(read.partition)
            guard topic.owners[p] != index else { continue }
            let signal = topic.signals[p]
            if signal.interest.load(ordering: .sequentiallyConsistent) & bit == 0 { signal.interest.bitwiseOr(bit, ordering: .sequentiallyConsistent) }
        }
    }

    /// Whether a partition the fetch reads has advanced since it was read.
    private func advanced(_ fetch: FetchInFlight) -> Bool {
        let follower = fetch.request.follower >= 0
        for (read, topic) in zip(fetch.reads, fetch.topics) {
            guard let topic else { continue }
            let signal = topic.signals[Int(read.partition)]
            if follower ? signal.logEnd.load(ordering: .sequentiallyConsistent) > read.logEnd
                : signal.highWatermark.load(ordering: .sequentiallyConsistent) > read.highWatermark { return true }
        }
        return false
    }

    /// Encodes a Fetch response (v4–17: classic encoding to v11, flexible from v12, topic ids
    /// from v13) around the file ranges.
    func encodeFetch(_ reads: [PartitionRead], _ context: RequestContext) -> ResponseFrame {
        let v = context.apiVersion
        let flexible = v >= 12
        func count(_ n: Int, _ w: inout WireWriter) {
            if flexible { w.writeUnsignedVarint(UInt32(n + 1)) } else { w.writeInt32(Int32(n)) }
        }
        var parts: [ResponseFrame.Part] = []
        var w = WireWriter(capacity: 256)
        w.writeInt32(0)  // size, patched below
        ResponseHeader(correlationId: context.correlationId).encode(into: &w, version: context.responseHeaderVersion)
        w.writeInt32(0)  // throttle_time_ms
        if v >= 7 {
            w.writeInt16(0)  // error_code
            w.writeInt32(0)  // session_id
        }
        var topics: [(String, [PartitionRead])] = []
        for read in reads {
            if let last = topics.indices.last, topics[last].0 == read.topic, topics[last].1[0].topicId == read.topicId {
                topics[last].1.append(read)
            } else {
                topics.append((read.topic, [read]))
            }
        }
        count(topics.count, &w)
        var total = 0
        for (name, partitions) in topics {
            if v >= 13 { w.writeUUID(partitions[0].topicId) } else { w.writeString(name, compact: flexible) }
            count(partitions.count, &w)
            for read in partitions {
                w.writeInt32(read.partition)
                w.writeInt16(read.error.rawValue)
                w.writeInt64(read.highWatermark)
                w.writeInt64(read.highWatermark)  // last_stable_offset: no transactions
                if v >= 5 { w.writeInt64(read.logStartOffset) }
                if flexible { w.writeUnsignedVarint(0) } else { w.writeInt32(-1) }  // aborted_transactions: null
                if v >= 11 { w.writeInt32(-1) }  // preferred_read_replica
                let range = read.range.flatMap { $0.length > 0 ? $0 : nil }
                if flexible { w.writeUnsignedVarint(UInt32((range?.length ?? 0) + 1)) } else { w.writeInt32(Int32(range?.length ?? 0)) }
                if let range {
                    total += w.count
                    parts.append(.bytes(w.bytes))
                    parts.append(.file(range))
                    total += range.length
                    w = WireWriter(capacity: 128)
                }
                if flexible { w.writeUnsignedVarint(0) }  // the partition's tagged fields
            }
            if flexible { w.writeUnsignedVarint(0) }  // the topic's tagged fields
        }
        if flexible { w.writeUnsignedVarint(0) }  // the response's tagged fields
        total += w.count
        if w.count > 0 { parts.append(.bytes(w.bytes)) }
        // Patch the size prefix (it lives in the first part).
        if case .bytes(var first) = parts[0] {
            withUnsafeBytes(of: Int32(clamping: total - 4).bigEndian) { for i in 0..<4 { first[i] = $0[i] } }
            parts[0] = .bytes(first)
        }
        return ResponseFrame(parts: parts)
    }

    /// Ends every long poll now (shutdown): parked fetches are answered with what is there.
    public func expireParkedFetches() {
        fetchesExpire = true
        for fetch in parkedFetches { fetch.expired = true }
    }

    /// Reads parked fetches again whose partitions advanced or whose wait is over.
    func completeFetches(nowMs: Int64, into completions: inout [Completion]) {
        guard !parkedFetches.isEmpty else { return }
        var due: [FetchInFlight] = []
        parkedFetches.removeAll { fetch in
            // An owner's wake-up took every shard's interest in the partition, also for fetches
            // it did not satisfy (a replicated partition's high watermark moves without its log
            // end, and the other way round): ask again before looking, so nothing is missed.
            armInterest(fetch)
            let ready = fetch.expired || nowMs >= fetch.deadlineMs || advanced(fetch)
            if ready { due.append(fetch) }
            return ready
        }
        for fetch in due {
            fetch.context.nowMs = nowMs
            if case .respond(let frame) = read(fetch) {
                completions.append(Completion(connection: fetch.context.connection, sequence: fetch.context.sequence,
                                              correlationId: fetch.context.correlationId, frame: frame))
            }
        }
    }
}

extension FetchRequest {
    /// The node id of the follower sending it (`replicaId` up to v14, `replicaState` from v15),
    /// or -1 for a consumer.
    var follower: Int32 { replicaId >= 0 ? replicaId : replicaState.replicaId }
}
