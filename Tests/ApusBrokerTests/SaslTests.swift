@testable import ApusBroker
import ApusTestSupport
import Foundation
import KafkaProtocol
import Testing

/// SASL in the broker, without sockets: SCRAM against RFC 7677's test vector, whole exchanges
/// through the handlers with a SCRAM client written here, failures, expiry, and credentials
/// that survive a restart.
@Suite struct SaslTests {
    /// RFC 7677 §3: user "user", password "pencil".
    @Test func scramSha256MatchesRfc7677() throws {
        let salt = try #require(base64Decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
        let credential = ScramCredential(mechanism: .sha256, salt: salt, saltedPassword: ScramMechanism.sha256.saltedPassword("pencil", salt: salt, iterations: 4096),
                                         iterations: 4096)
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        let exchange = ScramServerExchange(mechanism: .sha256, user: "user", credential: credential, clientFirstBare: "n=user,r=rOprNGfwEbeRWgbNEkqO",
                                           serverFirst: "r=\(nonce),s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", nonce: nonce, gs2Header: "n,,")
        let final = exchange.finish(Array("c=biws,r=\(nonce),p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".utf8))
        #expect(try final.get() == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        // One bit off in the proof fails.
        let wrong = exchange.finish(Array("c=biws,r=\(nonce),p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=".utf8))
        #expect((try? wrong.get()) == nil)
        #expect(credential.matches(password: "pencil", mechanism: .sha256))
        #expect(!credential.matches(password: "pencil!", mechanism: .sha256))
    }

