import ApusStorage
import KafkaProtocol
import KafkaWire

/// A produce request whose batches were staged this turn and whose response waits for the
/// commit (acks 0/1), for the sync covering it (acks=all under an fsync durability mode), and
/// for the shards owning its other partitions.
///
/// On an owner shard the same type holds the part another shard sent (``reply`` set): its
/// partition results go back to that shard instead of becoming a response.
final class PendingProduce {
    let context: RequestContext
    let acks: Int16
    /// acks=all on a replicated partition: when waiting for the in-sync replicas ends with
    /// REQUEST_TIMED_OUT (the request's timeout).
    var replicationDeadlineMs: Int64?
    var timeoutMs: Int32 = 30_000
    var response: ProduceResponse
    /// (topic index, partition index in the response) → log and the last offset to wait for.
    typealias Wait = (topic: Int, partition: Int, log: PartitionLog, lastOffset: Int64)
    var waits: [Wait] = []
    /// The request's batches (from a shard's ``BatchBuffers``), owned until the commit has
    /// written them, then given back; freed if the request is dropped first.
    var buffers: [UnsafeMutableRawBufferPointer] = []
    /// The shard whose pool `buffers` came from when it is another one (this is the owner's
    /// part of a request that shard read): they go back there, so that its pool does not drain.
    var buffersFrom: Int?
    var abandoned = false
    /// Parts sent to other shards and not answered yet.
    var outstanding = 0
    /// Set on an owner shard: sends the partition results to the requesting shard.
    var reply: (([ProduceResponse.PartitionProduceResponse]) -> Void)?

    init(context: RequestContext, acks: Int16, response: ProduceResponse) {
        self.context = context
        self.acks = acks
        self.response = response
    }

    deinit { buffers.forEach { $0.deallocate() } }
}

/// One partition's batches sent to the shard that owns it (the buffer is owned by the job).
struct RemoteAppend {
    var topic: CatalogTopic
    var partition: Int32
    var batches: UnsafeMutableRawBufferPointer
    /// Where its result goes in the requesting shard's response.
    var position: (topic: Int, partition: Int)
}

/// A Produce request read in place: record sections are slices of the request frame (valid
/// only while the frame is), so each batch is copied once, into the buffer the log stages.
/// The generated `ProduceRequest` decoder would first copy every records field into an array.
struct ProduceRequestView {
    struct Partition {
        var index: Int32
        var records: UnsafeRawBufferPointer?
    }

    var acks: Int16
    var timeoutMs: Int32
    var topics: [(name: String, partitions: [Partition])]

    init(from r: inout WireReader, version: Int16) throws(WireError) {
        r.message = ProduceRequest.messageName
        r.version = version
        guard ProduceRequest.validVersions.contains(version) else { throw r.error(.unsupportedVersion) }
        let flexible = ProduceRequest.isFlexible(version)
        if version >= 3 {
            r.field = "ProduceRequest.TransactionalId"
            _ = try r.readNullableString(compact: flexible)
        }
        r.field = "ProduceRequest.Acks"
        acks = try r.readInt16()
        r.field = "ProduceRequest.TimeoutMs"
        timeoutMs = try r.readInt32()
        r.field = "ProduceRequest.TopicData"
        topics = try r.readArray(compact: flexible, minElementSize: 1) { (r: inout WireReader) throws(WireError) in
            r.field = "TopicProduceData.Name"
            let name = try r.readString(compact: flexible)
            r.field = "TopicProduceData.PartitionData"
            let partitions = try r.readArray(compact: flexible, minElementSize: 1) { (r: inout WireReader) throws(WireError) in
                r.field = "PartitionProduceData.Index"
                let index = try r.readInt32()
                r.field = "PartitionProduceData.Records"
                var records: UnsafeRawBufferPointer?
                if let length = try r.readLength(compact: flexible, wide: true) { records = try r.readRawBytes(length) }
                if flexible { try r.skipTaggedFields() }
                return Partition(index: index, records: records)
            }
            if flexible { try r.skipTaggedFields() }
            return (name, partitions)
        }
        if flexible { try r.skipTaggedFields() }
    }
}

