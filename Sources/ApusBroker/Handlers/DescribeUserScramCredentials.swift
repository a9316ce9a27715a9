import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeUserScramCredentials v0: each user's mechanisms and iteration counts (never a salt
    /// or key). No users (or null): every user; an unknown one: RESOURCE_NOT_FOUND; a user asked
    /// for twice: DUPLICATE_RESOURCE — Kafka's answers.
    static let describeUserScramCredentials = HandlerEntry(api: .describeUserScramCredentials, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DescribeUserScramCredentialsRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeUserScramCredentialsResponse(errorMessage: nil)
        if let denied = broker.denyCluster(.describe, context) {
            response.errorCode = denied.rawValue
            response.errorMessage = "describing credentials needs DESCRIBE on the cluster"
            return broker.respond(response, context)
        }
        let credentials = broker.credentialsInEffect
        let names = request.users.map { $0.map(\.name) }.flatMap { $0.isEmpty ? nil : $0 } ?? credentials.keys.sorted()
        var counts: [String: Int] = [:]
        for name in names { counts[name, default: 0] += 1 }
        var seen = Set<String>()
        for name in names where seen.insert(name).inserted {
            var result = DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult(user: name, errorMessage: nil)
            if counts[name]! > 1 {
                result.errorCode = ErrorCode.duplicateResource.rawValue
                result.errorMessage = "user \(name) was asked for more than once"
            } else if let mechanisms = credentials[name] {
                result.credentialInfos = mechanisms.sorted { $0.key < $1.key }.map { .init(mechanism: $0.key.rawValue, iterations: $0.value.iterations) }
            } else {
                result.errorCode = ErrorCode.resourceNotFound.rawValue
                result.errorMessage = "no SCRAM credential for user \(name)"
            }
            response.results.append(result)
        }
        return broker.respond(response, context)
    }
}
