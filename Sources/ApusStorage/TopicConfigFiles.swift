import ApusIO
import KafkaWire

/// Per-topic configuration overrides on disk: one small file per topic that has any,
/// `<data dir>/.topic-configs/<topic>.properties`, `key=value` lines sorted by key, written
/// atomically (the disk worker's job: it syncs). A topic without overrides has no file.
extension LogManager {
    static let topicConfigDirectory = ".topic-configs"

    private var topicConfigPath: String { dataDirectory + "/" + Self.topicConfigDirectory }

    /// Every topic's overrides, read at start-up. A file that does not parse is reported and
    /// its lines that do are kept.
    public func topicConfigs() throws(StorageError) -> [String: [String: String]] {
        let directory = topicConfigPath
        guard Sys.exists(directory) else { return [:] }
        var result: [String: [String: String]] = [:]
        do {
            for name in try Sys.listDirectory(directory) where name.hasSuffix(".properties") {
                let topic = String(name.dropLast(".properties".count))
                guard let bytes = try Sys.readFile(directory + "/" + name) else { continue }
                var overrides: [String: String] = [:]
                for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                    guard let equals = line.firstIndex(of: "=") else {
                        logger.warning("ignoring a malformed topic configuration line", metadata: ["topic": "\(topic)", "line": "\(line)"])
                        continue
                    }
                    overrides[String(line[..<equals])] = String(line[line.index(after: equals)...])
                }
                if !overrides.isEmpty { result[topic] = overrides }
            }
        } catch {
            throw .io(error)
        }
        return result
    }

    /// Makes `overrides` the stored configuration of `topic` (none: the file is removed).
    /// Waits on the disk: call it off the shard threads.
    public func writeTopicConfig(_ topic: String, _ overrides: [String: String]) throws(StorageError) {
        let path = topicConfigPath + "/" + topic + ".properties"
        do {
            if overrides.isEmpty {
                guard Sys.exists(path) else { return }
                try Sys.unlink(path)
                try Sys.syncDirectory(topicConfigPath)
                return
            }
            if !Sys.exists(topicConfigPath) {
                try Sys.makeDirectories(topicConfigPath)
                try Sys.syncDirectory(dataDirectory)
            }
            let text = overrides.keys.sorted().map { "\($0)=\(overrides[$0]!)\n" }.joined()
            try Sys.writeFileAtomically(path, Array(text.utf8))
        } catch {
            throw .io(error)
        }
    }
}

/// Each partition directory's `partition.metadata`, as Kafka writes it: the format version and
/// the topic's id (`topic_id: <base64url>`), so that a topic deleted and created again under the
/// same name is a different topic to clients.
extension LogManager {
    static let partitionMetadataFile = "partition.metadata"

    /// The topic id stored in `tp`'s directory, if any.
    public func topicId(of tp: TopicPartition) -> KafkaUUID? {
        guard let bytes = try? Sys.readFile(dataDirectory + "/" + tp.description + "/" + Self.partitionMetadataFile) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("topic_id:") {
            return KafkaUUID(base64URL: String(line.dropFirst("topic_id:".count).drop { $0 == " " }))
        }
        return nil
    }

    /// Writes `tp`'s `partition.metadata` (atomically: the disk worker's or start-up's job).
    public func writeTopicId(_ id: KafkaUUID, of tp: TopicPartition) throws(StorageError) {
        do {
            try Sys.writeFileAtomically(dataDirectory + "/" + tp.description + "/" + Self.partitionMetadataFile,
                                        Array("version: 0\ntopic_id: \(id.base64URL)\n".utf8))
        } catch {
            throw .io(error)
        }
    }
}
