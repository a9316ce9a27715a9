import ApusIO
@testable import ApusStorage
import Foundation
import Glibc
import Testing

/// `page.cache.max.bytes`: what a shard's appends wrote beyond its budget is written back and
/// leaves the page cache (asked of the kernel with mincore), through both I/O backends; without
/// a budget it stays.
@Suite struct PageCacheBudgetTests {
    /// Pages of `[from, to)` of the file at `path` that are in the page cache.
    static func residentPages(_ path: String, from: Int, to: Int) throws -> (resident: Int, pages: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path) }
        defer { close(fd) }
        guard let map = mmap(nil, to, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { throw SystemError("mmap", errno: errno, path) }
        defer { munmap(map, to) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (to + page - 1) / page)
        guard mincore(map, to, &vector) == 0 else { throw SystemError("mincore", errno: errno, path) }
        let range = vector[(from / page)...]
        return (range.filter { $0 & 1 == 1 }.count, range.count)
    }

    @Test(arguments: [IOBackendKind.posix, .uring])
    func writesBeyondTheBudgetLeaveThePageCache(_ kind: IOBackendKind) throws {
        for budget in [Int64(16 << 20), 0] {
            let dir = TemporaryDirectory()
            var config = LogConfig()
            config.segmentBytes = 256 << 20
            config.preallocateBytes = 0  // one segment: a partition this fast would roll onto a spare
            let manager = try LogManager(dataDirectory: dir.path, defaultConfig: config, logger: testLogger())
            let log = try manager.openLog(TopicPartition("cached", 0), nowMs: 1_700_000_000_000)
            let shard = LogShard(backend: backend(kind))
            shard.adopt(log)
            shard.pageCacheBudget = budget
            let arena = BatchArena()
            // About 64 MiB in 1 MB batches, a commit each.
            for turn in 0..<64 {
                _ = try shard.append(arena.batch(records: 1000, first: turn * 1000, valueSize: 1000), to: log, requireDurable: false, nowMs: 1_700_000_000_000)
                #expect(shard.commit(nowMs: 1_700_000_000_000).isEmpty)
            }
            DiskWorker.dropBehind.waitUntilIdle()
            let segment = log.activeSegment
            let size = Int(segment.size)
            #expect(size > 60 << 20 && log.segments.count == 1)
            let old = try Self.residentPages(segment.path + ".log", from: 0, to: 32 << 20)
            let recent = try Self.residentPages(segment.path + ".log", from: size - (8 << 20), to: size)
            if budget > 0 {
                // (a few pages may be busy when the advice comes, and stay)
                #expect(old.resident < old.pages / 100, "the oldest 32 MiB are dropped: \(old.resident) of \(old.pages) pages still cached")
                #expect(recent.resident > recent.pages * 9 / 10, "the newest 8 MiB stay: \(recent.resident) of \(recent.pages)")
            } else {
                #expect(old.resident > old.pages * 9 / 10, "no budget: what was written stays cached (\(old.resident) of \(old.pages))")
            }
            // Everything is still there to read.
            #expect(try records(in: log.readCopy(from: 0, maxBytes: 2 << 20)).first?.offset == 0)
        }
    }
}
