import ApusStorage
import KafkaProtocol
import KafkaWire

/// Idempotent-producer state of one partition: per producer id, its epoch and its last five
/// batches' sequence ranges and offsets (as Kafka keeps), so a retried batch is acknowledged
/// with its original offsets instead of being appended twice, and a gap is refused.
///
/// Rebuilt from the log's batch headers when the broker starts, so it survives restarts.
struct ProducerStateTable {
    struct BatchRecord: Equatable {
        var firstSequence: Int32
        var lastSequence: Int32
        var baseOffset: Int64
        var lastOffset: Int64
    }

    struct Entry: Equatable {
        var epoch: Int16
        var batches: [BatchRecord]  // oldest first, at most `retained`
    }

    static let retained = 5
    var producers: [Int64: Entry] = [:]

    enum Verdict: Equatable {
        case append
        case duplicate(baseOffset: Int64, lastOffset: Int64)
        case reject(ErrorCode)
    }

    /// Decides what to do with a batch from an idempotent producer.
    func check(producerId: Int64, epoch: Int16, firstSequence: Int32, lastSequence: Int32) -> Verdict {
        guard producerId >= 0, firstSequence >= 0 else { return .append }
        guard let entry = producers[producerId] else { return .append }
        if epoch < entry.epoch { return .reject(.invalidProducerEpoch) }
        if epoch > entry.epoch { return firstSequence == 0 ? .append : .reject(.outOfOrderSequenceNumber) }
        if let seen = entry.batches.first(where: { $0.firstSequence == firstSequence && $0.lastSequence == lastSequence }) {
            return .duplicate(baseOffset: seen.baseOffset, lastOffset: seen.lastOffset)
        }
        let last = entry.batches.last?.lastSequence ?? -1
        let expected = last == Int32.max ? 0 : last + 1
        return firstSequence == expected ? .append : .reject(.outOfOrderSequenceNumber)
    }

    /// Records an appended batch.
    mutating func record(producerId: Int64, epoch: Int16, firstSequence: Int32, lastSequence: Int32, baseOffset: Int64, lastOffset: Int64) {
        guard producerId >= 0, firstSequence >= 0 else { return }
        var entry = producers[producerId] ?? Entry(epoch: epoch, batches: [])
        if epoch != entry.epoch { entry = Entry(epoch: epoch, batches: []) }
        entry.batches.append(BatchRecord(firstSequence: firstSequence, lastSequence: lastSequence, baseOffset: baseOffset, lastOffset: lastOffset))
        if entry.batches.count > Self.retained { entry.batches.removeFirst() }
        producers[producerId] = entry
    }

    /// Replays the producer fields of every batch in `log` (headers only).
    static func rebuild(from log: PartitionLog) -> ProducerStateTable {
        var table = ProducerStateTable()
        var offset = log.logStartOffset
        while offset < log.logEndOffset, let range = try? log.read(from: offset, maxBytes: 8 << 20), range.length > 0 {
            var next = offset
            log.forEachBatchHeader(in: range) { view in
                if view.producerId >= 0 && view.baseSequence >= 0 {
                    table.record(producerId: view.producerId, epoch: view.producerEpoch, firstSequence: view.baseSequence,
                                 lastSequence: view.baseSequence &+ view.lastOffsetDelta, baseOffset: view.baseOffset, lastOffset: view.lastOffset)
                }
                next = view.lastOffset + 1
            }
            if next == offset { break }
            offset = next
        }
        return table
    }
}
