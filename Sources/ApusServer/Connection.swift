import ApusBroker
import ApusIO
import ApusStorage
#if canImport(Glibc)
import Glibc
#endif

/// One client connection: framing of requests, and responses kept in request order.
/// Owned by the event loop's thread.
final class Connection {
    let id: ConnectionID
    let fd: Int32
    let peer: String

    private var input: UnsafeMutableRawPointer
    private var inputCapacity = 64 << 10
    private var inputCount = 0

    /// Responses in request order; a pending one blocks the ones after it.
    private var slots: [(sequence: UInt64, frame: ResponseFrame?)] = []
    /// The number the next request gets (matches completions to slots).
    private(set) var nextSequence: UInt64 = 0
    private var partIndex = 0
    private var partOffset = 0
    private(set) var queuedBytes = 0
    var watchingWritable = false
    var muted = false

    init(id: ConnectionID, fd: Int32, peer: String) {
        self.id = id
        self.fd = fd
        self.peer = peer
        input = .allocate(byteCount: inputCapacity, alignment: 16)
    }

    deinit {
        input.deallocate()
        Net.close(fd)
    }

    /// Reads what the socket has and calls `body` with each complete request frame (valid only
    /// during the call; `body` returns false to stop). Returns why the connection must close
    /// ("" for an orderly close by the peer), or nil to keep it.
    func readFrames(maxFrameBytes: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
        while true {
            if inputCount == inputCapacity { grow(to: inputCapacity * 2) }
            let got: Int?
            let room = inputCapacity - inputCount
            do {
                got = try Net.read(fd, into: UnsafeMutableRawBufferPointer(start: input + inputCount, count: room))
            } catch {
                return "read failed: \(error)"
            }
            guard let got else { break }
            if got == 0 { return inputCount > 0 ? "client disconnected mid-request" : "" }
            inputCount += got
            // Hand over every complete frame.
            var consumed = 0
            while inputCount - consumed >= 4 {
                let size = Int(Int32(bigEndian: (input + consumed).loadUnaligned(as: Int32.self)))
                if size < 0 || size > maxFrameBytes {
                    return "request of \(size) bytes exceeds socket.request.max.bytes (\(maxFrameBytes))"
                }
                if inputCount - consumed - 4 < size { break }  // the buffer doubles as bytes arrive
                if !body(UnsafeRawBufferPointer(start: input + consumed + 4, count: size)) { return nil }
                consumed += 4 + size
            }
            if consumed > 0 {
                (input).copyMemory(from: input + consumed, byteCount: inputCount - consumed)
                inputCount -= consumed
            }
            if got < room { break }  // drained: the next read would block
        }
        return nil
    }

    private func grow(to capacity: Int) {
        guard capacity > inputCapacity else { return }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        bigger.copyMemory(from: input, byteCount: inputCount)
        input.deallocate()
        input = bigger
        inputCapacity = capacity
    }

    /// Numbers the next request on this connection.
    func takeSequence() -> UInt64 {
        defer { nextSequence += 1 }
        return nextSequence
    }

    func enqueue(sequence: UInt64, frame: ResponseFrame?) {
        slots.append((sequence, frame))
        queuedBytes += frame?.byteCount ?? 0
    }

    /// Fills the pending slot of request `sequence`.
    func complete(sequence: UInt64, frame: ResponseFrame) {
        if let i = slots.firstIndex(where: { $0.sequence == sequence && $0.frame == nil }) {
            slots[i].frame = frame
            queuedBytes += frame.byteCount
        }
    }

    var hasWritableData: Bool { slots.first?.frame != nil }

    /// Writes ready responses in order until the socket is full.
    /// - Returns: true if everything ready was written.
    func flush() throws(SystemError) -> Bool {
        while let first = slots.first, let frame = first.frame {
            while partIndex < frame.parts.count {
                switch frame.parts[partIndex] {
                case .bytes(let bytes):
                    let offset = partOffset
                    let n = try bytes.withUnsafeBytes { raw in
                        var one = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + offset), iov_len: raw.count - offset)
                        return Result { () throws(SystemError) in try Net.writev(fd, &one, 1) }
                    }.get()
                    partOffset += n
                    queuedBytes -= n
                    if partOffset < bytes.count { return false }
                case .file(let range):
                    let n = try Net.sendfile(socket: fd, file: range.fd, offset: range.position + Int64(partOffset), count: range.length - partOffset)
                    partOffset += n
                    queuedBytes -= n
                    if partOffset < range.length { return false }
                }
                partIndex += 1
                partOffset = 0
            }
            slots.removeFirst()
            partIndex = 0
            partOffset = 0
        }
        return true
    }
}
