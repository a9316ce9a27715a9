import ApusClient
import Foundation
import Testing

/// A real `apus serve` on 127.0.0.1 (a small copy of ApusServerTests' ApusServerProcess: test
/// targets cannot share files without a support target, which would mean editing that target).
final class Broker {
    let dataDir = NSTemporaryDirectory() + "apus-client-\(UUID().uuidString.prefix(8))"
    let port: Int
    let process = Process()
    var bootstrap: String { "127.0.0.1:\(port)" }

    init(partitions: Int) throws {
        port = Int.random(in: 20_000...40_000)
        var dir = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent()
        var binary: String?
        for _ in 0..<4 where binary == nil {
            let candidate = dir.appendingPathComponent("apus").path
            if FileManager.default.isExecutableFile(atPath: candidate) { binary = candidate }
            dir = dir.deletingLastPathComponent()
        }
        guard let binary else { throw ClientError("apus not found; run `swift build` first") }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data-dir", dataDir, "--listen", bootstrap, "--set", "num.partitions=\(partitions)", "--log-level", "warning"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<200 {
            if (try? KafkaConnection(bootstrap: bootstrap)) != nil { return }
            guard process.isRunning else { break }
            usleep(50_000)
        }
        throw ClientError("apus serve did not start on \(bootstrap)")
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dataDir)
    }
}

/// Runs kcat and returns its standard output.
func kcat(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/kcat")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

@Suite(.serialized) struct ProducerIntegrationTests {
    static let hasKcat = FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat")

    /// Produces `count` keyless records; returns the acknowledged count after checking that
    /// every ack carries no error and that base offsets are contiguous per partition.
    static func produce(_ broker: Broker, topic: String, count: Int, props: [String: String]) throws -> (Int, Producer) {
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
        let broker = try Broker(partitions: 4)
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
        let broker = try Broker(partitions: 4)
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
