import Benchmark
import KafkaWire

// Targets (issue 2, release build, 2-vCPU VM):
//   encode 100-byte records into a 1 MiB batch, CRC included: ≤ 30 ns/record
//   iterate the records of a 1 MiB batch:                      ≤ 20 ns/record
//   CRC32C of 1 MiB with ISA-L:                                 ≥ 20 GB/s
//   validate a batch header + CRC and rewrite its base offset: per batch, no per-record work
//
// Per-record benchmarks use scalingFactor .mega: one inner iteration is one record, so the
// reported time per (scaled) iteration is ns per record, batch finish/CRC amortised in.

let oneMiB = 1 << 20
let recordSize = 100

/// A 1 MiB batch of 100-byte records with 8-byte keys, as a producer would send it.
func makeBatch(capacity: Int = oneMiB, compression: CompressionCodec = .none) -> [UInt8] {
    var builder = RecordBatchBuilder(capacity: capacity)
    builder.reset(baseTimestamp: 1_700_000_000_000)
    let value = [UInt8](repeating: 0x61, count: recordSize)
    var key: UInt64 = 0
    value.withUnsafeBytes { v in
        while withUnsafeBytes(of: &key, { builder.append(key: $0, value: v) }) { key += 1 }
    }
    return Array(try! builder.finish(compression: compression))
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 3,
        maxDuration: .seconds(3),
        maxIterations: 1_000
    )

    Benchmark("RecordBatchBuilder append 100 B record (1 MiB batches, CRC at finish)",
              configuration: .init(scalingFactor: .mega)) { benchmark in
        var builder = RecordBatchBuilder(capacity: oneMiB)
        builder.reset(baseTimestamp: 1_700_000_000_000)
        let value = [UInt8](repeating: 0x61, count: recordSize)
        var key: UInt64 = 0
        value.withUnsafeBytes { v in
            for _ in benchmark.scaledIterations {
                key &+= 1
                let appended = withUnsafeBytes(of: &key) { builder.append(key: $0, value: v) }
                if !appended {
                    blackHole(try! builder.finish(baseOffset: 0).count)
                    builder.reset(baseTimestamp: 1_700_000_000_000)
                    _ = withUnsafeBytes(of: &key) { builder.append(key: $0, value: v) }
                }
            }
        }
        blackHole(try! builder.finish().count)
    }

    Benchmark("RecordIterator next, 100 B records (1 MiB batch)",
              configuration: .init(scalingFactor: .mega)) { benchmark in
        let batch = makeBatch()
        batch.withUnsafeBytes { raw in
            let view = try! RecordBatchView(validating: raw)
            var records = view.records
            var sum = 0
            for _ in benchmark.scaledIterations {
                if let record = try! records.next() {
                    sum &+= record.value!.count &+ record.key!.count
                } else {
                    records = view.records
                }
            }
            blackHole(sum)
        }
    }

    Benchmark("CRC32C 1 MiB (\(CRC32C.implementation))",
              configuration: .init(metrics: [.wallClock, .throughput])) { benchmark in
        let buffer = (0..<oneMiB).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        buffer.withUnsafeBytes { raw in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(CRC32C.checksum(raw)) }
        }
    }

    for (name, size) in [("1 MiB", oneMiB), ("16 KiB", 16 << 10)] {
        Benchmark("Validate batch + CRC + rewrite base offset (\(name) batch)") { benchmark in
            var batch = makeBatch(capacity: size)
            batch.withUnsafeMutableBytes { raw in
                benchmark.startMeasurement()
                for i in benchmark.scaledIterations {
                    let view = try! RecordBatchView(validating: UnsafeRawBufferPointer(raw))
                    RecordBatchView.setBaseOffset(Int64(i), inBatchAt: raw.baseAddress!)
                    blackHole(view.lastOffset)
                }
            }
        }
    }
}