extension Broker {
    /// Produce v3–11 (v9+ flexible; v0–2, not advertised, are answered with UNSUPPORTED_VERSION in every
    /// partition: they carry legacy message sets). Batches are validated (CRC, size, magic), given offsets and staged by the shard
    /// owning their partition; the response is sent after the turn's group commit, or after the
    /// sync for acks=all when the log's durability mode asks for one, once every shard involved
    /// has answered. acks=0 gets no response.
    static let produce = HandlerEntry(api: .produce, versions: 3...11, legacy: 0...2) { broker, context, r throws(WireError) in
        let request = try ProduceRequestView(from: &r, version: context.apiVersion)
        var response = ProduceResponse()
        let pending = PendingProduce(context: context, acks: request.acks, response: response)
        pending.timeoutMs = max(request.timeoutMs, 0)
        var remote: [Int: [RemoteAppend]] = [:]
        for (t, topic) in request.topics.enumerated() {
            var out = ProduceResponse.TopicProduceResponse(name: topic.name)
            let entry = broker.topic(topic.name)
            let writable = broker.authorizedTopic(.write, topic.name, context)
            for (p, partition) in topic.partitions.enumerated() {
                var result = ProduceResponse.PartitionProduceResponse(index: partition.index)
                result.error(broker.route(partition, topic: entry, writable: writable, acks: request.acks, into: pending, at: (t, p), result: &result, remote: &remote))
                out.partitionResponses.append(result)
            }
            response.responses.append(out)
        }
        pending.response = response
        for (owner, appends) in remote { broker.send(appends, to: owner, for: pending) }
        broker.pendingProduces.append(pending)
        return request.acks == 0 ? .noResponse : .pending
    }

    /// Checks one partition's part of the request, copies its batches out of the frame (the
    /// one copy) and stages them here or queues them for the owning shard.
    /// - Returns: the error code (0 when staged or queued).
    private func route(
        _ partition: ProduceRequestView.Partition, topic: CatalogTopic?, writable: Bool, acks: Int16, into pending: PendingProduce,
        at position: (Int, Int), result: inout ProduceResponse.PartitionProduceResponse, remote: inout [Int: [RemoteAppend]]
    ) -> ErrorCode {
        if pending.context.apiVersion < 3 { return .unsupportedVersion }
        if ![-1, 0, 1].contains(acks) { return .invalidRequiredAcks }
        guard writable else { return .topicAuthorizationFailed }  // WRITE on the topic (ACLs)
        guard let topic, partition.index >= 0, Int(partition.index) < topic.partitionCount else { return .unknownTopicOrPartition }
        guard topic.name != Broker.offsetsTopic else { return .invalidTopic }  // the coordinators write it, clients do not
        guard leads(topic.name, partition.index) else { return .notLeaderOrFollower }  // cluster mode: another broker leads it
        guard let records = partition.records, !records.isEmpty else { return .corruptMessage }
        let owned = batchBuffers.take(records.count)
        owned.copyMemory(from: records)
        let owner = topic.owners[Int(partition.index)]
        if owner != index {
            remote[owner, default: []].append(RemoteAppend(topic: topic, partition: partition.index, batches: owned, position: position))
            return .none
        }
        pending.buffers.append(owned)
        return stage(owned, topic: topic, partition: partition.index, acks: acks, into: pending, at: position, result: &result)
    }

    /// Sends partitions owned by shard `owner` there; their results come back into `pending`.
    private func send(_ appends: [RemoteAppend], to owner: Int, for pending: PendingProduce) {
        let origin = index
        let context = pending.context
        let acks = pending.acks
        let timeoutMs = pending.timeoutMs
        if acks != 0 { pending.outstanding += 1 }
        mesh.post(to: owner) { broker in
            // The owner's part: one pseudo-topic whose partitions are the appends, in order.
            var part = ProduceResponse.TopicProduceResponse(name: "")
            let sub = PendingProduce(context: context, acks: acks, response: ProduceResponse())
            sub.timeoutMs = timeoutMs
            sub.buffersFrom = origin
            for (i, append) in appends.enumerated() {
                var result = ProduceResponse.PartitionProduceResponse(index: append.partition)
                sub.buffers.append(append.batches)
                result.error(broker.stage(append.batches, topic: append.topic, partition: append.partition, acks: acks, into: sub, at: (0, i), result: &result))
                part.partitionResponses.append(result)
            }
            sub.response.responses = [part]
            if acks != 0 {
                sub.reply = { results in
                    broker.mesh.post(to: origin) { _ in
                        for (append, result) in zip(appends, results) {
                            pending.response.responses[append.position.topic].partitionResponses[append.position.partition] = result
                        }
                        pending.outstanding -= 1
                    }
                }
            }
            broker.pendingProduces.append(sub)
        }
    }

