import ApusIO
import KafkaWire

/// Walks a segment's batches validating each one (length, magic, CRC, increasing offsets):
/// recovery after an unclean shutdown, index rebuilds, and the first read of old data.
/// Reads in large chunks so the scan runs at CRC speed (ISA-L), not syscall speed.
enum SegmentScanner {
    struct Result {
        /// The end of the last valid batch.
        var validEnd: Int64
        /// The offset after the last valid batch.
        var nextOffset: Int64
        var maxTimestamp: Int64 = -1
        /// Why the scan stopped before the end, if it did.
        var problem: String?
        var offsetIndex: [OffsetIndexEntry] = []
        var timeIndex: [TimeIndexEntry] = []
        var bytesSinceIndexEntry = 0
        /// Where each new leader epoch starts among the batches scanned (``PartitionLog/epochStarts``).
        var epochStarts: [EpochStart] = []
    }

    static let chunkSize = 8 << 20

    static func scan(_ segment: Segment, from start: Int64, until end: Int64, rebuildIndex: Bool, intervalBytes: Int) throws(StorageError) -> Result {
        var result = Result(validEnd: start, nextOffset: segment.baseOffset)
        var capacity = chunkSize
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var position = start
        while position < end {
            let want = Int(min(Int64(capacity), end - position))
            let got: Int
            do {
                got = try Sys.preadFully(segment.logFd, UnsafeMutableRawBufferPointer(start: buffer, count: want), at: position)
            } catch {
                throw .io(error)
            }
            if got == 0 { result.problem = "file ends early"; return result }
            var offset = 0
            while offset < got {
                let rest = UnsafeRawBufferPointer(start: buffer + offset, count: got - offset)
                let size: Int
                do {
                    size = try RecordBatchView.sizeOfBatch(at: rest)
                } catch {
                    if case .truncated(let needed, _) = error.reason, offset == 0, needed > capacity, position + Int64(needed) <= end {
                        // A batch larger than the chunk: grow and read again.
                        buffer.deallocate()
                        capacity = needed
                        buffer = .allocate(byteCount: capacity, alignment: 16)
                        break
                    }
                    if case .truncated = error.reason, got == want, offset > 0, position + Int64(got) < end {
                        break  // the batch continues in the next chunk
                    }
                    result.problem = error.description
                    return result
                }
                let view: RecordBatchView
                do {
                    view = try RecordBatchView(validating: UnsafeRawBufferPointer(rebasing: rest[0..<size]))
                } catch {
                    result.problem = error.description
                    return result
                }
                if view.baseOffset < result.nextOffset {
                    result.problem = "offset \(view.baseOffset) goes backwards (expected ≥ \(result.nextOffset))"
                    return result
                }
                let batchPosition = position + Int64(offset)
                if rebuildIndex {
                    let relative = UInt32(truncatingIfNeeded: view.baseOffset - segment.baseOffset)
                    var indexed = false
                    if result.bytesSinceIndexEntry >= intervalBytes {
                        result.offsetIndex.append(OffsetIndexEntry(relativeOffset: relative, position: UInt32(truncatingIfNeeded: batchPosition)))
                        result.bytesSinceIndexEntry = 0
                        indexed = true
                    }
                    if view.maxTimestamp > result.maxTimestamp && (result.timeIndex.isEmpty || indexed) {
                        result.timeIndex.append(TimeIndexEntry(timestamp: view.maxTimestamp, relativeOffset: relative))
                    }
                    result.bytesSinceIndexEntry += size
                }
                result.maxTimestamp = max(result.maxTimestamp, view.maxTimestamp)
                if view.partitionLeaderEpoch >= 0 && view.partitionLeaderEpoch > (result.epochStarts.last?.epoch ?? -1) {
                    result.epochStarts.append(EpochStart(epoch: view.partitionLeaderEpoch, startOffset: view.baseOffset))
                }
                result.nextOffset = view.lastOffset + 1
                offset += size
                result.validEnd = batchPosition + Int64(size)
            }
            if offset == 0 && capacity > want { continue }  // grew the buffer: read again
            position += Int64(offset)
        }
        return result
    }
}
