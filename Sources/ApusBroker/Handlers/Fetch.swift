import ApusStorage
import KafkaProtocol
import KafkaWire

/// A fetch waiting for `fetch.min.bytes` of data or its `max.wait.ms` deadline.
struct ParkedFetch {
    var context: RequestContext
    var request: FetchRequest
    var deadlineMs: Int64
}

extension Broker {
    /// The longest a fetch may be parked, whatever its max_wait_ms says.
    static let maxFetchWaitMs: Int64 = 30_000

    /// Fetch v4–11, sessionless (session id 0), read_uncommitted. Record data goes from the
    /// segment files to the socket zero-copy: the response carries file ranges between its
    /// encoded parts. min bytes / max wait long polls are parked and re-checked after every
    /// turn's commit.
    static let fetch = HandlerEntry(api: .fetch, versions: 4...11) { broker, context, r throws(WireError) in
        let request = try FetchRequest.decode(from: &r, version: context.apiVersion)
        let reads = broker.readFetch(request)
        let bytes = reads.reduce(0) { $0 + ($1.range?.length ?? 0) }
        if bytes < Int(request.minBytes) && request.maxWaitMs > 0 && !reads.contains(where: { $0.error != .none }) {
            let wait = min(Int64(request.maxWaitMs), Broker.maxFetchWaitMs)
            broker.parkedFetches.append(ParkedFetch(context: context, request: request, deadlineMs: context.nowMs + wait))
            return .pending
        }
        return .respond(broker.encodeFetch(reads, context))
    }

    struct PartitionRead {
        var topic: String
        var partition: Int32
        var error: ErrorCode
        var highWatermark: Int64 = -1
        var logStartOffset: Int64 = -1
        var range: FileRange?
    }

    /// Reads every requested partition within the request's and each partition's byte limits.
    /// The first partition with data gets at least one whole batch, as Kafka does.
    func readFetch(_ request: FetchRequest) -> [PartitionRead] {
        var budget = min(Int(max(request.maxBytes, 0)), config.fetchMaxBytes)
        var reads: [PartitionRead] = []
        var anyData = false
        for topic in request.topics {
            for p in topic.partitions {
                var read = PartitionRead(topic: topic.topic, partition: p.partition, error: .none)
                guard let log = log(topic.topic, p.partition) else {
                    read.error = .unknownTopicOrPartition
                    reads.append(read)
                    continue
                }
                read.highWatermark = log.highWatermark
                read.logStartOffset = log.logStartOffset
                let limit = min(Int(max(p.partitionMaxBytes, 0)), budget)
                if limit > 0 || !anyData {
                    do {
                        read.range = try log.read(from: p.fetchOffset, maxBytes: max(limit, 1))
                    } catch {
                        read.error = Broker.errorCode(for: error)
                    }
                }
                if let range = read.range {
                    anyData = true
                    budget = max(0, budget - range.length)
                }
                reads.append(read)
            }
        }
        return reads
    }

    /// Encodes a Fetch response (v4–11, classic encoding) around the file ranges.
    func encodeFetch(_ reads: [PartitionRead], _ context: RequestContext) -> ResponseFrame {
        let v = context.apiVersion
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
            if let last = topics.indices.last, topics[last].0 == read.topic { topics[last].1.append(read) } else { topics.append((read.topic, [read])) }
        }
        w.writeInt32(Int32(topics.count))
        var total = 0
        for (name, partitions) in topics {
            w.writeString(name, compact: false)
            w.writeInt32(Int32(partitions.count))
            for read in partitions {
                w.writeInt32(read.partition)
                w.writeInt16(read.error.rawValue)
                w.writeInt64(read.highWatermark)
                w.writeInt64(read.highWatermark)  // last_stable_offset: no transactions
                if v >= 5 { w.writeInt64(read.logStartOffset) }
                w.writeInt32(-1)  // aborted_transactions: null
                if v >= 11 { w.writeInt32(-1) }  // preferred_read_replica
                let range = read.range.flatMap { $0.length > 0 ? $0 : nil }
                w.writeInt32(Int32(range?.length ?? 0))
                if let range {
                    total += w.count
                    parts.append(.bytes(w.bytes))
                    parts.append(.file(range))
                    total += range.length
                    w = WireWriter(capacity: 128)
                }
            }
        }
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
        for i in parkedFetches.indices { parkedFetches[i].deadlineMs = 0 }
    }

    /// Answers parked fetches that now have enough data or whose wait is over.
    func completeFetches(nowMs: Int64, into completions: inout [Completion]) {
        guard !parkedFetches.isEmpty else { return }
        var still: [ParkedFetch] = []
        for parked in parkedFetches {
            let reads = readFetch(parked.request)
            let bytes = reads.reduce(0) { $0 + ($1.range?.length ?? 0) }
            if bytes >= Int(parked.request.minBytes) || nowMs >= parked.deadlineMs || reads.contains(where: { $0.error != .none }) {
                completions.append(Completion(connection: parked.context.connection, sequence: parked.context.sequence, correlationId: parked.context.correlationId,
                                              frame: encodeFetch(reads, parked.context)))
            } else {
                still.append(parked)
            }
        }
        parkedFetches = still
    }
}