    /// Validates and stages one partition's batches (`owned`, freed with `pending`) on a log
    /// this shard owns; returns the error code (0 on success).
    func stage(
        _ owned: UnsafeMutableRawBufferPointer, topic: CatalogTopic, partition: Int32, acks: Int16,
        into pending: PendingProduce, at position: (Int, Int), result: inout ProduceResponse.PartitionProduceResponse
    ) -> ErrorCode {
        guard let log = log(topic, partition) else { return .unknownTopicOrPartition }
        let settings = topic.settings
        // acks=all needs min.insync.replicas in sync (one, the leader, without replication).
        if acks == -1 && (replication(topic.name, partition)?.isr.count ?? 1) < settings.minInsyncReplicas { return .notEnoughReplicas }
        // Every batch is validated before any is staged.
        var batches: [UnsafeMutableRawBufferPointer] = []
        var sequence = RecordBatchSequence(UnsafeRawBufferPointer(owned), validate: true, maxBatchSize: settings.maxMessageBytes)
        do {
            while let view = try sequence.next() {
                let start = view.bytes.baseAddress! - UnsafeRawPointer(owned.baseAddress!)
                batches.append(UnsafeMutableRawBufferPointer(rebasing: owned[start..<(start + view.bytes.count)]))
            }
        } catch {
            return Broker.errorCode(for: error)
        }
        if sequence.trailingBytes > 0 || batches.isEmpty { return .corruptMessage }
        if batches.count > 1, let code = rejectedSequence(batches, log: log) { return code }
        var first: Int64 = -1
        var last: Int64 = -1
        for batch in batches {
            let view = RecordBatchView(unchecked: UnsafeRawBufferPointer(batch))
            let idempotent = view.producerId >= 0 && view.baseSequence >= 0
            let lastSequence = view.baseSequence &+ view.lastOffsetDelta
            if idempotent {
                if producerStates[log.topicPartition] == nil { producerStates[log.topicPartition] = .rebuild(from: log) }
                switch producerStates[log.topicPartition]!.check(producerId: view.producerId, epoch: view.producerEpoch,
                                                                 firstSequence: view.baseSequence, lastSequence: lastSequence) {
                case .reject(let code):
                    return code
                case .duplicate(let base, let lastOffset):
                    // A retry of a batch already appended: acknowledge it with its offsets.
                    if first < 0 { first = base }
                    last = max(last, lastOffset)
                    continue
                case .append:
                    break
                }
            }
            if settings.logAppendTime { RecordBatchView.stampLogAppendTime(pending.context.nowMs, batch: batch) }
            do {
                let info = try shard.append(batch, to: log, requireDurable: acks == -1, nowMs: pending.context.nowMs)
                if first < 0 { first = info.baseOffset }
                last = info.lastOffset
                if idempotent {
                    producerStates[log.topicPartition]!.record(
                        producerId: view.producerId, epoch: view.producerEpoch, firstSequence: view.baseSequence,
                        lastSequence: lastSequence, baseOffset: info.baseOffset, lastOffset: info.lastOffset)
                }
            } catch {
                return Broker.errorCode(for: error)
            }
        }
        if !appended.contains(where: { $0.log === log }) { appended.append((log, topic.signals[Int(partition)])) }
        result.baseOffset = first
        result.logAppendTimeMs = settings.logAppendTime ? pending.context.nowMs : -1
        result.logStartOffset = log.logStartOffset
        pending.waits.append((position.0, position.1, log, last))
        return .none
    }

