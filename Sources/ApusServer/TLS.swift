import ApusConfig
import ApusIO
import CApusTLS
import Synchronization

/// A TLS context that could not be made (a missing or unreadable file, a key that does not match).
public struct TLSError: Error, CustomStringConvertible {
    public var description: String
}

/// The server's TLS context, shared by every shard (OpenSSL's SSL_CTX is safe to make sessions
/// from on several threads). ``reload()`` (SIGHUP) swaps in a context made from the files as they
/// are now: new connections use it, established ones keep theirs.
public final class TLSContext: @unchecked Sendable {
    /// OpenSSL's context (reference-counted by OpenSSL; sessions hold their own reference).
    private struct Handle: @unchecked Sendable { var raw: OpaquePointer }
    private let current: Mutex<Handle>
    let settings: TLSSettings
    /// Ciphertext buffered each way per connection (`BIO_new_bio_pair`): room for four TLS records.
    static let bufferBytes = 64 << 10

    public init(_ settings: TLSSettings) throws(TLSError) {
        self.settings = settings
        current = Mutex(Handle(raw: try Self.make(settings)))
    }

    deinit { current.withLock { apus_tls_ctx_free($0.raw) } }

    private static func make(_ s: TLSSettings) throws(TLSError) -> OpaquePointer {
        guard let keystore = s.keystore else { throw TLSError(description: "ssl.keystore.location is not set") }
        var err = [CChar](repeating: 0, count: 512)
        let tls12 = s.cipherSuites.filter { !$0.hasPrefix("TLS_") }.joined(separator: ":")
        let tls13 = s.cipherSuites.filter { $0.hasPrefix("TLS_") }.joined(separator: ":")
        let clientAuth: Int32 = s.clientAuth == .required ? 2 : s.clientAuth == .requested ? 1 : 0
        let ctx = err.withUnsafeMutableBufferPointer { e in
            apus_tls_server_ctx(keystore, nil, s.keyPassword, s.truststore, clientAuth, s.minProtocol,
                                tls12.isEmpty ? nil : tls12, tls13.isEmpty ? nil : tls13, e.baseAddress, e.count)
        }
        guard let ctx else {
            throw TLSError(description: "\(keystore): \(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        return ctx
    }

    /// Re-reads the certificate, key and CAs (SIGHUP); on failure the old context stays.
    public func reload() throws(TLSError) {
        let fresh = Handle(raw: try Self.make(settings))
        current.withLock { handle in
            apus_tls_ctx_free(handle.raw)
            handle = fresh
        }
    }

    /// A server session for a new connection.
    func session() -> TLSSession? {
        current.withLock { UncheckedPointer(raw: apus_tls_new($0.raw, 1, Self.bufferBytes)) }.raw.map(TLSSession.init)
    }
}

private struct UncheckedPointer: @unchecked Sendable { var raw: OpaquePointer? }

/// One connection's TLS state: OpenSSL's SSL over a BIO pair whose network end the connection
/// reads from and writes to with its own calls (epoll or io_uring alike). Not thread-safe.
final class TLSSession {
    private let raw: OpaquePointer
    var handshakeDone = false

    init(_ raw: OpaquePointer) { self.raw = raw }
    deinit { apus_tls_free(raw) }

    /// Room for ciphertext from the network (contiguous; may be less than the free total).
    func inSpace() -> UnsafeMutableRawBufferPointer {
        var p: UnsafeMutablePointer<UInt8>?
        let n = apus_tls_in_space(raw, &p)
        return UnsafeMutableRawBufferPointer(start: p, count: p == nil ? 0 : n)
    }

    func commit(_ count: Int) { apus_tls_in_commit(raw, count) }

    /// Ciphertext ready for the network (contiguous; more may follow once it is consumed).
    func outData() -> UnsafeRawBufferPointer? {
        var p: UnsafeMutablePointer<UInt8>?
        let n = apus_tls_out_data(raw, &p)
        guard let p, n > 0 else { return nil }
        return UnsafeRawBufferPointer(start: p, count: n)
    }

    func consume(_ count: Int) { apus_tls_out_consume(raw, count) }
    var outPending: Int { apus_tls_out_pending(raw) }

    /// 1 done, 0 more ciphertext needed, -1 failed.
    func handshake() -> Int32 { apus_tls_handshake(raw) }
    /// Plaintext: >0 bytes, 0 more ciphertext needed, -1 failed, -2 the peer closed.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int { apus_tls_read(raw, buffer.baseAddress, buffer.count) }
    /// Plaintext taken (perhaps part), 0 no room now, -1 failed.
    func write(_ buffer: UnsafeRawBufferPointer) -> Int { apus_tls_write(raw, buffer.baseAddress, buffer.count) }

    var error: String {
        var buf = [CChar](repeating: 0, count: 320)
        buf.withUnsafeMutableBufferPointer { apus_tls_error(raw, $0.baseAddress, $0.count) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The client certificate's subject (RFC 2253), if one was presented and verified.
    var peerSubject: String? {
        var buf = [CChar](repeating: 0, count: 1024)
        let found = buf.withUnsafeMutableBufferPointer { apus_tls_peer_subject(raw, $0.baseAddress, $0.count) }
        guard found == 1 else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var negotiated: String { "\(String(cString: apus_tls_protocol(raw))) \(String(cString: apus_tls_cipher(raw)))" }
}

/// Whether the kernel offers TLS offload (kTLS: the `tls` upper-layer protocol), which would let a
/// fetch over TLS stay `sendfile`. Probed at start-up for the log line; this build does not use it.
public func kernelTLSAvailable() -> Bool { Sys.exists("/proc/net/tls_stat") }
