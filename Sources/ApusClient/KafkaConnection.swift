import ApusIO
#if canImport(Glibc)
import Glibc  // iovec
#endif
import KafkaProtocol
import KafkaWire

/// One connection to a broker: the ApiVersions handshake, version choice and blocking
/// request/response round trips with the generated message types (metadata, list offsets…).
/// The producer pipelines its Produce requests over the same connection.
///
/// Not thread-safe: one owner thread.
public final class KafkaConnection {
    let transport: ClientSocket
    var reader = FrameReader()
    let clientId: String
    var nextCorrelationId: Int32 = 1
    /// The broker's version range per API key, from ApiVersions.
    public private(set) var brokerVersions: [Int16: ClosedRange<Int16>] = [:]
    /// The broker's address as connected to.
    let address: (host: String, port: UInt16)

    /// Connects to `bootstrap` ("host:port") and performs the ApiVersions handshake (v3, or v0
    /// if the broker answers UNSUPPORTED_VERSION). `timeoutMs` > 0: a read or write that waits
    /// longer fails.
    public init(bootstrap: String, clientId: String = "apus-lab", timeoutMs: Int = 0) throws(ClientError) {
        let (host, port) = try Self.parse(bootstrap)
        do { transport = try ClientSocket(host: host, port: port, timeoutMs: timeoutMs) } catch { throw ClientError(error) }
        address = (host, port)
        self.clientId = clientId
        try handshake()
    }

    static func parse(_ bootstrap: String) throws(ClientError) -> (String, UInt16) {
        let first = bootstrap.split(separator: ",").first.map(String.init) ?? bootstrap
        guard let colon = first.lastIndex(of: ":"), let port = UInt16(first[first.index(after: colon)...]) else {
            throw ClientError("bootstrap '\(bootstrap)': expected host:port")
        }
        return (String(first[..<colon]), port)
    }

    private func handshake() throws(ClientError) {
        var request = ApiVersionsRequest()
        request.clientSoftwareName = "apus-lab"
        request.clientSoftwareVersion = "0.1"
        var response = try roundTrip(request, version: 3)
        if response.errorCode == ErrorCode.unsupportedVersion.rawValue {  // the broker lists what it has in a v0 body
            response = try roundTrip(ApiVersionsRequest(), version: 0)
        }
        guard response.errorCode == 0 else {
            throw ClientError("ApiVersions failed with error \(response.errorCode)", kafkaErrorCode: response.errorCode)
        }
        for key in response.apiKeys where key.minVersion <= key.maxVersion {
            brokerVersions[key.apiKey] = key.minVersion...key.maxVersion
        }
    }

    /// The highest version of `R` that both this client (`supported`) and the broker speak.
    public func version<R: KafkaRequest>(of _: R.Type, supported: ClosedRange<Int16> = R.validVersions) throws(ClientError) -> Int16 {
        guard let broker = brokerVersions[R.apiKey] else {
            throw ClientError("the broker does not support \(R.messageName)")
        }
        let high = min(broker.upperBound, supported.upperBound)
        guard high >= max(broker.lowerBound, supported.lowerBound) else {
            throw ClientError("no common version of \(R.messageName): broker \(broker), client \(supported)")
        }
        return high
    }

    /// Encodes the request header for `R` at `version` with a fresh correlation id.
    func writeHeader<R: KafkaRequest>(_: R.Type, version: Int16, into w: inout WireWriter) -> Int32 {
        let correlationId = nextCorrelationId
        nextCorrelationId = nextCorrelationId == Int32.max ? 1 : nextCorrelationId + 1
        RequestHeader(requestApiKey: R.apiKey, requestApiVersion: version, correlationId: correlationId, clientId: clientId)
            .encode(into: &w, version: R.requestHeaderVersion(version))
        return correlationId
    }