    /// For a request carrying several batches for one partition: the error if any of them
    /// would be refused by the idempotence checks, found before anything is staged, so that a
    /// refused request leaves nothing behind.
    private func rejectedSequence(_ batches: [UnsafeMutableRawBufferPointer], log: PartitionLog) -> ErrorCode? {
        var trial: ProducerStateTable?
        var predicted = log.nextOffset
        for batch in batches {
            let view = RecordBatchView(unchecked: UnsafeRawBufferPointer(batch))
            guard view.producerId >= 0 && view.baseSequence >= 0 else { continue }
            if trial == nil {
                if producerStates[log.topicPartition] == nil { producerStates[log.topicPartition] = .rebuild(from: log) }
                trial = producerStates[log.topicPartition]
            }
            let lastSequence = view.baseSequence &+ view.lastOffsetDelta
            switch trial!.check(producerId: view.producerId, epoch: view.producerEpoch, firstSequence: view.baseSequence, lastSequence: lastSequence) {
            case .reject(let code): return code
            case .duplicate: continue
            case .append:
                trial!.record(producerId: view.producerId, epoch: view.producerEpoch, firstSequence: view.baseSequence,
                              lastSequence: lastSequence, baseOffset: predicted, lastOffset: predicted + Int64(view.lastOffsetDelta))
                predicted += Int64(view.lastOffsetDelta) + 1
            }
        }
        return nil
    }

    static func errorCode(for error: WireError) -> ErrorCode {
        switch error.reason {
        case .lengthTooLarge: return .messageTooLarge
        case .invalid(let text) where text.contains("legacy"): return .unsupportedForMessageFormat
        default: return .corruptMessage
        }
    }

    static func errorCode(for error: StorageError) -> ErrorCode {
        switch error {
        case .offsetOutOfRange: .offsetOutOfRange
        case .corruptBatch, .invalidBatch: .corruptMessage
        case .io, .offline, .dataDirectoryInUse: .kafkaStorageError
        }
    }

    /// Answers the produce requests whose appends are written (and synced, where required).
    func completeProduces(failures: [(log: PartitionLog, error: StorageError)], nowMs: Int64, into completions: inout [Completion]) {
        for (log, error) in failures {
            producerStates[log.topicPartition] = nil  // the log was cut back: rebuild from it
            // Only this turn's appends were dropped; earlier ones are written (and may be syncing).
            let lost = { (wait: PendingProduce.Wait) in
                wait.log === log && wait.lastOffset >= log.logEndOffset
            }
            for pending in pendingProduces {
                for wait in pending.waits where lost(wait) {
                    pending.response.responses[wait.topic].partitionResponses[wait.partition].error(Broker.errorCode(for: error))
                }
                pending.waits.removeAll(where: lost)
            }
        }
        var remaining: [PendingProduce] = []
        awaitingReplicas = 0
        for pending in pendingProduces {
            if let home = pending.buffersFrom, home != index, !pending.buffers.isEmpty {
                let written = pending.buffers
                mesh.post(to: home) { broker in written.forEach(broker.batchBuffers.give) }
            } else {
                pending.buffers.forEach(batchBuffers.give)
            }
            pending.buffers.removeAll()
            let durable = pending.acks != -1 || pending.waits.allSatisfy { wait in
                wait.log.config.durability == .pageCache || wait.log.durableOffset > wait.lastOffset || wait.log.failure != nil
            }
            guard durable && pending.outstanding == 0 else {
                remaining.append(pending)
                continue
            }
            if pending.acks == -1 && mesh.cluster != nil && awaitsReplicas(pending, nowMs: nowMs) {
                awaitingReplicas += 1
                remaining.append(pending)
                continue
            }
            for wait in pending.waits where wait.log.failure != nil {
                pending.response.responses[wait.topic].partitionResponses[wait.partition].error(.kafkaStorageError)
            }
            if let reply = pending.reply {
                reply(pending.response.responses[0].partitionResponses)
            } else if pending.acks != 0 && !pending.abandoned {
                completions.append(Completion(connection: pending.context.connection, sequence: pending.context.sequence, correlationId: pending.context.correlationId,
                                              frame: frame(pending.response, pending.context)))
            }
        }
        pendingProduces = remaining
    }
}

extension ProduceResponse.PartitionProduceResponse {
    /// Sets the error code; an errored partition reports no offsets.
    mutating func error(_ code: ErrorCode) {
        guard code != .none else { return }
        errorCode = code.rawValue
        baseOffset = -1
        logStartOffset = -1
    }
}
