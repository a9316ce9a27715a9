import KafkaProtocol
import KafkaWire

extension Broker {
    /// ApiVersions v0–4: the handler table, as advertised.
    static let apiVersions = HandlerEntry(api: .apiVersions, versions: 0...4, duringAuthentication: true) { broker, context, r throws(WireError) in
        _ = try ApiVersionsRequest.decode(from: &r, version: context.apiVersion)
        return broker.respond(ApiVersionsResponse(errorCode: 0, apiKeys: Handlers.supported, throttleTimeMs: 0), context)
    }
}
