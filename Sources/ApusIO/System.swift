import CApusSys
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and errno.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var context: String

    public init(_ call: String, errno: Int32, _ context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    public var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String {
        let message = String(cString: strerror(errno))
        return context.isEmpty ? "\(call): \(message) (errno \(errno))" : "\(call) \(context): \(message) (errno \(errno))"
    }
}

/// Every raw file-system call Apus makes, wrapped once: EINTR is retried, failures become
/// `SystemError`. Nothing above ApusIO calls the C library for I/O directly.
public enum Sys {
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ call: String, _ context: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemError(call, errno: e, context())
        }
    }

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws(SystemError) -> Int32 {
        if flags & (O_CREAT | O_TRUNC) != 0 { ShardThreadContract.note("open(O_CREAT)", path) }
        return try retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)  // never retried: the descriptor is gone either way on Linux
    }

    /// Writes all of `buffer` at `offset` (looping over short writes).
    public static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let n = try retrying("pwrite", "fd \(fd)") { Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            done += n
        }
    }

    /// One `pwritev` call; returns the bytes written (possibly short).
    public static func pwritev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32, at offset: Int64) throws(SystemError) -> Int {
        try retrying("pwritev", "fd \(fd)") { Glibc.pwritev(fd, iov, count, off_t(offset)) }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns the count read (0 at end of file).
    public static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        guard buffer.count > 0 else { return 0 }
        return try retrying("pread", "fd \(fd)") { Glibc.pread(fd, buffer.baseAddress!, buffer.count, off_t(offset)) }
    }

    /// Reads exactly `buffer.count` bytes unless the file ends first; returns the count read.
    public static func preadFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try pread(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    public static func fdatasync(_ fd: Int32) throws(SystemError) {
        ShardThreadContract.note("fdatasync", "fd \(fd)")
        _ = try retrying("fdatasync", "fd \(fd)") { Glibc.fdatasync(fd) }
    }

    public static func fsync(_ fd: Int32) throws(SystemError) {
        ShardThreadContract.note("fsync", "fd \(fd)")
        _ = try retrying("fsync", "fd \(fd)") { Glibc.fsync(fd) }
    }

    public static func ftruncate(_ fd: Int32, _ length: Int64) throws(SystemError) {
        ShardThreadContract.note("ftruncate", "fd \(fd)")
        _ = try retrying("ftruncate", "fd \(fd)") { Glibc.ftruncate(fd, off_t(length)) }
    }

    /// Reserves the blocks of `[offset, offset + length)` without changing the file's size
    /// (fallocate, FALLOC_FL_KEEP_SIZE), so that later writes there allocate nothing: on ext4 a
    /// buffered write into unreserved space takes the inode's block-map lock, which writeback
    /// holds while it allocates. Returns false where the file system cannot reserve.
    @discardableResult
    public static func preallocate(_ fd: Int32, from offset: Int64, length: Int64) throws(SystemError) -> Bool {
        ShardThreadContract.note("fallocate", "fd \(fd)")
        while apus_reserve(fd, offset, length) != 0 {
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EOPNOTSUPP || e == ENOSYS { return false }
            throw SystemError("fallocate", errno: e, "fd \(fd)")
        }
        return true
    }

    /// Writes `[offset, offset + length)` of `fd` back, waits for it, and drops those pages from
    /// the page cache (sync_file_range, then POSIX_FADV_DONTNEED), so that the memory is free
    /// before a later write needs it. Waits for the disk.
    public static func dropFromPageCache(_ fd: Int32, offset: Int64, length: Int64) throws(SystemError) {
        ShardThreadContract.note("sync_file_range", "fd \(fd)")
        let result = apus_drop_behind(fd, offset, length)
        if result != 0 { throw SystemError("sync_file_range/posix_fadvise", errno: -result, "fd \(fd)") }
    }

    /// The machine's memory in bytes.
    public static func physicalMemoryBytes() -> Int64 {
        Int64(sysconf(Int32(_SC_PHYS_PAGES))) * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Blocks the file system has allocated to `fd` (st_blocks × 512), reservations included.
    public static func allocatedBytes(_ fd: Int32) throws(SystemError) -> Int64 {
        var st = stat()
        _ = try retrying("fstat", "fd \(fd)") { Glibc.fstat(fd, &st) }
        return Int64(st.st_blocks) * 512
    }

    /// A second descriptor for the open file behind `fd` (for work on another thread that must
    /// not race with the owner closing `fd`).
    public static func duplicate(_ fd: Int32) throws(SystemError) -> Int32 {
        try retrying("fcntl(F_DUPFD_CLOEXEC)", "fd \(fd)") { Glibc.fcntl(fd, F_DUPFD_CLOEXEC, 0) }
    }

    public static func fileSize(_ fd: Int32) throws(SystemError) -> Int64 {
        var st = stat()
        _ = try retrying("fstat", "fd \(fd)") { Glibc.fstat(fd, &st) }
        return Int64(st.st_size)
    }

    /// Modification time of `path` in milliseconds since the epoch, nil if it does not exist.
    public static func modificationTimeMs(_ path: String) -> Int64? {
        var st = stat()
        guard fstatat(AT_FDCWD, path, &st, 0) == 0 else { return nil }
        return Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Cuts the file at `path` to `length` bytes (truncate(2)).
    public static func truncate(_ path: String, _ length: Int64) throws(SystemError) {
        ShardThreadContract.note("truncate", path)
        _ = try retrying("truncate", path) { Glibc.truncate(path, off_t(length)) }
    }

    public static func unlink(_ path: String) throws(SystemError) {
        ShardThreadContract.note("unlink", path)
        _ = try retrying("unlink", path) { Glibc.unlink(path) }
    }

    public static func rename(_ from: String, _ to: String) throws(SystemError) {
        ShardThreadContract.note("rename", from)
        _ = try retrying("rename", "\(from) → \(to)") { Glibc.rename(from, to) }
    }

    /// Creates `path` and its parents; succeeds if it already exists.
    public static func makeDirectories(_ path: String) throws(SystemError) {
        ShardThreadContract.note("mkdir", path)
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            if Glibc.mkdir(prefix, 0o755) != 0 && Glibc.errno != EEXIST {
                throw SystemError("mkdir", errno: Glibc.errno, prefix)
            }
            prefix += "/"
        }
    }

    /// Names in a directory, without "." and "..".
    public static func listDirectory(_ path: String) throws(SystemError) -> [String] {
        guard let dir = opendir(path) else { throw SystemError("opendir", errno: Glibc.errno, path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes a directory's entries (created, renamed, deleted files) durable.
    public static func syncDirectory(_ path: String) throws(SystemError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd)
    }

    /// Writes a small file atomically (temporary file, fdatasync, rename, directory sync).
    public static func writeFileAtomically(_ path: String, _ contents: [UInt8]) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try contents.withUnsafeBytes { raw in Result { () throws(SystemError) in try pwriteAll(fd, raw, at: 0) } }.get()
            try fdatasync(fd)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try rename(temporary, path)
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// Replaces a small file's contents atomically for readers (temporary file and rename),
    /// without making it durable: for live views such as statistics files.
    public static func writeFileReplacing(_ path: String, _ contents: [UInt8]) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try contents.withUnsafeBytes { raw in Result { () throws(SystemError) in try pwriteAll(fd, raw, at: 0) } }.get()
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try rename(temporary, path)
    }

    /// Reads a whole (small) file; nil if it does not exist.
    public static func readFile(_ path: String) throws(SystemError) -> [UInt8]? {
        let fd: Int32
        do { fd = try open(path, O_RDONLY) } catch { if error.errno == ENOENT { return nil }; throw error }
        defer { close(fd) }
        let size = Int(try fileSize(fd))
        var out = [UInt8](repeating: 0, count: size)
        let n = try out.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try preadFully(fd, raw, at: 0) } }.get()
        out.removeLast(size - n)
        return out
    }

    /// Wall-clock milliseconds since the epoch.
    public static func wallClockMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Monotonic nanoseconds.
    /// Sends signal `sig` to process `pid` (the lab stops the brokers it started).
    public static func signal(_ pid: Int32, _ sig: Int32) { _ = Glibc.kill(pid, sig) }

    /// Whether `fd` is a terminal (progress lines are rewritten in place there).
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Writes `text` to `fd` (standard output or error), retrying short writes; a failure (a
    /// full disk under a redirected log, a closed pipe) drops the text and returns false —
    /// unlike `FileHandle.write(_:)`, which traps, a log line never stops the process.
    @discardableResult
    public static func writeText(_ fd: Int32, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                guard let n = try? retrying("write", "fd \(fd)", { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }), n > 0 else { return false }
                done += n
            }
            return true
        }
    }

    /// The calling thread's CPU time and context switches so far (two syscalls, ~0.4 µs here).
    public static func threadUsage() -> ThreadUsage {
        var u = apus_thread_usage()
        apus_current_thread_usage(&u)
        return ThreadUsage(cpuNs: u.cpu_ns, voluntarySwitches: Int(u.voluntary), involuntarySwitches: Int(u.involuntary))
    }
}

