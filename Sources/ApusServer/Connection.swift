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
    /// The client id of the connection's first request (for log lines about it).
    var clientId: String?

    private var input: UnsafeMutableRawPointer
    private var inputCapacity = 64 << 10
    private var inputCount = 0

    /// Responses in request order; a pending one blocks the ones after it.
    /// Responses in request order; each with its request's API, arrival, end of handling and
    /// the time its response became ready (for the request latency metrics).
    private var slots: [(sequence: UInt64, frame: ResponseFrame?, apiKey: Int16, queueNs: UInt64, startNs: UInt64, handledNs: UInt64, readyNs: UInt64)] = []
    /// The shard's counters (same thread).
    let counters: ShardCounters
    /// The number the next request gets (matches completions to slots).
    private(set) var nextSequence: UInt64 = 0
    private var partIndex = 0
    private var partOffset = 0
    private(set) var queuedBytes = 0
    var watchingWritable = false
    var muted = false

    init(id: ConnectionID, fd: Int32, peer: String, counters: ShardCounters) {
        self.counters = counters
        self.id = id
        self.fd = fd
        self.peer = peer
        input = .allocate(byteCount: inputCapacity, alignment: 16)
    }

    deinit {
        input.deallocate()
        iov?.deallocate()
        Net.close(fd)
    }

    /// Reads what the socket has and calls `body` with each complete request frame (valid only
    /// during the call; `body` returns false to stop). Returns why the connection must close
    /// ("" for an orderly close by the peer), or nil to keep it.
    func readFrames(maxFrameBytes: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
        while true {
            let space = receiveBuffer()
            let got: Int?
            do {
                got = try Net.read(fd, into: space)
            } catch {
                return "read failed: \(error)"
            }
            guard let got else { break }
            if let reason = received(got, maxFrameBytes: maxFrameBytes, body) { return reason }
            if got < space.count { break }  // drained: the next read would block
        }
        return nil
    }

    /// Where the next bytes from the socket go: room for the rest of the frame being received
    /// (its size was checked when its prefix arrived), so that one read can take it whole up
    /// to 8 MiB; otherwise the buffer doubles when full.
    func receiveBuffer() -> UnsafeMutableRawBufferPointer {
        if inputCount >= 4 {
            let size = Int(Int32(bigEndian: input.loadUnaligned(as: Int32.self)))
            // Up to 8 MiB at once: a client sending only a large size prefix does not get its
            // whole claimed size reserved (larger frames grow by doubling as bytes arrive).
            if size > 0 && 4 + size > inputCapacity { grow(to: min(4 + size, max(8 << 20, inputCapacity))) }
        }
        if inputCount == inputCapacity { grow(to: inputCapacity * 2) }
        return UnsafeMutableRawBufferPointer(start: input + inputCount, count: inputCapacity - inputCount)
    }

    /// Takes `count` bytes received into ``receiveBuffer()`` and hands over every complete
    /// frame (see ``readFrames(maxFrameBytes:_:)``). Returns why the connection must close
    /// ("" for an orderly close, when `count` is 0; also "" when `body` stopped), or nil.
    func received(_ count: Int, maxFrameBytes: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
        if count == 0 { return inputCount > 0 ? "client disconnected mid-request" : "" }
        inputCount += count
        var consumed = 0
        defer {
            if consumed > 0 {
                input.copyMemory(from: input + consumed, byteCount: inputCount - consumed)
                inputCount -= consumed
            }
        }
        while inputCount - consumed >= 4 {
            let size = Int(Int32(bigEndian: (input + consumed).loadUnaligned(as: Int32.self)))
            if size < 0 || size > maxFrameBytes {
                return "request of \(size) bytes exceeds socket.request.max.bytes (\(maxFrameBytes))"
            }
            if inputCount - consumed - 4 < size { break }  // the buffer doubles as bytes arrive
            if !body(UnsafeRawBufferPointer(start: input + consumed + 4, count: size)) { return "" }
            consumed += 4 + size
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

    /// Queues the response slot of request `sequence` (`frame` nil: it comes later), with the
    /// request's API, how long it waited in its turn before the handler, the handler's start and end.
    func enqueue(sequence: UInt64, frame: ResponseFrame?, apiKey: Int16, queueNs: UInt64, startNs: UInt64, handledNs: UInt64) {
        slots.append((sequence, frame, apiKey, queueNs, startNs, handledNs, handledNs))
        queuedBytes += frame?.byteCount ?? 0
        if frame != nil { counters.stats.requestReady(apiKey, queueNs: queueNs, handlerNs: handledNs &- startNs, waitNs: 0) }
    }

    /// Fills the pending slot of request `sequence`.
    func complete(sequence: UInt64, frame: ResponseFrame) {
        guard let i = slots.firstIndex(where: { $0.sequence == sequence && $0.frame == nil }) else { return }
        let now = Sys.monotonicNs()
        slots[i].frame = frame
        slots[i].readyNs = now
        queuedBytes += frame.byteCount
        counters.stats.requestReady(slots[i].apiKey, queueNs: slots[i].queueNs, handlerNs: slots[i].handledNs &- slots[i].startNs,
                                    waitNs: now &- slots[i].handledNs)
    }

    /// The first response is out: drop its slot and count its send time.
    private func finishFirst() {
        let done = slots.removeFirst()
        counters.stats.responseSent(done.apiKey, ns: Sys.monotonicNs() &- done.readyNs)
        partIndex = 0
        partOffset = 0
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
            finishFirst()
        }
        return true
    }

    // MARK: Completion-based I/O (io_uring): the ring holds buffers until its operations finish

    /// A receive is queued on the ring (into ``receiveBuffer()``).
    var receiving = false
    /// Already in this turn's list of connections with something to do (ShardLoop).
    var active = false
    /// A wait for readability is queued (after a receive found nothing).
    var pollingReadable = false
    /// A send, or a wait for writability, is queued.
    var sending = false
    var hasOperationsInFlight: Bool { receiving || pollingReadable || sending }
    private var iov: UnsafeMutablePointer<iovec>?
    static let maxSendBuffers = 64

    enum SendStep {
        case idle
        /// Send these buffers (valid until ``advance(sent:)``).
        case bytes(UnsafePointer<iovec>, Int32)
        /// Send this file range from `offset` (with sendfile).
        case file(FileRange, offset: Int)
    }

    /// What to send next: the ready responses' bytes up to the next file range (at most
    /// ``maxSendBuffers`` pieces), or that file range.
    func nextSend() -> SendStep {
        let iov = self.iov ?? .allocate(capacity: Self.maxSendBuffers)
        self.iov = iov
        var count = 0
        var slot = 0
        var part = partIndex
        var offset = partOffset
        while slot < slots.count, let frame = slots[slot].frame, count < Self.maxSendBuffers {
            if part == frame.parts.count {
                slot += 1
                part = 0
                offset = 0
                continue
            }
            switch frame.parts[part] {
            case .bytes(let bytes):
                if bytes.count > offset {
                    // The array's storage stays put: the frame is not mutated until it is sent.
                    let base = bytes.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
                    iov[count] = iovec(iov_base: base + offset, iov_len: bytes.count - offset)
                    count += 1
                }
            case .file(let range):
                if count > 0 { return .bytes(iov, Int32(count)) }
                return .file(range, offset: offset)
            }
            part += 1
            offset = 0
        }
        return count > 0 ? .bytes(iov, Int32(count)) : .idle
    }

    /// Marks `count` bytes of the ready responses as sent.
    func advance(sent count: Int) {
        var left = count
        queuedBytes -= count
        while let frame = slots.first?.frame {
            if partIndex == frame.parts.count {
                finishFirst()
                continue
            }
            let size: Int
            switch frame.parts[partIndex] {
            case .bytes(let bytes): size = bytes.count
            case .file(let range): size = range.length
            }
            if left < size - partOffset {
                partOffset += left
                return
            }
            left -= size - partOffset
            partIndex += 1
            partOffset = 0
        }
    }
}
