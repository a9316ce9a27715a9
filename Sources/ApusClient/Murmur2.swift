/// Kafka's key hash: MurmurHash2 exactly as the Java client's `Utils.murmur2` computes it
/// (seed 0x9747b28c, little-endian 4-byte blocks, Java's fall-through tail), as a signed Int32.
@inlinable
public func murmur2(_ data: UnsafeRawBufferPointer) -> Int32 {
    let m: UInt32 = 0x5bd1_e995
    let length = data.count
    var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
    let blocks = length / 4
    var i = 0
    while i < blocks {
        var k = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        k &*= m
        k ^= k >> 24
        k &*= m
        h &*= m
        h ^= k
        i += 1
    }
    let tail = length & ~3
    switch length % 4 {
    case 3:
        h ^= UInt32(data[tail + 2]) << 16
        h ^= UInt32(data[tail + 1]) << 8
        h ^= UInt32(data[tail])
        h &*= m
    case 2:
        h ^= UInt32(data[tail + 1]) << 8
        h ^= UInt32(data[tail])
        h &*= m
    case 1:
        h ^= UInt32(data[tail])
        h &*= m
    default:
        break
    }
    h ^= h >> 13
    h &*= m
    h ^= h >> 15
    return Int32(bitPattern: h)
}

/// The Java client's default partition for a keyed record: `toPositive(murmur2(key)) % n`.
@inlinable
public func murmur2Partition(key: UnsafeRawBufferPointer, partitions: Int) -> Int {
    Int(murmur2(key) & 0x7fff_ffff) % partitions
}
