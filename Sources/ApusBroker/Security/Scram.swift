import CApusTLS

/// The SASL mechanisms the broker offers (`sasl.enabled.mechanisms`).
public enum SaslMechanism: String, Sendable, CaseIterable {
    case plain = "PLAIN"
    case scramSha256 = "SCRAM-SHA-256"
    case scramSha512 = "SCRAM-SHA-512"

    /// The SCRAM hash this mechanism uses (nil for PLAIN).
    var scram: ScramMechanism? {
        switch self {
        case .plain: nil
        case .scramSha256: .sha256
        case .scramSha512: .sha512
        }
    }
}

/// A SCRAM hash (RFC 5802 / 7677), with Kafka's numbers for it (AlterUserScramCredentials).
public enum ScramMechanism: Int8, Sendable, CaseIterable, Comparable {
    case sha256 = 1
    case sha512 = 2

    public var name: String { self == .sha256 ? "SCRAM-SHA-256" : "SCRAM-SHA-512" }
    public init?(name: String) {
        guard let m = Self.allCases.first(where: { $0.name == name.uppercased() }) else { return nil }
        self = m
    }
    var bits: Int32 { self == .sha256 ? 256 : 512 }
    var byteCount: Int { self == .sha256 ? 32 : 64 }
    /// Kafka's bounds on iterations (fewer is weak, more lets one request cost seconds).
    public static let iterations: ClosedRange<Int32> = 4096...16384

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    func hash(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        _ = data.withUnsafeBytes { d in out.withUnsafeMutableBufferPointer { apus_digest(bits, d.baseAddress, d.count, $0.baseAddress) } }
        return out
    }

    func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        _ = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in out.withUnsafeMutableBufferPointer { apus_hmac(bits, k.baseAddress, k.count, d.baseAddress, d.count, $0.baseAddress) } }
        }
        return out
    }

    /// SaltedPassword = PBKDF2-HMAC(password, salt, iterations) — the client's work (and the
    /// `apus user` command's, and a PLAIN check's).
    public func saltedPassword(_ password: String, salt: [UInt8], iterations: Int32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        let pw = Array(password.utf8)
        _ = pw.withUnsafeBytes { p in
            salt.withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { apus_pbkdf2(bits, p.baseAddress, p.count, s.baseAddress, s.count, iterations, $0.baseAddress) } }
        }
        return out
    }
}

/// What the broker stores of a user's password for one mechanism: never the password, only
/// what RFC 5802 needs to check a proof and prove itself.
public struct ScramCredential: Sendable, Equatable {
    public var salt: [UInt8]
    public var iterations: Int32
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public init(salt: [UInt8], iterations: Int32, storedKey: [UInt8], serverKey: [UInt8]) {
        self.salt = salt
        self.iterations = iterations
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// The credential from a salted password (AlterUserScramCredentials sends that, not the password).
    public init(mechanism: ScramMechanism, salt: [UInt8], saltedPassword: [UInt8], iterations: Int32) {
        let clientKey = mechanism.hmac(key: saltedPassword, Array("Client Key".utf8))
        self.init(salt: salt, iterations: iterations, storedKey: mechanism.hash(clientKey),
                  serverKey: mechanism.hmac(key: saltedPassword, Array("Server Key".utf8)))
    }

    /// Whether `password` is the one this credential was made from (PLAIN). Costs a PBKDF2:
    /// run it off the shard threads.
    public func matches(password: String, mechanism: ScramMechanism) -> Bool {
        let check = ScramCredential(mechanism: mechanism, salt: salt, saltedPassword: mechanism.saltedPassword(password, salt: salt, iterations: iterations),
                                    iterations: iterations)
        return constantTimeEqual(check.storedKey, storedKey)
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in apus_equal(x.baseAddress, y.baseAddress, x.count) == 1 } }
}

/// Random bytes from OpenSSL's generator (salts, nonces).
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    let ok = out.withUnsafeMutableBufferPointer { apus_random_bytes($0.baseAddress, count) } == 0
    if !ok { for i in out.indices { out[i] = UInt8.random(in: 0...255) } }  // SystemRandomNumberGenerator
    return out
}