    @Test func base64RoundTripsAndRejectsGarbage() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(base64Decode(base64Encode(bytes)) == bytes)
        }
        #expect(base64Encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(base64Decode("Zm9vYg==") == Array("foob".utf8))
        for bad in ["Zm9", "Zm9vY!==", "====", "Z==="] { #expect(base64Decode(bad) == nil, "\(bad)") }
    }

    /// A SCRAM client, as RFC 5802 has it (the broker's test counterpart).
    struct ScramClient {
        let mechanism: ScramMechanism
        let user: String
        let password: String
        let nonce = base64Encode(secureRandomBytes(18))
        /// Sends the client nonce twice in client-final, as librdkafka 2.0.2 does.
        var doubledNonce = false
        var clientFirstBare: String { "n=\(user),r=\(nonce)" }
        var clientFirst: [UInt8] { Array("n,,\(clientFirstBare)".utf8) }

        /// client-final for `serverFirst`, and the server signature to expect.
        func final(_ serverFirst: String) throws -> (message: [UInt8], serverSignature: String) {
            var fields: [String: String] = [:]
            for part in serverFirst.split(separator: ",") { fields[String(part.prefix(1))] = String(part.dropFirst(2)) }
            let saltText = try #require(fields["s"])
            let salt = try #require(base64Decode(saltText))
            let iterationsText = try #require(fields["i"])
            let iterations = try #require(Int32(iterationsText))
            let combined = try #require(fields["r"])
            #expect(combined.hasPrefix(nonce))
            let salted = mechanism.saltedPassword(password, salt: salt, iterations: iterations)
            let clientKey = mechanism.hmac(key: salted, Array("Client Key".utf8))
            let storedKey = mechanism.hash(clientKey)
            let withoutProof = "c=biws,r=\(doubledNonce ? nonce + combined : combined)"
            let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
            let proof = zip(clientKey, mechanism.hmac(key: storedKey, authMessage)).map { $0 ^ $1 }
            let serverKey = mechanism.hmac(key: salted, Array("Server Key".utf8))
            return (Array("\(withoutProof),p=\(base64Encode(proof))".utf8), "v=" + base64Encode(mechanism.hmac(key: serverKey, authMessage)))
        }
    }

    func setPassword(_ h: BrokerHarness, _ user: String, _ password: String, _ mechanism: ScramMechanism) throws {
        let salt = secureRandomBytes(16)
        let response = try #require(try h.call(AlterUserScramCredentialsRequest(upsertions: [
            .init(name: user, mechanism: mechanism.rawValue, iterations: 4096, salt: salt,
                  saltedPassword: mechanism.saltedPassword(password, salt: salt, iterations: 4096)),
        ]), version: 0))
        #expect(response.results.map(\.errorCode) == [0])
    }

    /// Handshake and both SCRAM round trips; returns the last SaslAuthenticate answer.
    func authenticate(_ h: BrokerHarness, _ session: ClientSession, _ client: ScramClient, nowMs: Int64 = 1_700_000_000_000) throws -> SaslAuthenticateResponse {
        let handshake = try #require(try h.call(SaslHandshakeRequest(mechanism: client.mechanism.name), version: 1, nowMs: nowMs, session: session))
        #expect(handshake.errorCode == 0)
        let first = try #require(try h.call(SaslAuthenticateRequest(authBytes: client.clientFirst), version: 2, nowMs: nowMs, session: session))
        guard first.errorCode == 0 else { return first }
        let (message, signature) = try client.final(String(decoding: first.authBytes, as: UTF8.self))
        let final = try #require(try h.call(SaslAuthenticateRequest(authBytes: message), version: 2, nowMs: nowMs, session: session))
        if final.errorCode == 0 { #expect(String(decoding: final.authBytes, as: UTF8.self) == signature) }
        return final
    }

    @Test(arguments: [ScramMechanism.sha256, .sha512])
    func scramExchangeAuthenticatesAndGatesRequests(_ mechanism: ScramMechanism) throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        try setPassword(h, "alice", "alice-pw", mechanism)
        let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext, host: "127.0.0.1")
        // Before authenticating: ApiVersions is served, Metadata closes the connection.
        #expect(try h.call(ApiVersionsRequest(), version: 3, session: session)?.errorCode == 0)
        #expect(throws: HarnessError.self) { try h.call(MetadataRequest(topics: []), version: 9, session: session) }
        let response = try authenticate(h, session, ScramClient(mechanism: mechanism, user: "alice", password: "alice-pw"))
        #expect(response.errorCode == 0)
        var old = ScramClient(mechanism: mechanism, user: "alice", password: "alice-pw")
        old.doubledNonce = true
        #expect(try authenticate(h, ClientSession(listener: 0, securityProtocol: .saslPlaintext), old).errorCode == 0)
        #expect(session.principal == "User:alice" && session.authenticated)
        #expect(try h.call(MetadataRequest(topics: []), version: 9, session: session)?.brokers.count == 1)
    }

    @Test func wrongPasswordUnknownUserAndBadMessagesFailThenClose() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        try setPassword(h, "bob", "bob-pw", .sha512)
        for client in [ScramClient(mechanism: .sha512, user: "bob", password: "not-bob-pw"), ScramClient(mechanism: .sha512, user: "nobody", password: "x"),
                       ScramClient(mechanism: .sha256, user: "bob", password: "bob-pw")] {
            let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
            let response = try authenticate(h, session, client)
            #expect(response.errorCode == ErrorCode.saslAuthenticationFailed.rawValue)
            #expect(response.errorMessage?.contains("pw") == false)  // no secret in the message
            #expect(throws: HarnessError.self) { try h.call(ApiVersionsRequest(), version: 3, session: session) }
        }
        // Unknown mechanism, and SaslAuthenticate without a handshake.
        let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        #expect(try h.call(SaslHandshakeRequest(mechanism: "GSSAPI"), version: 1, session: session)?.errorCode == ErrorCode.unsupportedSaslMechanism.rawValue)
        #expect(try h.call(SaslAuthenticateRequest(authBytes: [1, 2]), version: 1, session: session)?.errorCode == ErrorCode.illegalSaslState.rawValue)
        // A plaintext listener has no SASL.
        #expect(try h.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)?.errorCode == ErrorCode.illegalSaslState.rawValue)
    }

    /// SaslHandshake v0: the exchange's messages travel as raw tokens, framed by size alone.
    @Test func handshakeV0TakesRawTokens() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        try setPassword(h, "olga", "olga-pw", .sha512)
        func raw(_ token: [UInt8], _ session: ClientSession) throws -> HandleOutcome {
            token.withUnsafeBytes { h.broker.handle(frame: $0, connection: 1, sequence: 99, nowMs: 1_700_000_000_000, session: session) }
        }
        func body(_ outcome: HandleOutcome) throws -> String {
            guard case .respond(let frame) = outcome else { throw HarnessError("expected a token, got \(outcome)") }
            let bytes = try BrokerHarness.bytes(of: frame)
            #expect(Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - 4)
            return String(decoding: bytes.dropFirst(4), as: UTF8.self)
        }
        let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        #expect(try h.call(SaslHandshakeRequest(mechanism: "SCRAM-SHA-512"), version: 0, session: session)?.errorCode == 0)
        let client = ScramClient(mechanism: .sha512, user: "olga", password: "olga-pw")
        let (final, signature) = try client.final(try body(try raw(client.clientFirst, session)))
        #expect(try body(try raw(final, session)) == signature)
        #expect(session.authenticated && session.principal == "User:olga")
        #expect(try h.call(MetadataRequest(topics: []), version: 9, session: session) != nil)  // Kafka framing again
        // A wrong password with v0: the connection is closed (v0 cannot carry an error).
        let other = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        #expect(try h.call(SaslHandshakeRequest(mechanism: "SCRAM-SHA-512"), version: 0, session: other)?.errorCode == 0)
        let wrong = ScramClient(mechanism: .sha512, user: "olga", password: "nope")
        let (badFinal, _) = try wrong.final(try body(try raw(wrong.clientFirst, other)))
        guard case .close = try raw(badFinal, other) else { Issue.record("a failed v0 exchange must close"); return }
    }

    @Test func plainIsCheckedOffTheShardAgainstTheScramCredential() throws {
        let h = try BrokerHarness()
        defer { h.remove() }
        try setPassword(h, "carol", "carol-pw", .sha256)
        for (password, expected) in [("carol-pw", Int16(0)), ("nope", ErrorCode.saslAuthenticationFailed.rawValue)] {
            let session = ClientSession(listener: 0, securityProtocol: .saslSsl)
            #expect(try h.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1, session: session)?.errorCode == 0)
            let response = try h.call(SaslAuthenticateRequest(authBytes: Array("\u{0}carol\u{0}\(password)".utf8)), version: 2, session: session)
            #expect(response?.errorCode == expected)
            #expect(session.authenticated == (expected == 0))
        }
    }

    @Test func sessionsExpireAndReauthenticateAsTheSamePrincipal() throws {
        var config = BrokerConfig()
        config.reauthenticationMs = 60_000
        let h = try BrokerHarness(config: config)
        defer { h.remove() }
        try setPassword(h, "dave", "dave-pw", .sha512)
        try setPassword(h, "erin", "erin-pw", .sha512)
        let start: Int64 = 1_700_000_000_000
        let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        let first = try authenticate(h, session, ScramClient(mechanism: .sha512, user: "dave", password: "dave-pw"), nowMs: start)
        #expect(first.sessionLifetimeMs == 60_000)
        #expect(try h.call(MetadataRequest(topics: []), version: 9, nowMs: start + 59_000, session: session) != nil)
        // Re-authentication before anything else, after expiry: allowed, as the same principal.
        #expect(try authenticate(h, session, ScramClient(mechanism: .sha512, user: "dave", password: "dave-pw"), nowMs: start + 61_000).errorCode == 0)
        #expect(try h.call(MetadataRequest(topics: []), version: 9, nowMs: start + 62_000, session: session) != nil)
        // Expired without re-authenticating: the next request closes the connection.
        #expect(throws: HarnessError.self) { try h.call(MetadataRequest(topics: []), version: 9, nowMs: start + 200_000, session: session) }
        // Another user on the same connection: refused.
        let other = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        #expect(try authenticate(h, other, ScramClient(mechanism: .sha512, user: "dave", password: "dave-pw")).errorCode == 0)
        #expect(try authenticate(h, other, ScramClient(mechanism: .sha512, user: "erin", password: "erin-pw")).errorCode == ErrorCode.saslAuthenticationFailed.rawValue)
    }

    @Test func credentialsAreDurableAndDescribedWithoutSecrets() throws {
        let path = NSTemporaryDirectory() + "apus-sasl-\(UUID().uuidString.prefix(8))"
        do {
            let h = try BrokerHarness(path: path)
            try setPassword(h, "frank", "frank-pw", .sha256)
            try setPassword(h, "frank", "frank-pw", .sha512)
            // Kafka's checks: too few iterations, a duplicate, deleting nothing.
            let bad = try #require(try h.call(AlterUserScramCredentialsRequest(
                deletions: [.init(name: "ghost", mechanism: 1)],
                upsertions: [.init(name: "gina", mechanism: 1, iterations: 100, salt: [1], saltedPassword: [UInt8](repeating: 0, count: 32)),
                             .init(name: "hank", mechanism: 3, iterations: 4096, salt: [1], saltedPassword: [])]), version: 0))
            #expect(bad.results.map(\.errorCode) == [ErrorCode.resourceNotFound.rawValue, ErrorCode.unacceptableCredential.rawValue, ErrorCode.unsupportedSaslMechanism.rawValue])
            try h.shutdown()
        }
        let h = try BrokerHarness(path: path)
        defer { h.remove() }
        let described = try #require(try h.call(DescribeUserScramCredentialsRequest(users: nil), version: 0))
        #expect(described.results.map(\.user) == ["frank"])
        #expect(described.results[0].credentialInfos.map(\.mechanism) == [1, 2])
        let session = ClientSession(listener: 0, securityProtocol: .saslPlaintext)
        #expect(try authenticate(h, session, ScramClient(mechanism: .sha512, user: "frank", password: "frank-pw")).errorCode == 0)
        let file = try String(contentsOfFile: path + "/.security/scram-credentials", encoding: .utf8)
        #expect(!file.contains("frank-pw"))
        let unknown = try #require(try h.call(DescribeUserScramCredentialsRequest(users: [.init(name: "zed"), .init(name: "frank"), .init(name: "frank")]), version: 0))
        #expect(unknown.results.map(\.errorCode) == [ErrorCode.resourceNotFound.rawValue, ErrorCode.duplicateResource.rawValue])
    }

    /// Hostile SCRAM and PLAIN messages never trap and never authenticate.
    @Test func fuzzedSaslMessagesFailCleanly() throws {
        var rng = SystemRandomNumberGenerator()
        let credential = ScramCredential(mechanism: .sha256, salt: [1, 2, 3], saltedPassword: [UInt8](repeating: 7, count: 32), iterations: 4096)
        let seeds = ["n,,n=user,r=abc", "y,,n=user,r=abc", "n,a=user,n=user,r=abc", "c=biws,r=abc,p=AAAA", "n,,n=u=2Cser,r=a"]
        for i in 0..<3_000 {
            var bytes = Array(seeds[i % seeds.count].utf8)
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let at = Int.random(in: 0...bytes.count, using: &rng)
                switch Int.random(in: 0...2, using: &rng) {
                case 0: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                case 1: if at < bytes.count { bytes.remove(at: at) }
                default: if at < bytes.count { bytes[at] = UInt8.random(in: 0...255, using: &rng) }
                }
            }
            if case .success(let (exchange, _)) = ScramServerExchange.start(bytes, mechanism: .sha256, lookup: { _ in credential }) {
                #expect((try? exchange.finish(bytes).get()) == nil)
            }
            _ = parsePlain(bytes)
        }
    }
}
