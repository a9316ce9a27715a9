import ApusIO
import Synchronization
import Testing

/// Threads, pinning and NUMA placement as the shards use them, on this machine's real CPUs.
@Suite struct PlacementTests {
    @Test func aStartedThreadPinsToEachAllowedCPU() throws {
        let cpus = Placement.allowedCPUs()
        #expect(!cpus.isEmpty && cpus == cpus.sorted())
        let pinned = Mutex<[Int: String]>([:])
        for cpu in cpus {
            let thread = try Placement.startThread(name: "apus-test-\(cpu)") {
                let outcome: String
                do {
                    try Placement.pinCurrentThread(to: cpu)
                    outcome = "ok"
                } catch {
                    outcome = "\(error)"
                }
                pinned.withLock { $0[cpu] = outcome }
            }
            thread.join()
        }
        #expect(pinned.withLock { $0 } == Dictionary(uniqueKeysWithValues: cpus.map { ($0, "ok") }))
        #expect(throws: SystemError.self, "a CPU that does not exist") { try Placement.pinCurrentThread(to: 100_000) }
    }

    @Test func numaPlacementUsesOnlyNodesThatExist() {
        let nodes = Placement.numaNodeCount()
        guard nodes > 0 else { return }  // libnuma reports no NUMA here: nothing else is called
        for cpu in Placement.allowedCPUs() {
            let node = Placement.numaNode(ofCPU: cpu)
            #expect(node.map { (0..<nodes).contains($0) } ?? false, "CPU \(cpu) is on node \(String(describing: node))")
        }
        #expect(throws: SystemError.self) { try Placement.preferMemory(onNode: nodes + 7) }
    }
}
