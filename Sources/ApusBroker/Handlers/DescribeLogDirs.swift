import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeLogDirs v0–4: the data directory is the one log dir; each partition's size comes
    /// from the shard owning it. Capacity (v4 total/usable bytes) is reported as unknown (-1).
    static let describeLogDirs = HandlerEntry(api: .describeLogDirs, versions: 0...4) { broker, context, r throws(WireError) in
        let request = try DescribeLogDirsRequest.decode(from: &r, version: context.apiVersion)
        if broker.denyCluster(.describe, context) != nil {  // DESCRIBE on the cluster (ACLs)
            return broker.respond(DescribeLogDirsResponse(errorCode: ErrorCode.clusterAuthorizationFailed.rawValue), context)
        }
        var items: [(topic: CatalogTopic, partition: Int32)] = []
        if let wanted = request.topics {
            for t in wanted {
                guard let entry = broker.topic(t.topic) else { continue }  // Kafka leaves out what it does not host
                for p in t.partitions where p >= 0 && Int(p) < entry.partitionCount { items.append((entry, p)) }
            }
        } else {
            for entry in broker.topics.values.sorted(by: { $0.name < $1.name }) {
                for p in 0..<Int32(entry.partitionCount) { items.append((entry, p)) }
            }
        }
        return broker.scatter(context, items, owner: { $0.topic.owners[Int($0.partition)] }, work: { owner, share in
            share.map { owner.log($0.topic, $0.partition)?.sizeInBytes ?? 0 }
        }, gathered: { broker, sizes in
            var result = DescribeLogDirsResponse.DescribeLogDirsResult(logDir: broker.logs.dataDirectory)
            for (item, size) in zip(items, sizes) {
                let partition = DescribeLogDirsResponse.DescribeLogDirsPartition(partitionIndex: item.partition, partitionSize: size, offsetLag: 0, isFutureKey: false)
                if let last = result.topics.indices.last, result.topics[last].name == item.topic.name {
                    result.topics[last].partitions.append(partition)
                } else {
                    result.topics.append(.init(name: item.topic.name, partitions: [partition]))
                }
            }
            return broker.frame(DescribeLogDirsResponse(results: [result]), context)
        })
    }
}
