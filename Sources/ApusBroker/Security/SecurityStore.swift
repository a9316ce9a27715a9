import ApusStorage
import Logging
import Synchronization

/// SCRAM credentials and ACLs, shared by every shard: read by any shard when a client
/// authenticates or a request is authorized, changed only by shard 0 (the Alter* APIs) after the
/// disk worker has made the change durable. Readers take the lock only when the version moved.
public final class SecurityStore: @unchecked Sendable {
    public typealias Credentials = [String: [ScramMechanism: ScramCredential]]

    private let state = Mutex<Credentials>([:])
    private let aclState = Mutex<Authorizer>(Authorizer())
    /// Moves at every change (shards compare it with the copy they hold).
    public let version = Atomic<UInt64>(0)

    static let credentialsFile = "scram-credentials"
    static let aclsFile = "acls"

    public init(credentials: Credentials = [:]) {
        state.withLock { $0 = credentials }
    }

    /// The store as the data directory has it (empty when there is no file).
    public static func load(logs: LogManager, logger: Logger) throws(StorageError) -> SecurityStore {
        let store = SecurityStore()
        if let bytes = try logs.securityFile(credentialsFile) {
            let (credentials, bad) = decodeCredentials(bytes)
            if bad > 0 { logger.warning("ignored malformed lines of the SCRAM credentials file", metadata: ["lines": "\(bad)"]) }
            store.state.withLock { $0 = credentials }
            logger.info("SCRAM credentials loaded", metadata: ["users": "\(credentials.count)"])
        }
        if let bytes = try logs.securityFile(aclsFile) {
            let (acls, bad) = Authorizer.decode(bytes)
            if bad > 0 { logger.warning("ignored malformed lines of the ACL file", metadata: ["lines": "\(bad)"]) }
            store.aclState.withLock { $0 = acls }
            logger.info("ACLs loaded", metadata: ["acls": "\(acls.bindings.count)"])
        }
        return store
    }

    public var credentials: Credentials { state.withLock { $0 } }

    /// One user's credentials, by mechanism.
    public func credentials(of user: String) -> [ScramMechanism: ScramCredential]? {
        state.withLock { $0[user] }
    }

    public func credential(user: String, mechanism: ScramMechanism) -> ScramCredential? {
        state.withLock { $0[user]?[mechanism] }
    }

    /// The ACLs in force.
    public var acls: Authorizer { aclState.withLock { $0 } }

    func publish(_ acls: Authorizer) {
        aclState.withLock { $0 = acls }
        version.add(1, ordering: .releasing)
    }

    func publish(_ credentials: Credentials) {
        state.withLock { $0 = credentials }
        version.add(1, ordering: .releasing)
    }

    /// One line per user and mechanism, every field base64 (user names may hold any character):
    /// `SCRAM-SHA-256 <user> <iterations> <salt> <stored key> <server key>`.
    static func encodeCredentials(_ credentials: Credentials) -> [UInt8] {
        var text = ""
        for user in credentials.keys.sorted() {
            for (mechanism, c) in credentials[user]!.sorted(by: { $0.key < $1.key }) {
                text += "\(mechanism.name) \(base64Encode(Array(user.utf8))) \(c.iterations) \(base64Encode(c.salt)) \(base64Encode(c.storedKey)) \(base64Encode(c.serverKey))\n"
            }
        }
        return Array(text.utf8)
    }

    static func decodeCredentials(_ bytes: [UInt8]) -> (Credentials, malformed: Int) {
        var result: Credentials = [:]
        var malformed = 0
        for line in bytes.split(separator: 0x0A) {
            let f = String(decoding: line, as: UTF8.self).split(separator: " ")
            guard f.count == 6, let mechanism = ScramMechanism(name: String(f[0])), let userBytes = base64Decode(f[1]),
                  let user = String(validating: userBytes, as: UTF8.self), let iterations = Int32(f[2]),
                  let salt = base64Decode(f[3]), let stored = base64Decode(f[4]), let server = base64Decode(f[5]),
                  stored.count == mechanism.byteCount, server.count == mechanism.byteCount
            else {
                malformed += 1
                continue
            }
            result[user, default: [:]][mechanism] = ScramCredential(salt: salt, iterations: iterations, storedKey: stored, serverKey: server)
        }
        return (result, malformed)
    }
}

extension Broker {
    /// Writes the security file `name` (the whole set, atomically) on the disk worker, then calls
    /// `done` on this shard with the failure, if any — the Alter* APIs answer only after it.
    func storeSecurityFile(_ name: String, _ bytes: [UInt8], then done: @escaping (Broker, String?) -> Void) {
        let logs = self.logs
        mesh.afterDiskWork(on: index, { () -> String? in
            do {
                try logs.writeSecurityFile(name, bytes)
                return nil
            } catch {
                return "\(error)"
            }
        }, then: done)
    }
}