/// The server side of one SCRAM exchange (RFC 5802): client-first → server-first,
/// client-final → server-final. Every message is checked strictly; anything unexpected fails
/// the exchange with a message that never contains a secret.
struct ScramServerExchange {
    let mechanism: ScramMechanism
    let user: String
    let credential: ScramCredential
    let clientFirstBare: String
    let serverFirst: String
    let nonce: String
    let gs2Header: String

    /// Longest client nonce accepted (a hostile client's nonce is echoed in our reply).
    static let maxNonceBytes = 512
    static let maxMessageBytes = 4096

    /// Parses client-first (`n,,n=user,r=nonce`) and answers server-first with the user's
    /// credential (`lookup`). Unknown users fail like wrong passwords do.
    static func start(_ message: [UInt8], mechanism: ScramMechanism, lookup: (String) -> ScramCredential?) -> Result<(ScramServerExchange, String), SaslFailure> {
        guard message.count <= maxMessageBytes, let text = String(validating: message, as: UTF8.self) else { return .failure(.malformed("client-first message")) }
        // gs2-header: channel binding flag ("n" or "y"; "p=" asks for binding, which Kafka has not),
        // optional authzid, then the bare message.
        let parts = text.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "n" || parts[0] == "y" else { return .failure(.malformed("client-first: channel binding is not supported")) }
        guard parts[1].isEmpty || parts[1].hasPrefix("a=") else { return .failure(.malformed("client-first: bad authorization id")) }
        let bare = String(parts[2])
        let attributes = bare.split(separator: ",", omittingEmptySubsequences: false)
        guard attributes.count >= 2, attributes[0].hasPrefix("n="), attributes[1].hasPrefix("r=") else {
            return .failure(.malformed("client-first: expected n=user,r=nonce"))
        }
        // Extensions (Kafka's tokenauth=true for delegation tokens): not supported.
        if attributes.dropFirst(2).contains(where: { $0.hasPrefix("tokenauth=") }) { return .failure(.rejected("delegation tokens are not supported")) }
        guard let user = unescapeSaslName(attributes[0].dropFirst(2)), !user.isEmpty else { return .failure(.malformed("client-first: bad user name")) }
        if !parts[1].isEmpty, unescapeSaslName(parts[1].dropFirst(2)) != user {
            return .failure(.rejected("the authorization id must be the authenticated user"))
        }
        let clientNonce = attributes[1].dropFirst(2)
        guard !clientNonce.isEmpty, clientNonce.utf8.count <= maxNonceBytes, clientNonce.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2C }) else {
            return .failure(.malformed("client-first: bad nonce"))
        }
        guard let credential = lookup(user) else { return .failure(.rejected("authentication failed: invalid credentials")) }
        let nonce = String(clientNonce) + base64Encode(secureRandomBytes(24))
        let serverFirst = "r=\(nonce),s=\(base64Encode(credential.salt)),i=\(credential.iterations)"
        let exchange = ScramServerExchange(mechanism: mechanism, user: user, credential: credential, clientFirstBare: bare,
                                           serverFirst: serverFirst, nonce: nonce, gs2Header: String(parts[0]) + "," + String(parts[1]) + ",")
        return .success((exchange, serverFirst))
    }

    /// Checks client-final (`c=biws,r=nonce,p=proof`) and answers server-final (`v=signature`).
    func finish(_ message: [UInt8]) -> Result<String, SaslFailure> {
        guard message.count <= Self.maxMessageBytes, String(validating: message, as: UTF8.self) != nil else { return .failure(.malformed("client-final message")) }
        guard let proofAt = lastIndex(of: Array(",p=".utf8), in: message) else { return .failure(.malformed("client-final: no proof")) }
        let withoutProof = String(decoding: message[..<proofAt], as: UTF8.self)
        let attributes = withoutProof.split(separator: ",", omittingEmptySubsequences: false)
        guard attributes.count >= 2, attributes[0].hasPrefix("c="), attributes[1].hasPrefix("r=") else {
            return .failure(.malformed("client-final: expected c=…,r=…,p=…"))
        }
        guard base64Decode(attributes[0].dropFirst(2)) == Array(gs2Header.utf8) else { return .failure(.rejected("channel binding does not match")) }
        // Kafka accepts a final nonce that ends with the server's (librdkafka 2.0.2, Debian 12's,
        // sends the client nonce twice); the proof covers the message as sent either way.
        guard attributes[1].dropFirst(2).hasSuffix(nonce) else { return .failure(.rejected("nonce does not match")) }
        guard let proof = base64Decode(String(decoding: message[(proofAt + 3)...], as: UTF8.self)), proof.count == mechanism.byteCount else {
            return .failure(.malformed("client-final: bad proof"))
        }
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let clientSignature = mechanism.hmac(key: credential.storedKey, authMessage)
        let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
        guard constantTimeEqual(mechanism.hash(clientKey), credential.storedKey) else {
            return .failure(.rejected("authentication failed: invalid credentials"))
        }
        return .success("v=" + base64Encode(mechanism.hmac(key: credential.serverKey, authMessage)))
    }
}