/// A thread's CPU time and context switches: voluntary ones (it slept in a call — the disk, a
/// lock, a page fault) and involuntary ones (it was runnable and another task took the CPU).
public struct ThreadUsage: Sendable, Equatable {
    public var cpuNs: UInt64
    public var voluntarySwitches: Int
    public var involuntarySwitches: Int

    public init(cpuNs: UInt64 = 0, voluntarySwitches: Int = 0, involuntarySwitches: Int = 0) {
        self.cpuNs = cpuNs
        self.voluntarySwitches = voluntarySwitches
        self.involuntarySwitches = involuntarySwitches
    }
}

extension Sys {
    /// Takes an exclusive `flock` on `fd` without waiting: false when another open file
    /// description holds it. The lock belongs to the open file description, so it lasts as
    /// long as anything references it: descriptors, and io_uring requests still in flight.
    public static func tryLockExclusive(_ fd: Int32) throws(SystemError) -> Bool {
        while apus_flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EWOULDBLOCK { return false }
            throw SystemError("flock", errno: e, "fd \(fd)")
        }
        return true
    }

    /// Takes an exclusive `flock` on `fd`, waiting up to `timeoutMs` (polled every 1 ms).
    /// - Returns: how long it waited, in nanoseconds.
    public static func lockExclusive(_ fd: Int32, timeoutMs: Int, _ context: @autoclosure () -> String) throws(SystemError) -> UInt64 {
        if try tryLockExclusive(fd) { return 0 }
        let start = monotonicNs()
        while try !tryLockExclusive(fd) {
            let waited = monotonicNs() - start
            if waited >= UInt64(timeoutMs) * 1_000_000 {
                throw SystemError("flock", errno: EWOULDBLOCK, "\(context()): still held after \(timeoutMs) ms")
            }
            usleep(1000)
        }
        return monotonicNs() - start
    }

    /// sync(2): starts writing back every file system's dirty data (the lab settles the
    /// machine between runs with it).
    public static func syncFileSystems() {
        ShardThreadContract.note("sync", "")
        Glibc.sync()
    }

    /// Raises the soft open-files limit to the hard one (a broker keeps three descriptors per
    /// segment it has open). Returns the limits before and after.
    @discardableResult
    public static func raiseOpenFileLimit() -> (before: UInt64, after: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        let before = UInt64(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (before, before) }
        return (before, UInt64(limit.rlim_cur))
    }

    /// Grows the process's descriptor table to hold `count` descriptors now, so that no later
    /// accept, open or dup has to grow it: growing a table several threads share waits for an
    /// RCU grace period (`expand_files` → `synchronize_rcu`), 12–17 ms for a shard's
    /// `fcntl(F_DUPFD)` on this project's machine (Results/2026-12-06-probe-cpu). A table never
    /// shrinks. Returns the descriptors it now holds at least (0 if it could not be grown).
    @discardableResult
    public static func reserveDescriptorTable(_ count: Int) -> Int {
        let base = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard base >= 0 else { return 0 }
        defer { Glibc.close(base) }
        let highest = Glibc.fcntl(base, F_DUPFD_CLOEXEC, Int32(clamping: max(count, 1) - 1))  // the lowest free one at or above
        guard highest >= 0 else { return 0 }
        Glibc.close(highest)
        return Int(highest) + 1
    }

    /// The soft open-files limit.
    public static func openFileLimit() -> UInt64 {
        var limit = rlimit()
        return getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? UInt64(limit.rlim_cur) : 0
    }

    /// Releases a `flock` taken on `fd`.
    public static func unlock(_ fd: Int32) {
        _ = apus_flock(fd, LOCK_UN)
    }

    /// Removes an empty directory; false if it could not.
    @discardableResult
    public static func removeDirectory(_ path: String) -> Bool {
        ShardThreadContract.note("rmdir", path)
        return Glibc.rmdir(path) == 0
    }
}
