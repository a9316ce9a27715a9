import ApusIO
import ApusStorage
import Foundation
import KafkaWire
import Logging
import Testing

/// A fresh directory under /tmp, removed when the value goes away.
final class TemporaryDirectory {
    let path: String

    init(_ name: String = "apus-storage") {
        path = NSTemporaryDirectory() + "\(name)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Owns batch memory handed to the log until the shard commits it.
final class BatchArena {
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    deinit { buffers.forEach { $0.deallocate() } }

    /// A batch of `count` records (`key-i`, `value-i` padded to `valueSize`), as a producer sends it.
    func batch(records count: Int, first: Int = 0, valueSize: Int = 20, timestamp: Int64 = 1_700_000_000_000,
               compression: CompressionCodec = .none) -> UnsafeMutableRawBufferPointer {
        var builder = RecordBatchBuilder(capacity: 64 + count * (valueSize + 40))
        builder.reset(baseTimestamp: timestamp)
        for i in first..<(first + count) {
            let key = Array("key-\(i)".utf8)
            var value = Array("value-\(i)".utf8)
            value += [UInt8](repeating: UInt8(i & 0x7F), count: max(0, valueSize - value.count))
            let ok = key.withUnsafeBytes { k in value.withUnsafeBytes { v in builder.append(key: k, value: v, timestampDelta: Int64(i - first)) } }
            precondition(ok)
        }
        let finished = try! builder.finish(compression: compression)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: finished.count, alignment: 16)
        copy.copyMemory(from: finished)
        buffers.append(copy)
        return copy
    }
}

/// Every record (offset, key, value) in whole batches, checking each batch's CRC.
func records(in bytes: [UInt8]) throws -> [(offset: Int64, key: String, value: [UInt8])] {
    var out: [(Int64, String, [UInt8])] = []
    try bytes.withUnsafeBytes { raw in
        var batches = RecordBatchSequence(raw)
        while let view = try batches.next() {
            let batch = try RecordBatch(view)
            for r in batch.records {
                out.append((view.baseOffset + Int64(r.offsetDelta), String(decoding: r.key ?? [], as: UTF8.self), r.value ?? []))
            }
        }
        precondition(batches.trailingBytes == 0)
    }
    return out
}

func testLogger() -> Logger {
    var logger = Logger(label: "apus.storage.test")
    logger.logLevel = .critical
    return logger
}

func backend(_ kind: IOBackendKind) -> AppendBackend {
    try! makeAppendBackend(kind).0
}

/// The whole log's bytes from `offset`, segment by segment.
func readAll(_ log: PartitionLog, from offset: Int64 = -1) throws -> [UInt8] {
    var out: [UInt8] = []
    var next = offset < 0 ? log.logStartOffset : offset
    while next < log.logEndOffset {
        let chunk = try log.readCopy(from: next, maxBytes: 1 << 20)
        guard !chunk.isEmpty else { break }
        out += chunk
        next = try records(in: chunk).last!.offset + 1
    }
    return out
}

/// Reads the whole log batch by batch, requiring contiguous offsets from 0 to the log end
/// and no partial batch; calls `body` with each batch. Returns the offset it ended at.
@discardableResult
func walkLog(_ log: PartitionLog, _ context: String, _ body: (RecordBatchView) throws -> Void) throws -> Int64 {
    var next: Int64 = 0
    while next < log.logEndOffset {
        let chunk = try log.readCopy(from: next, maxBytes: 4 << 20)
        try #require(!chunk.isEmpty, "\(context): empty read at \(next) below log end \(log.logEndOffset)")
        try chunk.withUnsafeBytes { raw in
            var batches = RecordBatchSequence(raw)
            while let view = try batches.next() {
                try #require(view.baseOffset == next, "\(context): batch at \(view.baseOffset), expected \(next)")
                try body(view)
                next = view.lastOffset + 1
            }
            #expect(batches.trailingBytes == 0, "\(context): read returned a partial batch")
        }
    }
    #expect(next == log.logEndOffset, "\(context)")
    return next
}
