// apus-storage-crashtest: the child process of the storage crash tests.
//
//   apus-storage-crashtest <data-dir> <uring|posix> <round> [max-log-bytes] [max-turns] [kill-at-roll]
//
// Opens (recovering if needed) the partition `crash-0` of <data-dir> under fsync-on-ack-all
// with 1 MiB segments and appends deterministic batches (see CrashTestBatch) with
// requireDurable, group-committing 1–3 batches per turn. Once the log's durableOffset has
// passed a batch, it writes one line to stdout (unbuffered, one write(2) per line):
//
//   ACK <round> <sequence> <small 0|1> <baseOffset> <lastOffset> <bytes> <crc32c of the stored batch, hex>
//
// It runs until killed (the test SIGKILLs it), or for max-turns turns if given. Once the log
// holds more than max-log-bytes it appends small batches only, to bound the test's disk use.
// Every 16 turns it writes the recovery-point checkpoint, so recovery starts from there.
// With kill-at-roll it SIGKILLs itself in the first turn whose second or third batch rolls a
// segment, after the roll created the new segment's file and before the turn's writes.
#if canImport(Glibc)
import Glibc
#endif
import ApusIO
import ApusStorage
import KafkaWire
import Logging

func emit(_ line: String) {
    var line = line + "\n"
    line.withUTF8 { raw in
        var done = 0
        while done < raw.count {
            let n = Glibc.write(1, raw.baseAddress! + done, raw.count - done)
            if n < 0 { if errno == EINTR { continue }; exit(3) }
            done += n
        }
    }
}

func fail(_ message: String) -> Never {
    var line = "apus-storage-crashtest: \(message)\n"
    line.withUTF8 { _ = Glibc.write(2, $0.baseAddress!, $0.count) }
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 4, let kind = IOBackendKind(rawValue: args[2]), let round = Int(args[3]) else {
    fail("usage: apus-storage-crashtest <data-dir> <uring|posix> <round> [max-log-bytes] [max-turns] [kill-at-roll]")
}
let maxLogBytes = args.count > 4 ? Int64(args[4]) ?? .max : .max
let maxTurns = args.count > 5 ? Int(args[5]) ?? .max : .max
let killAtRoll = args.count > 6 && args[6] == "kill-at-roll"
var rolledOnFirst = false

var logger = Logger(label: "apus.crashtest")
logger.logLevel = .error

var config = LogConfig()
config.segmentBytes = 1 << 20  // batches reach ~1 MiB: a roll every few turns
config.durability = .fsyncOnAckAll
config.retentionMs = -1
config.retentionBytes = -1

struct Pending {
    var sequence: Int
    var smallOnly: Bool
    var info: AppendInfo
    var bytes: Int
    var crc: UInt32
}

do {
    let manager = try LogManager(dataDirectory: args[1], defaultConfig: config, logger: logger)
    let log = try manager.openLog(TopicPartition("crash", 0), config: config)
    let (backend, _) = try makeAppendBackend(kind)
    let shard = LogShard(backend: backend)
    shard.adopt(log)
    emit("OPEN \(round) \(backend.name) \(log.logStartOffset) \(log.logEndOffset) \(manager.wasCleanShutdown ? 1 : 0)")

    var rng = CrashTestBatch.Generator(state: UInt64(round) &* 7919 &+ 1)
    var sequence = 0
    var unacked: [Pending] = []
    var staged: [UnsafeMutableRawBufferPointer] = []
    var turn = 0
    while turn < maxTurns {
        turn += 1
        let smallOnly = log.sizeInBytes >= maxLogBytes
        let segmentsAtTurnStart = log.segmentCount
        for i in 0..<rng.next(in: 1...3) {
            let batch = CrashTestBatch.make(round: round, sequence: sequence, smallOnly: smallOnly)
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: batch.count, alignment: 16)
            memory.copyMemory(from: batch.withUnsafeBytes { $0 })  // the array is copied before it can move
            staged.append(memory)
            let info = try shard.append(memory, to: log, requireDurable: true, nowMs: Sys.wallClockMs())
            // The CRC32C of the whole batch as stored (base offset assigned).
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(memory))
            unacked.append(Pending(sequence: sequence, smallOnly: smallOnly, info: info, bytes: memory.count, crc: crc))
            sequence += 1
            // kill-at-roll: die in the window between a roll (the new segment's file exists)
            // and the turn's writes, with a batch of this turn staged for the old segment.
            if killAtRoll && i > 0 && log.segmentCount > segmentsAtTurnStart && !rolledOnFirst {
                emit("KILL-AT-ROLL \(round) \(log.segmentBaseOffsets.last!)")
                kill(getpid(), SIGKILL)
            }
            if i == 0 && log.segmentCount > segmentsAtTurnStart { rolledOnFirst = true }
        }
        rolledOnFirst = false
        let failures = shard.commit(nowMs: Sys.wallClockMs())
        if let (_, error) = failures.first { fail("commit failed: \(error)") }
        for memory in staged { memory.deallocate() }
        staged.removeAll(keepingCapacity: true)
        // Let a few turns' syncs overlap (io_uring), then wait for them.
        shard.poll(wait: unacked.count > 12)
        if let failure = log.failure { fail("log offline: \(failure)") }
        var acked = 0
        for p in unacked {
            guard p.info.lastOffset < log.durableOffset else { break }
            emit("ACK \(round) \(p.sequence) \(p.smallOnly ? 1 : 0) \(p.info.baseOffset) \(p.info.lastOffset) \(p.bytes) \(String(p.crc, radix: 16))")
            acked += 1
        }
        unacked.removeFirst(acked)
        if turn % 16 == 0 { manager.checkpoint() }
    }
    shard.syncAll(nowMs: Sys.wallClockMs())
    for p in unacked where p.info.lastOffset < log.durableOffset {
        emit("ACK \(round) \(p.sequence) \(p.smallOnly ? 1 : 0) \(p.info.baseOffset) \(p.info.lastOffset) \(p.bytes) \(String(p.crc, radix: 16))")
    }
    try manager.close()
    emit("DONE \(round) \(log.logEndOffset)")
} catch {
    fail("\(error)")
}