/// Why a SASL exchange failed: the message goes to the client (SaslAuthenticate's
/// errorMessage) and the log; it never holds a secret.
enum SaslFailure: Error {
    case malformed(String)
    case rejected(String)

    var message: String {
        switch self {
        case .malformed(let m): "malformed SASL message: \(m)"
        case .rejected(let m): m
        }
    }
}

/// Where the last occurrence of `needle` starts in `haystack`.
func lastIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for i in stride(from: haystack.count - needle.count, through: 0, by: -1) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
        return i
    }
    return nil
}

/// A SCRAM `saslname`: `=2C` is ",", `=3D` is "="; any other "=" is malformed.
func unescapeSaslName<S: StringProtocol>(_ name: S) -> String? {
    var out = ""
    var i = name.startIndex
    while i < name.endIndex {
        let c = name[i]
        if c == "=" {
            let code = name[name.index(after: i)...].prefix(2)
            guard code == "2C" || code == "3D" else { return nil }
            out.append(code == "2C" ? "," : "=")
            i = name.index(i, offsetBy: 3)
        } else {
            out.append(c)
            i = name.index(after: i)
        }
    }
    return out
}

/// PLAIN's message (RFC 4616): `authzid NUL authcid NUL password`.
func parsePlain(_ message: [UInt8]) -> Result<(user: String, password: String), SaslFailure> {
    let parts = message.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
    guard message.count <= 4096, parts.count == 3, let authzid = String(validating: parts[0], as: UTF8.self),
          let user = String(validating: parts[1], as: UTF8.self), let password = String(validating: parts[2], as: UTF8.self),
          !user.isEmpty
    else { return .failure(.malformed("PLAIN: expected authzid NUL user NUL password")) }
    guard authzid.isEmpty || authzid == user else { return .failure(.rejected("the authorization id must be the authenticated user")) }
    return .success((user, password))
}

// MARK: Base64 (RFC 4648, with padding): SCRAM's salts, nonces and proofs, the credential file.

private let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

public func base64Encode(_ bytes: [UInt8]) -> String {
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i < bytes.count {
        let n = min(3, bytes.count - i)
        let b0 = bytes[i], b1 = n > 1 ? bytes[i + 1] : 0, b2 = n > 2 ? bytes[i + 2] : 0
        out.append(base64Alphabet[Int(b0 >> 2)])
        out.append(base64Alphabet[Int((b0 & 3) << 4 | b1 >> 4)])
        out.append(n > 1 ? base64Alphabet[Int((b1 & 15) << 2 | b2 >> 6)] : 0x3D)
        out.append(n > 2 ? base64Alphabet[Int(b2 & 63)] : 0x3D)
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}

public func base64Decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 4 == 0 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(chars.count / 4 * 3)
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x41...0x5A: c - 0x41
        case 0x61...0x7A: c - 0x61 + 26
        case 0x30...0x39: c - 0x30 + 52
        case 0x2B: 62
        case 0x2F: 63
        default: nil
        }
    }
    var i = 0
    while i < chars.count {
        let last = i + 4 == chars.count
        let pad = last ? (chars[i + 3] == 0x3D ? (chars[i + 2] == 0x3D ? 2 : 1) : 0) : 0
        guard let a = value(chars[i]), let b = value(chars[i + 1]) else { return nil }
        let c = pad >= 2 ? 0 : value(chars[i + 2]), d = pad >= 1 ? 0 : value(chars[i + 3])
        guard let c, let d else { return nil }
        out.append(a << 2 | b >> 4)
        if pad < 2 { out.append((b & 15) << 4 | c >> 2) }
        if pad < 1 { out.append((c & 3) << 6 | d) }
        i += 4
    }
    return out
}
