import KafkaWire

/// A struct inside a Kafka message: decodes and encodes itself for a given version.
public protocol KafkaStruct: Hashable, Sendable {
    init()
    /// Decodes from `r`. Fields absent in `version` keep the spec's defaults.
    init(from r: inout WireReader, version: Int16) throws(WireError)
    /// Encodes the fields present in `version`; tagged fields only when set.
    func encode(into w: inout WireWriter, version: Int16)
}

/// A top-level message generated from a spec: a request, a response or a header.
public protocol KafkaMessage: KafkaStruct {
    static var messageName: StaticString { get }
    static var validVersions: ClosedRange<Int16> { get }
    /// The first version using flexible encoding (compact lengths, tagged fields), if any.
    static var firstFlexibleVersion: Int16? { get }
}

/// A request or response body of a Kafka API.
public protocol KafkaAPIMessage: KafkaMessage {
    static var apiKey: Int16 { get }
}

public protocol KafkaRequest: KafkaAPIMessage {
    associatedtype Response: KafkaResponse
}

public protocol KafkaResponse: KafkaAPIMessage {
    /// Calls `body` with every error code the response carries, nested ones included
    /// (generated; the broker counts them per API for its metrics, as Kafka's errorCounts).
    func forEachErrorCode(_ body: (Int16) -> Void)
}

extension KafkaMessage {
    public static func isFlexible(_ version: Int16) -> Bool {
        firstFlexibleVersion.map { version >= $0 } ?? false
    }

    /// Decodes a whole message body, checking the version first.
    public static func decode(_ bytes: UnsafeRawBufferPointer, version: Int16) throws(WireError) -> Self {
        var r = WireReader(bytes)
        return try decode(from: &r, version: version)
    }

    /// Decodes from `r`, naming this message and version in any error.
    public static func decode(from r: inout WireReader, version: Int16) throws(WireError) -> Self {
        r.message = messageName
        r.version = version
        r.field = "(version)"
        guard validVersions.contains(version) else { throw r.error(.unsupportedVersion) }
        return try Self(from: &r, version: version)
    }

    public static func decode(_ bytes: [UInt8], version: Int16) throws(WireError) -> Self {
        try bytes.withRawBytes { (raw) throws(WireError) in try decode(raw, version: version) }
    }

    /// The encoded body for `version`.
    public func encoded(version: Int16) -> [UInt8] {
        var w = WireWriter()
        encode(into: &w, version: version)
        return w.bytes
    }
}

extension KafkaRequest {
    /// The request header version a client uses with `version` of this API (2 when flexible).
    public static func requestHeaderVersion(_ version: Int16) -> Int16 {
        isFlexible(version) ? 2 : 1
    }

    /// The response header version for `version`: 1 when flexible, except ApiVersions, whose
    /// response header is always v0 so that a client can read it before versions are agreed.
    public static func responseHeaderVersion(_ version: Int16) -> Int16 {
        apiKey == ApiVersionsRequest.apiKey ? 0 : (isFlexible(version) ? 1 : 0)
    }
}
