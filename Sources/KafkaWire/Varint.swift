/// Raw-pointer varint helpers for the record hot path (zigzag varints as in RecordBatch v2).
public enum Varint {
    /// Bytes needed for `value` as an unsigned LEB128 varint.
    @inlinable @inline(__always)
    public static func size(unsigned value: UInt64) -> Int {
        let bits = 64 - (value | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    @inlinable @inline(__always)
    public static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inlinable @inline(__always)
    public static func size(signed value: Int64) -> Int {
        size(unsigned: zigzag(value))
    }

    /// Writes `value` at `p`; returns the number of bytes written. `p` must have room (≤ 10).
    @inlinable @inline(__always)
    public static func put(unsigned value: UInt64, at p: UnsafeMutableRawPointer) -> Int {
        var v = value
        var i = 0
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: i, as: UInt8.self)
            v >>= 7
            i += 1
        }
        p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        return i + 1
    }

    @inlinable @inline(__always)
    public static func put(signed value: Int64, at p: UnsafeMutableRawPointer) -> Int {
        put(unsigned: zigzag(value), at: p)
    }

    /// Reads a zigzag varint of at most `maxBytes` bytes from `p[i..<end]`, advancing `i`.
    /// Returns nil if the input ends or the varint is longer than allowed.
    @inlinable @inline(__always)
    public static func read(signed p: UnsafeRawPointer, _ i: inout Int, end: Int, maxBytes: Int) -> Int64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var n = 0
        while i < end {
            let byte = p.load(fromByteOffset: i, as: UInt8.self)
            i += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                return Int64(bitPattern: (result >> 1) ^ (0 &- (result & 1)))
            }
            shift += 7
            n += 1
            if n == maxBytes { return nil }
        }
        return nil
    }
}
