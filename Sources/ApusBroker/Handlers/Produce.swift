import ApusStorage
import KafkaProtocol
import KafkaWire

/// A produce request whose batches were staged this turn and whose response waits for the
/// commit (acks 0/1) or for the sync covering it (acks=all under an fsync durability mode).
final class PendingProduce {
    let context: RequestContext
    let acks: Int16
    var response: ProduceResponse
    /// (topic index, partition index in the response) → log and the last offset to wait for.
    var waits: [(topic: Int, partition: Int, log: PartitionLog, lastOffset: Int64)] = []
    /// The request's batches, owned until the commit has written them.
    var buffers: [UnsafeMutableRawBufferPointer] = []
    var abandoned = false

    init(context: RequestContext, acks: Int16, response: ProduceResponse) {
        self.context = context
        self.acks = acks
        self.response = response
    }

    deinit { buffers.forEach { $0.deallocate() } }
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
        _ = try r.readInt32()
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
    /// Produce v0–8 (v0–2 answered with UNSUPPORTED_VERSION: they carry legacy message
    /// sets). Batches are validated (CRC, size, magic), given offsets and staged; the
    /// response is sent after the turn's group commit, or after the sync for acks=all when
    /// the log's durability mode asks for one. acks=0 gets no response.
    static let produce = HandlerEntry(api: .produce, versions: 0...8) { broker, context, r throws(WireError) in
        let request = try ProduceRequestView(from: &r, version: context.apiVersion)
        var response = ProduceResponse()
        let pending = PendingProduce(context: context, acks: request.acks, response: response)
        for (t, topic) in request.topics.enumerated() {
            var out = ProduceResponse.TopicProduceResponse(name: topic.name)
            for (p, partition) in topic.partitions.enumerated() {
                var result = ProduceResponse.PartitionProduceResponse(index: partition.index)
                result.error(broker.stage(partition, topic: topic.name, acks: request.acks, into: pending, at: (t, p), result: &result))
                out.partitionResponses.append(result)
            }
            response.responses.append(out)
        }
        pending.response = response
        broker.pendingProduces.append(pending)
        return request.acks == 0 ? .noResponse : .pending
    }

    /// Validates and stages one partition's batches; returns the error code (0 on success).
    private func stage(
        _ partition: ProduceRequestView.Partition, topic: String, acks: Int16,
        into pending: PendingProduce, at position: (Int, Int), result: inout ProduceResponse.PartitionProduceResponse
    ) -> ErrorCode {
        if pending.context.apiVersion < 3 { return .unsupportedVersion }
        if ![-1, 0, 1].contains(acks) { return .invalidRequiredAcks }
        guard let log = log(topic, partition.index) else { return .unknownTopicOrPartition }
        guard let records = partition.records, !records.isEmpty else { return .corruptMessage }
        // The one copy of the batches: out of the request frame into memory that lives until
        // the commit. Every batch is validated before any is staged.
        let owned = UnsafeMutableRawBufferPointer.allocate(byteCount: records.count, alignment: 16)
        pending.buffers.append(owned)
        owned.copyMemory(from: records)
        var batches: [UnsafeMutableRawBufferPointer] = []
        var sequence = RecordBatchSequence(UnsafeRawBufferPointer(owned), validate: true, maxBatchSize: config.messageMaxBytes)
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
        result.baseOffset = first
        result.logAppendTimeMs = -1
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
        case .io, .offline: .kafkaStorageError
        }
    }

    /// Answers the produce requests whose appends are written (and synced, where required).
    func completeProduces(failures: [(log: PartitionLog, error: StorageError)], nowMs: Int64, into completions: inout [Completion]) {
        for (log, error) in failures {
            producerStates[log.topicPartition] = nil  // the log was cut back: rebuild from it
            // Only this turn's appends were dropped; earlier ones are written (and may be syncing).
            let lost = { (wait: (topic: Int, partition: Int, log: PartitionLog, lastOffset: Int64)) in
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
        for pending in pendingProduces {
            pending.buffers.forEach { $0.deallocate() }
            pending.buffers.removeAll()
            let durable = pending.acks != -1 || pending.waits.allSatisfy { wait in
                wait.log.config.durability == .pageCache || wait.log.durableOffset > wait.lastOffset || wait.log.failure != nil
            }
            guard durable else {
                remaining.append(pending)
                continue
            }
            for wait in pending.waits where wait.log.failure != nil {
                pending.response.responses[wait.topic].partitionResponses[wait.partition].error(.kafkaStorageError)
            }
            if pending.acks != 0 && !pending.abandoned {
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
