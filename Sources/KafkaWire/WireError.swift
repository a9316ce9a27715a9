/// A decoding failure, naming the message, version and field being read when it happened.
///
/// Every decoder in KafkaWire and KafkaProtocol reports hostile or truncated input with this
/// type; none of them traps.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// The input ended `needed` bytes before the value did.
        case truncated(needed: Int, remaining: Int)
        /// A length or count that may not be negative (or null) was.
        case negativeLength(Int)
        /// A length or element count larger than the bytes that remain.
        case lengthTooLarge(length: Int, remaining: Int)
        /// A varint longer than its type allows.
        case malformedVarint
        /// The version is outside the message's valid versions.
        case unsupportedVersion
        /// A value that is structurally invalid (e.g. a bad magic byte or CRC).
        case invalid(String)
    }

    public var message: String
    public var version: Int16
    public var field: String
    public var reason: Reason

    public init(message: String, version: Int16, field: String, reason: Reason) {
        self.message = message
        self.version = version
        self.field = field
        self.reason = reason
    }

    public var description: String {
        "\(message) v\(version) field \(field): \(reason)"
    }
}
