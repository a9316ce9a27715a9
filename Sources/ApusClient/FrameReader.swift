import ApusIO

/// Why a client call failed: a syscall, the protocol, the broker, or the configuration.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The Kafka error code when the broker reported one.
    public var kafkaErrorCode: Int16?
    public init(_ description: String, kafkaErrorCode: Int16? = nil) {
        self.description = description
        self.kafkaErrorCode = kafkaErrorCode
    }
    init(_ error: SystemError) {
        self.init(error.description)
    }
}

/// Splits a byte stream into Kafka frames (4-byte big-endian size, then the frame) in a buffer
/// it owns and reuses; grows only for a frame larger than any before.
struct FrameReader: ~Copyable {
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0

    init(capacity: Int = 64 << 10) {
        self.capacity = capacity
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The next whole frame (without its size), valid until the next call on this reader.
    mutating func nextFrame() throws(ClientError) -> UnsafeRawBufferPointer? {
        guard end - start >= 4 else { return nil }
        let size = Int(Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: start, as: Int32.self)))
        guard size >= 0, size <= 1 << 30 else { throw ClientError("bad response frame size \(size)") }
        guard end - start >= 4 + size else { return nil }
        let frame = UnsafeRawBufferPointer(start: buffer + start + 4, count: size)
        start += 4 + size
        return frame
    }

    /// Moves `other`'s bytes not yet returned as frames to this reader, which must be empty
    /// (a frame `other` returned stays valid).
    mutating func takeUnread(from other: inout FrameReader) {
        let n = other.end - other.start
        guard n > 0 else { return }
        precondition(start == end, "takeUnread into a reader holding bytes")
        if capacity < n {
            buffer.deallocate()
            capacity = n
            buffer = .allocate(byteCount: capacity, alignment: 16)
        }
        buffer.copyMemory(from: other.buffer + other.start, byteCount: n)
        start = 0
        end = n
        other.end = other.start
    }

    /// Reads from `transport` into the free space (compacting or growing first); with
    /// `frameEnd`, no further than the end of the frame begun (when its size is known), so that
    /// a reader handed away with its frame takes few bytes of the next one along.
    /// Returns the bytes read (0 if `wait` is false and nothing was there).
    mutating func fill(from transport: ClientSocket, wait: Bool, frameEnd: Bool = false) throws(ClientError) -> Int {
        if start == end {
            start = 0
            end = 0
        }
        var needed = 4096
        if end - start >= 4 {
            let size = Int(Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: start, as: Int32.self)))
            needed = max(needed, 4 + size - (end - start))
        }
        if capacity - end < needed {
            if start > 0 {
                (buffer).copyMemory(from: buffer + start, byteCount: end - start)
                end -= start
                start = 0
            }
            if capacity - end < needed {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: max(capacity * 2, end + needed), alignment: 16)
                bigger.copyMemory(from: buffer, byteCount: end)
                buffer.deallocate()
                buffer = bigger
                capacity = max(capacity * 2, end + needed)
            }
        }
        let room = frameEnd && end - start >= 4 ? min(capacity - end, needed) : capacity - end
        let n: Int
        do { n = try transport.read(into: buffer + end, count: room, wait: wait) } catch { throw ClientError(error) }
        end += n
        return n
    }
}