    /// Sends `request` and waits for its response. Only while no pipelined requests are in flight.
    public func roundTrip<R: KafkaRequest>(_ request: R, version: Int16) throws(ClientError) -> R.Response {
        var w = WireWriter()
        w.writeInt32(0)
        let correlationId = writeHeader(R.self, version: version, into: &w)
        request.encode(into: &w, version: version)
        let size = Int32(w.count - 4).bigEndian
        withUnsafeBytes(of: size) { s in for i in 0..<4 { w.bytes[i] = s[i] } }
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: w.count, alignment: 8)
        defer { raw.deallocate() }
        w.bytes.withUnsafeBytes { raw.copyMemory(from: $0) }
        var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
        do { try transport.writeAll(&iov, count: 1) } catch { throw ClientError(error) }
        while true {
            if let frame = try reader.nextFrame() {
                var r = WireReader(frame)
                let header: ResponseHeader
                let response: R.Response
                do {
                    header = try ResponseHeader.decode(from: &r, version: R.responseHeaderVersion(version))
                    response = try R.Response.decode(from: &r, version: version)
                } catch {
                    throw ClientError("decoding the response to \(R.messageName) v\(version): \(error)")
                }
                guard header.correlationId == correlationId else {
                    throw ClientError("\(R.messageName): correlation id \(header.correlationId), expected \(correlationId)")
                }
                return response
            }
            _ = try reader.fill(from: transport, wait: true)
        }
    }

    /// `topic`'s partitions with their leaders, and the brokers Metadata lists (v8 at most, as
    /// the lab specifies), creating the topic if the broker auto-creates topics. With `wait`,
    /// asks again (100 ms apart, `attempts` times) until every partition has a leader, as while
    /// a topic is created or a leader elected; without, returns what the broker knows now.
    public func metadata(of topic: String, wait: Bool = true, attempts: Int = 50) throws(ClientError)
        -> (topic: MetadataResponse.MetadataResponseTopic, brokers: [MetadataResponse.MetadataResponseBroker]) {
        let version = try version(of: MetadataRequest.self, supported: 1...8)
        var request = MetadataRequest()
        request.topics = [MetadataRequest.MetadataRequestTopic(name: topic)]
        request.allowAutoTopicCreation = true
        var last: Int16 = 0
        for _ in 0..<(wait ? attempts : 1) {
            let response = try roundTrip(request, version: version)
            if let t = response.topics.first(where: { $0.name == topic }) {
                last = t.errorCode
                if t.errorCode == 0, !t.partitions.isEmpty,
                   !wait || t.partitions.allSatisfy({ $0.leaderId >= 0 && $0.errorCode == 0 }) {
                    return (t, response.brokers)
                }
                // 3 UNKNOWN_TOPIC_OR_PARTITION and 5 LEADER_NOT_AVAILABLE are transient while a topic is created.
                if t.errorCode != 0 && t.errorCode != 3 && t.errorCode != 5 {
                    throw ClientError("Metadata for \(topic): error \(t.errorCode)", kafkaErrorCode: t.errorCode)
                }
            }
            if wait { Sys.sleep(microseconds: 100_000) }
        }
        throw ClientError("Metadata for \(topic): no leaders after \(attempts) attempts (last error \(last))", kafkaErrorCode: last)
    }

    /// Partition count and leader ids of `topic`, for a client that talks to this one broker
    /// only (the consumer): every partition must be led by it.
    public func partitions(of topic: String, attempts: Int = 50) throws(ClientError) -> MetadataResponse.MetadataResponseTopic {
        let (t, brokers) = try metadata(of: topic, attempts: attempts)
        let leaders = Set(t.partitions.map(\.leaderId))
        let leader = brokers.first { $0.nodeId == leaders.first }
        if leaders.count > 1 || (brokers.count > 1 && (leader?.host != address.host || leader?.port != Int32(address.port))) {
            throw ClientError("\(topic): led by brokers \(leaders.sorted()) (not all the one at \(address.host):\(address.port)); this client reads from one broker")
        }
        return t
    }

    /// Creates `topic` with `partitions` partitions and `replicationFactor` replicas of each
    /// (CreateTopics); an existing topic is an error unless `existingIsFine`.
    public func createTopic(_ topic: String, partitions: Int, replicationFactor: Int16 = 1, configs: [String: String] = [:],
                            existingIsFine: Bool = false) throws(ClientError) {
        let version = try version(of: CreateTopicsRequest.self, supported: 0...4)
        var request = CreateTopicsRequest()
        var t = CreateTopicsRequest.CreatableTopic()
        t.name = topic
        t.numPartitions = Int32(partitions)
        t.replicationFactor = replicationFactor
        t.configs = configs.keys.sorted().map { .init(name: $0, value: configs[$0]) }
        request.topics = [t]
        request.timeoutMs = 30_000
        let response = try roundTrip(request, version: version)
        guard let result = response.topics.first(where: { $0.name == topic }) else { throw ClientError("CreateTopics \(topic): no result for the topic") }
        if result.errorCode != 0 && !(existingIsFine && result.errorCode == ErrorCode.topicAlreadyExists.rawValue) {
            throw ClientError("CreateTopics \(topic): error \(result.errorCode) \(result.errorMessage ?? "")", kafkaErrorCode: result.errorCode)
        }
    }

    /// The log end offset (high watermark) of each partition of `topic` (ListOffsets, latest).
    public func endOffsets(of topic: String, partitions: Int) throws(ClientError) -> [Int64] {
        try listOffsets(of: topic, partitions: partitions, timestamp: -1)
    }

    /// The log start offset of each partition of `topic` (ListOffsets, earliest).
    public func startOffsets(of topic: String, partitions: Int) throws(ClientError) -> [Int64] {
        try listOffsets(of: topic, partitions: partitions, timestamp: -2)
    }

    /// ListOffsets for every partition of `topic` at `timestamp` (-1 latest, -2 earliest, or a time in ms).
    public func listOffsets(of topic: String, partitions: Int, timestamp: Int64) throws(ClientError) -> [Int64] {
        let version = try version(of: ListOffsetsRequest.self, supported: 1...7)
        var request = ListOffsetsRequest()
        request.replicaId = -1
        request.topics = [ListOffsetsRequest.ListOffsetsTopic(
            name: topic,
            partitions: (0..<partitions).map { ListOffsetsRequest.ListOffsetsPartition(partitionIndex: Int32($0), timestamp: timestamp) }
        )]
        let response = try roundTrip(request, version: version)
        var offsets = [Int64](repeating: -1, count: partitions)
        for t in response.topics where t.name == topic {
            for p in t.partitions where Int(p.partitionIndex) < partitions {
                guard p.errorCode == 0 else {
                    throw ClientError("ListOffsets \(topic)-\(p.partitionIndex): error \(p.errorCode)", kafkaErrorCode: p.errorCode)
                }
                offsets[Int(p.partitionIndex)] = p.offset
            }
        }
        return offsets
    }
}
