import ApusIO
import Foundation

/// A key and its value as etcd stores it, with the revisions compare-and-swap works on.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    /// The store revision that created the key (0: it does not exist).
    public var createRevision: Int64
    /// The store revision of its last change.
    public var modRevision: Int64
    /// Changes since it was created.
    public var version: Int64
    /// The lease it is attached to (0: none).
    public var lease: Int64
}

/// Why an etcd call failed: the server's answer (an HTTP status and gRPC message) or the network.
public struct EtcdError: Error, CustomStringConvertible {
    public var description: String
}

/// A client of etcd's v3 API through its JSON gateway (HTTP/1.1 POST of JSON bodies to /v3/…),
/// so that nothing beyond a socket is needed: keys and values travel base64, 64-bit numbers as
/// strings. Blocking, one kept-alive connection at a time; on a connection failure the next
/// endpoint is tried. A connect, request or answer that makes no progress for `timeoutMs` is a
/// connection failure too: a member that accepts and never answers (stopped, wedged, a network
/// that drops packets) must not hang the thread calling it — the cluster agent's, which keeps
/// this broker's lease. Not thread-safe: one owner thread (the cluster agent's).
public final class EtcdClient {
    public let endpoints: [(host: String, port: UInt16)]
    private var current = 0
    private var socket: ClientSocket?
    private var buffer: [UInt8] = []
    private let timeoutMs: Int

    /// - Parameters:
    ///   - endpoints: `host:port` of each etcd member's client URL.
    ///   - timeoutMs: how long a connect, a request's write or its answer may make no progress
    ///     (etcdctl's command timeout is 5 s).
    public init(endpoints: [String], timeoutMs: Int = 5_000) throws(EtcdError) {
        self.timeoutMs = timeoutMs
        var parsed: [(String, UInt16)] = []
        for endpoint in endpoints {
            let trimmed = endpoint.hasPrefix("http://") ? String(endpoint.dropFirst(7)) : endpoint
            guard let colon = trimmed.lastIndex(of: ":"), let port = UInt16(trimmed[trimmed.index(after: colon)...]) else {
                throw EtcdError(description: "etcd endpoint '\(endpoint)': expected host:port")
            }
            parsed.append((String(trimmed[..<colon]), port))
        }
        guard !parsed.isEmpty else { throw EtcdError(description: "no etcd endpoint") }
        self.endpoints = parsed
    }

    // MARK: KV

    /// The key's current value, if it exists.
    public func get(_ key: String) throws(EtcdError) -> EtcdKeyValue? {
        try range(["key": b64(key)]).kvs.first
    }

    /// Every key under `prefix` in key order, and the store revision they were read at.
    public func range(prefix: String) throws(EtcdError) -> (kvs: [EtcdKeyValue], revision: Int64) {
        try range(["key": b64(prefix), "range_end": b64(Self.prefixEnd(prefix))])
    }

    private func range(_ body: [String: Any]) throws(EtcdError) -> (kvs: [EtcdKeyValue], revision: Int64) {
        let answer = try call("/v3/kv/range", body)
        let kvs = try (answer["kvs"] as? [[String: Any]] ?? []).map { kv throws(EtcdError) in try Self.keyValue(kv) }
        return (kvs, Self.int(answer["header"].flatMap { ($0 as? [String: Any])?["revision"] }))
    }

    /// Sets a key (attached to `lease` if given); returns the new store revision.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Int64 {
        var body: [String: Any] = ["key": b64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { body["lease"] = String(lease) }
        let answer = try call("/v3/kv/put", body)
        return Self.int((answer["header"] as? [String: Any])?["revision"])
    }

