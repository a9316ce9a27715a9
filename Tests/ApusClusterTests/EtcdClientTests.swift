import ApusCluster
import ApusTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The etcd client against a real etcd: keys, prefixes, compare-and-swap, leases that keep keys
/// alive and let them go, large answers (chunked), and an endpoint list whose first member is down.
@Suite(.serialized) struct EtcdClientTests {
    @Test func keysPrefixesAndCompareAndSwap() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = try EtcdClient(endpoints: [etcd.endpoint])
        #expect(try client.get("/apus/missing") == nil)
        let revision = try client.put("/apus/brokers/1", Array("one".utf8))
        let one = try #require(try client.get("/apus/brokers/1"))
        #expect(one.value == Array("one".utf8) && one.modRevision == revision && one.version == 1)
        try client.put("/apus/brokers/2", Array("two".utf8))
        try client.put("/apus/brokersX", Array("not under the prefix".utf8))
        let listed = try client.range(prefix: "/apus/brokers/")
        #expect(listed.kvs.map(\.key) == ["/apus/brokers/1", "/apus/brokers/2"])
        #expect(listed.revision >= revision)
        // create: only once.
        #expect(try client.create("/apus/controller", Array("1".utf8)))
        #expect(try !client.create("/apus/controller", Array("2".utf8)))
        #expect(try client.get("/apus/controller")?.value == Array("1".utf8))
        // compare-and-swap on the revision read.
        let read = try #require(try client.get("/apus/controller"))
        #expect(try client.compareAndSwap("/apus/controller", modRevision: read.modRevision, Array("3".utf8)))
        #expect(try !client.compareAndSwap("/apus/controller", modRevision: read.modRevision, Array("4".utf8)))  // stale
        #expect(try client.get("/apus/controller")?.value == Array("3".utf8))
        #expect(try client.delete("/apus/brokers/", prefix: true) == 2)
        #expect(try client.range(prefix: "/apus/brokers/").kvs.isEmpty)
        // Values of any bytes, and an answer far larger than one HTTP chunk.
        let blob = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for i in 0..<40 { try client.put("/apus/topics/t\(i)", blob) }
        let topics = try client.range(prefix: "/apus/topics/")
        #expect(topics.kvs.count == 40 && topics.kvs.allSatisfy { $0.value == blob })
    }

    @Test func leasesKeepKeysAliveAndExpire() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = try EtcdClient(endpoints: [etcd.endpoint])
        let kept = try client.grantLease(ttlSeconds: 2)
        let dropped = try client.grantLease(ttlSeconds: 2)
        try client.put("/apus/brokers/1", [1], lease: kept)
        try client.put("/apus/brokers/2", [2], lease: dropped)
        #expect(try client.get("/apus/brokers/1")?.lease == kept)
        let until = Date().addingTimeInterval(4)
        while Date() < until {
            #expect(try client.keepAlive(kept) > 0)
            usleep(500_000)
        }
        #expect(try client.get("/apus/brokers/1") != nil)   // kept alive
        #expect(try client.get("/apus/brokers/2") == nil)   // expired with its lease
        #expect(try client.keepAlive(dropped) <= 0)
        try client.revoke(kept)
        #expect(try client.get("/apus/brokers/1") == nil)
    }

    @Test func anEndpointThatIsDownIsSkipped() throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let down = "127.0.0.1:\(ApusServerProcess.freePort())"
        let client = try EtcdClient(endpoints: [down, etcd.endpoint])
        try client.put("/apus/x", [42])
        #expect(try client.get("/apus/x")?.value == [42])
        #expect(throws: EtcdError.self) { try EtcdClient(endpoints: ["nonsense"]) }
        let nobody = try EtcdClient(endpoints: [down])
        #expect(throws: EtcdError.self) { try nobody.get("/apus/x") }
    }

    /// A member that takes the connection and never answers (wedged, stopped) fails the call
    /// after the timeout, on every endpoint, instead of hanging the agent's thread; the next
    /// endpoint, a live one, still answers.
    @Test func aMemberThatNeverAnswersTimesOut() throws {
        let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(silent) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                #expect(bind(silent, $0, length) == 0 && listen(silent, 16) == 0)
                try #require(getsockname(silent, $0, &length) == 0)
            }
        }
        let endpoint = "127.0.0.1:\(UInt16(bigEndian: address.sin_port))"  // connects (the backlog), never read
        let started = Date()
        let client = try EtcdClient(endpoints: [endpoint], timeoutMs: 200)
        #expect { try client.get("/apus/x") } throws: { "\($0)".contains("timeout") }
        #expect(Date().timeIntervalSince(started) < 30)  // returned at all (each try waits 200 ms)
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let failingOver = try EtcdClient(endpoints: [endpoint, etcd.endpoint], timeoutMs: 200)
        try failingOver.put("/apus/y", [7])
        #expect(try failingOver.get("/apus/y")?.value == [7])
    }
}
