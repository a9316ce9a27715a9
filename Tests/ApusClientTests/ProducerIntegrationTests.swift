import ApusClient
import ApusTestSupport
import Foundation
import Testing

/// A real `apus serve` with `partitions` partitions per auto-created topic.
func startBroker(partitions: Int, backend: String = "auto") throws -> ApusServerProcess {
    try ApusServerProcess(arguments: ["--set", "num.partitions=\(partitions)", "--log-level", "warning", "--io-backend", backend])
}

/// Runs kcat and returns its standard output.
func kcat(_ arguments: [String]) throws -> String {
    try run("/usr/bin/kcat", arguments).out
}

@Suite(.serialized) struct ProducerIntegrationTests {
    static let hasKcat = FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat")

    /// Produces `count` keyless records; returns the acknowledged count after checking that
    /// every ack carries no error and that base offsets are contiguous per partition.
    static func produce(_ broker: ApusServerProcess, topic: String, count: Int, props: [String: String]) throws -> (Int, Producer) {
        var config = ProducerConfig(bootstrap: broker.bootstrap)
        config.batchSize = 64 << 10
        for (k, v) in props { try config.set(k, v) }
        let producer = try Producer(config: config, topic: topic)
        final class Tally { var acked = 0; var errors = 0; var next: [Int32: Int64] = [:]; var gaps = 0 }
        let tally = Tally()
        producer.onAck = { ack in
            if ack.errorCode != 0 { tally.errors += 1; return }
            tally.acked += ack.recordCount
            if config.acks != 0 {
                if ack.baseOffset != tally.next[ack.partition, default: 0] { tally.gaps += 1 }
                tally.next[ack.partition] = ack.baseOffset + Int64(ack.recordCount)
            }
        }
        let value = [UInt8](repeating: 0x61, count: 100)
        try value.withUnsafeBytes { v in
            for _ in 0..<count { try producer.send(key: nil, value: v) }
        }
        try producer.flush()
        #expect(tally.errors == 0)
        #expect(tally.gaps == 0)
        return (tally.acked, producer)
    }

    @Test(arguments: ["1", "all"])
    func ackedCountEqualsLogEnd(acks: String) throws {
        let broker = try startBroker(partitions: 4)
        defer { broker.removeData() }
        let topic = "acks-\(acks)"
        let (acked, producer) = try Self.produce(broker, topic: topic, count: 100_000, props: ["acks": acks, "linger.ms": "5"])
        #expect(acked == 100_000)
        #expect(producer.partitionCount == 4)
        let ends = try producer.kafkaConnection.endOffsets(of: topic, partitions: producer.partitionCount)
        #expect(ends.reduce(0, +) == Int64(acked))
        if Self.hasKcat {
            let out = try kcat(["-b", broker.bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%s\n"])
            let lines = out.split(separator: "\n")
            #expect(lines.count == acked)
            #expect(lines.allSatisfy { $0.utf8.count == 100 && $0.allSatisfy { $0 == "a" } })
        }
    }

    @Test func compressedAndKeyedRecordsLandWhereJavaPutsThem() throws {
        let broker = try startBroker(partitions: 4)
        defer { broker.removeData() }
        var config = ProducerConfig(bootstrap: broker.bootstrap)
        try config.set("acks", "1")
        try config.set("compression.type", "zstd")
        try config.set("partitioner", "murmur2")
        let producer = try Producer(config: config, topic: "keyed")
        var acked = 0
        producer.onAck = { acked += $0.errorCode == 0 ? $0.recordCount : 0 }
        for i in 0..<1000 {
            let key = Array("key-\(i)".utf8), value = Array("value-\(i)".utf8)
            try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try producer.send(key: k, value: v) } }
        }
        try producer.flush()
        #expect(acked == 1000)
        guard Self.hasKcat else { return }
        let out = try kcat(["-b", broker.bootstrap, "-C", "-t", "keyed", "-e", "-q", "-f", "%k %p %s\n"])
        let lines = out.split(separator: "\n")
        #expect(lines.count == 1000)
        for line in lines {
            let parts = line.split(separator: " ")
            let key = Array(parts[0].utf8)
            let expected = key.withUnsafeBytes { murmur2Partition(key: $0, partitions: 4) }
            #expect(Int(parts[1]) == expected, "\(line)")
            #expect(parts[2].dropFirst(6) == parts[0].dropFirst(4))
        }
    }
}
