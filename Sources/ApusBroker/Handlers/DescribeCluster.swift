import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeCluster v0–1: this broker is the whole cluster and its controller. Asking a
    /// broker for the controllers' endpoints (endpoint type 2) gets MISMATCHED_ENDPOINT_TYPE,
    /// as from Kafka's brokers. There is no authorizer, so authorized operations stay unknown.
    static let describeCluster = HandlerEntry(api: .describeCluster, versions: 0...1) { broker, context, r throws(WireError) in
        let request = try DescribeClusterRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeClusterResponse(endpointType: request.endpointType)
        guard request.endpointType == 1 else {
            response.errorCode = ErrorCode.mismatchedEndpointType.rawValue
            response.errorMessage = "this is a broker: it describes brokers (endpoint type 1)"
            return broker.respond(response, context)
        }
        let config = broker.config
        response.clusterId = config.clusterId
        response.controllerId = config.nodeId
        let address = config.advertised(context.listener)
        response.brokers = [.init(brokerId: config.nodeId, host: address.host, port: address.port, rack: nil)]
        return broker.respond(response, context)
    }
}
