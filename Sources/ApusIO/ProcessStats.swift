#if canImport(Glibc)
import Glibc
#endif

/// The process's own resource use, read from /proc/self (the metrics endpoint's
/// `process_*` families, as Prometheus's process collector reports them).
public struct ProcessStats: Sendable {
    public var cpuSeconds: Double = 0
    public var residentBytes: Int64 = 0
    public var openFds: Int = 0
    public var maxFds: UInt64 = 0

    public static func sample() -> ProcessStats {
        var s = ProcessStats()
        // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks, after "(comm)".
        if let stat = readSmallFile("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) {
                s.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        if let statm = readSmallFile("/proc/self/statm") {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int64(fields[1]) { s.residentBytes = pages * Int64(sysconf(Int32(_SC_PAGESIZE))) }
        }
        if let dir = opendir("/proc/self/fd") {
            while let entry = readdir(dir) {
                if entry.pointee.d_name.0 != 46 { s.openFds += 1 }  // not "." or ".."
            }
            closedir(dir)
            s.openFds -= 1  // the directory's own descriptor
        }
        s.maxFds = Sys.openFileLimit()
        return s
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}
