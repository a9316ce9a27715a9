import ApusStorage
import KafkaProtocol
import KafkaWire

/// An encoded response frame: bytes, and file ranges sent zero-copy between them
/// (a Fetch's record data). The 4-byte size prefix is included in the first part.
public struct ResponseFrame {
    public enum Part {
        case bytes([UInt8])
        case file(FileRange)
    }

    public var parts: [Part]

    public var byteCount: Int {
        parts.reduce(0) { total, part in
            switch part {
            case .bytes(let b): total + b.count
            case .file(let f): total + f.length
            }
        }
    }

    /// A frame holding one encoded header + body; the size prefix is added here.
    public init(body: [UInt8]) {
        var framed = [UInt8]()
        framed.reserveCapacity(body.count + 4)
        withUnsafeBytes(of: Int32(body.count).bigEndian) { framed.append(contentsOf: $0) }
        framed += body
        parts = [.bytes(framed)]
    }

    /// A response frame: size prefix, response header (v0, or v1 with tagged fields), then the
    /// body `encodeBody` writes. Every non-Fetch response is built through here.
    init(correlationId: Int32, headerVersion: Int16, _ encodeBody: (inout WireWriter) -> Void) {
        var w = WireWriter(capacity: 128)
        ResponseHeader(correlationId: correlationId).encode(into: &w, version: headerVersion)
        encodeBody(&w)
        self.init(body: w.bytes)
    }

    /// Parts whose size prefix the caller already wrote.
    public init(parts: [Part]) {
        self.parts = parts
    }
}

/// The header fields every request starts with, read without knowing the API.
public struct RequestPreamble: Sendable {
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32

    /// Reads key, version and correlation id (the first 8 bytes of every request header).
    public init?(_ frame: UnsafeRawBufferPointer) {
        guard frame.count >= 8 else { return nil }
        apiKey = Int16(bigEndian: frame.loadUnaligned(fromByteOffset: 0, as: Int16.self))
        apiVersion = Int16(bigEndian: frame.loadUnaligned(fromByteOffset: 2, as: Int16.self))
        correlationId = Int32(bigEndian: frame.loadUnaligned(fromByteOffset: 4, as: Int32.self))
    }

    /// The client id after the first 8 bytes: a nullable int16-length string in every header
    /// version that has one; "" if absent or malformed.
    public static func clientId(_ frame: UnsafeRawBufferPointer) -> String {
        guard frame.count >= 10 else { return "" }
        let length = Int(Int16(bigEndian: frame.loadUnaligned(fromByteOffset: 8, as: Int16.self)))
        guard length > 0, frame.count >= 10 + length else { return "" }
        return String(decoding: UnsafeRawBufferPointer(rebasing: frame[10..<(10 + length)]), as: UTF8.self)
    }
}
