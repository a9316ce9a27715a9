import CApusSys
#if canImport(Glibc)
import Glibc
#endif

/// Threads and where they run: CPU affinity and NUMA memory placement (libnuma).
public enum Placement {
    /// The CPUs this process may run on, ascending (its affinity mask, so a container's or
    /// `taskset`'s limits are respected).
    public static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let n = cpus.withUnsafeMutableBufferPointer { apus_allowed_cpus($0.baseAddress, Int32($0.count)) }
        guard n > 0 else { return [0] }
        return cpus[0..<Int(n)].map(Int.init)
    }

    /// Pins the calling thread to `cpu`.
    public static func pinCurrentThread(to cpu: Int) throws(SystemError) {
        let rc = apus_pin_current_thread(Int32(cpu))
        if rc != 0 { throw SystemError("pthread_setaffinity_np", errno: rc, "cpu \(cpu)") }
    }

    /// NUMA nodes libnuma reports; 0 when NUMA is not available (nothing else is called then).
    public static func numaNodeCount() -> Int { Int(apus_numa_node_count()) }

    /// The NUMA node `cpu` belongs to, if NUMA is available.
    public static func numaNode(ofCPU cpu: Int) -> Int? {
        let node = apus_numa_node_of_cpu(Int32(cpu))
        return node >= 0 ? Int(node) : nil
    }

    /// Makes the calling thread's new memory come from `node` first (its shard's buffers and
    /// page cache pages it faults in stay local to its CPU).
    public static func preferMemory(onNode node: Int) throws(SystemError) {
        let rc = apus_numa_prefer_node(Int32(node))
        if rc != 0 { throw SystemError("numa_set_preferred", errno: rc, "node \(node)") }
    }

    /// A started thread, to wait for with ``join()``.
    public final class Thread: @unchecked Sendable {
        fileprivate var handle = pthread_t()

        /// Waits for the thread's body to return.
        public func join() { _ = pthread_join(handle, nil) }
    }

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a named thread (a plain pthread: it can be pinned, unlike Dispatch's).
    public static func startThread(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) -> Thread {
        let thread = Thread()
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let rc = pthread_create(&thread.handle, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            _ = apus_name_current_thread(start.name)
            start.body()
            return nil
        }, start)
        if rc != 0 {
            Unmanaged<Start>.fromOpaque(start).release()
            throw SystemError("pthread_create", errno: rc, name)
        }
        return thread
    }
}
