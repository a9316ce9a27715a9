import KafkaProtocol
import KafkaWire

extension Broker {
    /// AlterUserScramCredentials v0: upserts (from a salted password the client computed — the
    /// password never reaches the broker) and deletions, with Kafka's checks: known mechanism
    /// (UNSUPPORTED_SASL_MECHANISM), iterations within 4096...16384 and a non-empty user and salt
    /// (UNACCEPTABLE_CREDENTIAL), a deletion of nothing (RESOURCE_NOT_FOUND), one user and
    /// mechanism altered twice in a request (DUPLICATE_RESOURCE). The whole credential set is
    /// written by the disk worker; the answer and the new credentials' use come after it.
    static let alterUserScramCredentials = HandlerEntry(api: .alterUserScramCredentials, versions: 0...0, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try AlterUserScramCredentialsRequest.decode(from: &r, version: context.apiVersion)
        var errors: [String: (ErrorCode, String)] = [:]
        var users: [String] = []
        func fail(_ user: String, _ code: ErrorCode, _ message: String) { if errors[user] == nil { errors[user] = (code, message) } }
        let denied = broker.denyCluster(.alter, context)
        var altered: [String: Int] = [:]
        for key in request.deletions.map({ "\($0.name)\u{0}\($0.mechanism)" }) + request.upsertions.map({ "\($0.name)\u{0}\($0.mechanism)" }) {
            altered[key, default: 0] += 1
        }
        var credentials = broker.credentialsInEffect
        for deletion in request.deletions {
            if !users.contains(deletion.name) { users.append(deletion.name) }
            if let denied { fail(deletion.name, denied, "altering credentials needs ALTER on the cluster"); continue }
            guard let mechanism = ScramMechanism(rawValue: deletion.mechanism) else {
                fail(deletion.name, .unsupportedSaslMechanism, "unknown SCRAM mechanism \(deletion.mechanism)"); continue
            }
            if deletion.name.isEmpty { fail(deletion.name, .unacceptableCredential, "the user name is empty"); continue }
            if altered["\(deletion.name)\u{0}\(deletion.mechanism)"]! > 1 { fail(deletion.name, .duplicateResource, "\(mechanism.name) of \(deletion.name) altered twice"); continue }
            if credentials[deletion.name]?[mechanism] == nil { fail(deletion.name, .resourceNotFound, "no \(mechanism.name) credential for \(deletion.name)"); continue }
        }
        for upsertion in request.upsertions {
            if !users.contains(upsertion.name) { users.append(upsertion.name) }
            if let denied { fail(upsertion.name, denied, "altering credentials needs ALTER on the cluster"); continue }
            guard let mechanism = ScramMechanism(rawValue: upsertion.mechanism) else {
                fail(upsertion.name, .unsupportedSaslMechanism, "unknown SCRAM mechanism \(upsertion.mechanism)"); continue
            }
            if upsertion.name.isEmpty { fail(upsertion.name, .unacceptableCredential, "the user name is empty"); continue }
            if upsertion.iterations < ScramMechanism.iterations.lowerBound { fail(upsertion.name, .unacceptableCredential, "too few iterations (at least 4096)"); continue }
            if upsertion.iterations > ScramMechanism.iterations.upperBound { fail(upsertion.name, .unacceptableCredential, "too many iterations (at most 16384)"); continue }
            if upsertion.salt.isEmpty || upsertion.saltedPassword.count != mechanism.byteCount {
                fail(upsertion.name, .unacceptableCredential, "a salt and a \(mechanism.byteCount)-byte salted password are required"); continue
            }
            if altered["\(upsertion.name)\u{0}\(upsertion.mechanism)"]! > 1 { fail(upsertion.name, .duplicateResource, "\(mechanism.name) of \(upsertion.name) altered twice"); continue }
        }
        // A user with any failure is left as it was (Kafka answers and applies per user).
        for deletion in request.deletions where errors[deletion.name] == nil {
            credentials[deletion.name]?[ScramMechanism(rawValue: deletion.mechanism)!] = nil
            if credentials[deletion.name]?.isEmpty == true { credentials[deletion.name] = nil }
        }
        for u in request.upsertions where errors[u.name] == nil {
            let mechanism = ScramMechanism(rawValue: u.mechanism)!
            credentials[u.name, default: [:]][mechanism] = ScramCredential(mechanism: mechanism, salt: u.salt, saltedPassword: u.saltedPassword, iterations: u.iterations)
        }
        func answer(_ storageError: String?) -> ResponseFrame {
            broker.frame(AlterUserScramCredentialsResponse(results: users.map { user in
                if let (code, message) = errors[user] { return .init(user: user, errorCode: code.rawValue, errorMessage: message) }
                if let storageError { return .init(user: user, errorCode: ErrorCode.kafkaStorageError.rawValue, errorMessage: storageError) }
                return .init(user: user, errorCode: 0, errorMessage: nil)
            }), context)
        }
        guard users.contains(where: { errors[$0] == nil }) else { return .respond(answer(nil)) }
        broker.pendingCredentials = credentials
        broker.storeSecurityFile(SecurityStore.credentialsFile, SecurityStore.encodeCredentials(credentials)) { broker, failure in
            if broker.pendingCredentials == credentials { broker.pendingCredentials = nil }  // else a later change is being written
            if let failure {
                broker.logger.error("could not store SCRAM credentials", metadata: ["error": "\(failure)"])
            } else {
                broker.mesh.security.publish(credentials)
                broker.logger.info("SCRAM credentials altered", metadata: ["users": "\(users.filter { errors[$0] == nil }.joined(separator: ","))"])
            }
            broker.answerLater(answer(failure), context)
        }
        return .pending
    }
}

extension Broker {
    /// The credentials as the latest alteration left them (shard 0: an alteration still being
    /// written counts, so that two in a row both apply), else as stored.
    var credentialsInEffect: SecurityStore.Credentials { pendingCredentials ?? mesh.security.credentials }
}
