import KafkaProtocol
import KafkaWire

/// One API the broker serves: the versions it advertises and its handler.
struct HandlerEntry: Sendable {
    let api: ApiKey
    let versions: ClosedRange<Int16>
    /// Older versions that are not advertised but still answered — with UNSUPPORTED_VERSION in
    /// each partition (Produce v0–2 and Fetch v0–3: message formats v0/v1, gone in Kafka 4.0,
    /// KIP-896) — rather than by closing the connection.
    var legacy: ClosedRange<Int16>? = nil
    /// Runs on shard 0 whichever shard received it: it touches topics, groups or producer
    /// ids, which shard 0 keeps.
    var onCoordinator = false
    /// Served before SASL authentication (ApiVersions, SaslHandshake, SaslAuthenticate).
    var duringAuthentication = false
    let handle: @Sendable (Broker, RequestContext, inout WireReader) throws(WireError) -> HandleOutcome
}

/// The one table of handlers: it dispatches requests and builds the ApiVersions response, so
/// what is advertised is exactly what is implemented.
enum Handlers {
    static let all: [HandlerEntry] = [
        Broker.produce, Broker.fetch, Broker.listOffsets, Broker.metadata,
        Broker.apiVersions, Broker.createTopics, Broker.deleteTopics, Broker.initProducerId,
        Broker.findCoordinator, Broker.joinGroup, Broker.syncGroup, Broker.heartbeat, Broker.leaveGroup,
        Broker.offsetCommit, Broker.offsetFetch, Broker.listGroups, Broker.describeGroups,
        Broker.describeConfigs, Broker.alterConfigs, Broker.incrementalAlterConfigs,
        Broker.createPartitions, Broker.deleteRecords, Broker.describeCluster, Broker.deleteGroups, Broker.offsetDelete,
        Broker.offsetForLeaderEpoch, Broker.describeLogDirs, Broker.describeProducers,
        Broker.consumerGroupHeartbeat, Broker.consumerGroupDescribe,
        Broker.saslHandshake, Broker.saslAuthenticate, Broker.describeUserScramCredentials, Broker.alterUserScramCredentials,
        Broker.createAcls, Broker.describeAcls, Broker.deleteAcls,
        Broker.electLeaders, Broker.alterPartitionReassignments, Broker.listPartitionReassignments,
    ]

    static let byKey: [Int16: HandlerEntry] = Dictionary(uniqueKeysWithValues: all.map { ($0.api.rawValue, $0) })

    static var supported: [ApiVersionsResponse.ApiVersion] {
        all.sorted { $0.api.rawValue < $1.api.rawValue }.map {
            ApiVersionsResponse.ApiVersion(apiKey: $0.api.rawValue, minVersion: $0.versions.lowerBound, maxVersion: $0.versions.upperBound)
        }
    }

    /// UNSUPPORTED_VERSION with a v0 body and v0 header, whatever version was asked for, so
    /// that any client can read it and retry with a version listed.
    static func unsupportedApiVersions(correlationId: Int32) -> ResponseFrame {
        ResponseFrame(correlationId: correlationId, headerVersion: 0) {
            ApiVersionsResponse(errorCode: ErrorCode.unsupportedVersion.rawValue, apiKeys: supported).encode(into: &$0, version: 0)
        }
    }
}
