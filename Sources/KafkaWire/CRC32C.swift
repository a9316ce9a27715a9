import CCRC32C

/// CRC32C (Castagnoli), the checksum of Kafka's RecordBatch v2.
/// Backed by the C target: ISA-L when libisal is present, else SSE4.2, else tables.
public enum CRC32C {
    /// The CRC32C of `bytes` (0 for an empty buffer).
    @inlinable @inline(__always)
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0, bytes)
    }

    /// Continues `crc` over `bytes`: `update(update(0, a), b) == checksum(a + b)`.
    @inlinable @inline(__always)
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return apus_crc32c_update(crc, base, bytes.count)
    }

    /// The CRC32C of a byte array.
    @inlinable
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }

    /// Continues `crc` over a byte array.
    @inlinable
    public static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    /// The implementation in use: "isa-l", "sse4.2" or "software".
    public static var implementation: String {
        String(cString: apus_crc32c_implementation())
    }

    /// Every implementation name the C target knows, available here or not.
    public static let implementationNames = ["isa-l", "sse4.2", "software"]

    /// Switches every caller to the named implementation (`nil` restores the automatic choice);
    /// false if it is unavailable on this machine. For tests and benchmarks.
    @discardableResult
    public static func forceImplementation(_ name: String?) -> Bool {
        guard let name else { return apus_crc32c_force(nil) == 0 }
        return apus_crc32c_force(name) == 0
    }

    /// Continues `crc` over `bytes` with the named implementation without changing the global
    /// choice; nil if it is unavailable. For tests and benchmarks.
    public static func update(
        _ crc: UInt32, _ bytes: UnsafeRawBufferPointer, using implementation: String
    ) -> UInt32? {
        var out: UInt32 = 0
        let rc = apus_crc32c_update_using(implementation, crc, bytes.baseAddress, bytes.count, &out)
        return rc == 0 ? out : nil
    }
}