    /// Deletes a key (or, with `prefix`, every key under it); returns how many went.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) throws(EtcdError) -> Int64 {
        var body: [String: Any] = ["key": b64(key)]
        if prefix { body["range_end"] = b64(Self.prefixEnd(key)) }
        return Self.int(try call("/v3/kv/deleterange", body)["deleted"])
    }

    /// Creates `key` only if it does not exist (etcd's create-revision-is-zero transaction).
    /// - Returns: true if this call created it.
    public func create(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Bool {
        try swap(key, ifModRevision: 0, compareField: "CREATE", target: "create_revision", value, lease: lease)
    }

    /// Replaces `key`'s value only if its last change is `modRevision` (compare-and-swap).
    /// - Returns: true if the value was replaced; false if someone changed it first.
    public func compareAndSwap(_ key: String, modRevision: Int64, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Bool {
        try swap(key, ifModRevision: modRevision, compareField: "MOD", target: "mod_revision", value, lease: lease)
    }

    private func swap(_ key: String, ifModRevision revision: Int64, compareField: String, target: String, _ value: [UInt8], lease: Int64) throws(EtcdError) -> Bool {
        var put: [String: Any] = ["key": b64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { put["lease"] = String(lease) }
        let body: [String: Any] = [
            "compare": [["key": b64(key), "result": "EQUAL", "target": compareField, target: String(revision)]],
            "success": [["request_put": put]],
        ]
        return try call("/v3/kv/txn", body)["succeeded"] as? Bool ?? false
    }

    // MARK: Leases

    /// A lease that lives `ttlSeconds` unless kept alive; returns its id.
    public func grantLease(ttlSeconds: Int64) throws(EtcdError) -> Int64 {
        let answer = try call("/v3/lease/grant", ["TTL": String(ttlSeconds)])
        let id = Self.int(answer["ID"])
        guard id != 0 else { throw EtcdError(description: "etcd granted no lease: \(String(describing: answer["error"] ?? answer).prefix(200))") }
        return id
    }

    /// Renews a lease; returns its remaining TTL in seconds (0 or less: it has expired, and the
    /// keys attached to it are gone).
    public func keepAlive(_ lease: Int64) throws(EtcdError) -> Int64 {
        let answer = try call("/v3/lease/keepalive", ["ID": String(lease)])
        let result = answer["result"] as? [String: Any] ?? answer
        return Self.int(result["TTL"])
    }

    /// Ends a lease now, deleting the keys attached to it.
    public func revoke(_ lease: Int64) throws(EtcdError) {
        _ = try call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: HTTP

    /// POSTs `body` as JSON to `path` and returns the decoded JSON object, trying each endpoint
    /// in turn when a connection fails.
    private func call(_ path: String, _ body: [String: Any]) throws(EtcdError) -> [String: Any] {
        let json: Data
        do { json = try JSONSerialization.data(withJSONObject: body) } catch { throw EtcdError(description: "encoding \(path): \(error)") }
        var lastError = EtcdError(description: "no etcd endpoint answered")
        for _ in 0..<(endpoints.count * 2) {
            do {
                let (status, payload) = try exchange(path, Array(json))
                let object = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
                guard (200..<300).contains(status), let object else {
                    let message = (object?["message"] as? String) ?? (object?["error"] as? String) ?? String(decoding: payload.prefix(300), as: UTF8.self)
                    throw EtcdError(description: "etcd \(path): HTTP \(status): \(message)")
                }
                return object
            } catch let error as SystemError {
                // The connection broke (or never was): drop it and try the next endpoint.
                socket = nil
                current = (current + 1) % endpoints.count
                lastError = EtcdError(description: "etcd \(endpoints[current].host):\(endpoints[current].port) \(path): \(error)")
            } catch let error as EtcdError {
                throw error
            } catch {
                throw EtcdError(description: "etcd \(path): \(error)")
            }
        }
        throw lastError
    }

    /// One request and its response on the kept-alive connection (Content-Length or chunked).
    private func exchange(_ path: String, _ body: [UInt8]) throws -> (Int, [UInt8]) {
        let endpoint = endpoints[current]
        if socket == nil {
            socket = try ClientSocket(host: endpoint.host, port: endpoint.port, timeoutMs: timeoutMs)
            buffer.removeAll(keepingCapacity: true)
        }
        let head = "POST \(path) HTTP/1.1\r\nHost: \(endpoint.host):\(endpoint.port)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        var request = Array(head.utf8) + body
        try request.withUnsafeMutableBytes { raw in
            var one = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            try socket!.writeAll(&one, count: 1)
        }
        let headerEnd = try readUntil(Array("\r\n\r\n".utf8))
        let headerText = String(decoding: buffer[..<headerEnd], as: UTF8.self)
        buffer.removeFirst(headerEnd + 4)
        let lines = headerText.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."), let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw EtcdError(description: "etcd answered something that is not HTTP: \(headerText.prefix(80))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var payload: [UInt8] = []
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let lineEnd = try readUntil(Array("\r\n".utf8))
                let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0, size < 256 << 20 else {
                    throw EtcdError(description: "etcd sent a malformed chunk size")
                }
                buffer.removeFirst(lineEnd + 2)
                try fill(size + 2)
                payload += buffer[..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }), length >= 0, length < 256 << 20 {
            try fill(length)
            payload = Array(buffer[..<length])
            buffer.removeFirst(length)
        } else {
            throw EtcdError(description: "etcd answered without a length")
        }
        if headers["connection"]?.lowercased() == "close" { socket = nil }
        return (status, payload)
    }

    /// Reads until `buffer` holds `count` bytes.
    private func fill(_ count: Int) throws {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while buffer.count < count {
            let n = try chunk.withUnsafeMutableBytes { try socket!.read(into: $0.baseAddress!, count: $0.count, wait: true) }
            buffer += chunk[..<n]
        }
    }

    /// Reads until `marker` is in `buffer`; returns where it starts.
    private func readUntil(_ marker: [UInt8]) throws -> Int {
        var searched = 0
        while true {
            if buffer.count >= marker.count {
                for i in max(0, searched - marker.count)...(buffer.count - marker.count) where buffer[i..<(i + marker.count)].elementsEqual(marker) {
                    return i
                }
                searched = buffer.count
            }
            guard buffer.count < 1 << 20 else { throw EtcdError(description: "etcd's answer has no end of header") }
            try fill(buffer.count + 1)
        }
    }

    // MARK: JSON helpers

    private func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    private func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// The first key after every key that starts with `prefix` (etcd's range_end for a prefix).
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var end = Array(prefix.utf8)
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]  // every key
    }

    /// etcd's JSON gateway writes 64-bit integers as strings; absent means 0.
    static func int(_ value: Any?) -> Int64 {
        if let s = value as? String { return Int64(s) ?? 0 }
        if let n = value as? NSNumber { return n.int64Value }
        return 0
    }

    static func keyValue(_ kv: [String: Any]) throws(EtcdError) -> EtcdKeyValue {
        guard let key = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { throw EtcdError(description: "etcd sent a key-value without a key") }
        let value = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
        return EtcdKeyValue(key: String(decoding: key, as: UTF8.self), value: Array(value), createRevision: int(kv["create_revision"]),
                            modRevision: int(kv["mod_revision"]), version: int(kv["version"]), lease: int(kv["lease"]))
    }
}
