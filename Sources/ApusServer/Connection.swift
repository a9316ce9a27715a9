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
    /// The listener it came in on, its principal and SASL state (the broker's view).
    let session: ClientSession

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
    /// TLS (SSL and SASL_SSL listeners): ciphertext moves through the session's buffers, and
    /// ``received(_:maxFrameBytes:_:)`` / ``flush()`` decrypt and encrypt around the framing.
    let tls: TLSSession?
    /// File data read for encryption (a fetch over TLS cannot use sendfile): which range and
    /// where in it the buffer starts.
    private var fileChunk: (buffer: UnsafeMutableRawBufferPointer, fd: Int32, position: Int64, count: Int)?
    static let fileChunkBytes = 64 << 10

    init(id: ConnectionID, fd: Int32, peer: String, session: ClientSession, tls: TLSSession? = nil, counters: ShardCounters) {
        self.session = session
        self.tls = tls
        self.counters = counters
        self.id = id
        self.fd = fd
        self.peer = peer
        input = .allocate(byteCount: inputCapacity, alignment: 16)
    }

    deinit {
        input.deallocate()
        iov?.deallocate()
        fileChunk?.buffer.deallocate()
        Net.close(fd)
    }

    /// Reads what the socket has and calls `body` with each complete request frame (valid only
    /// during the call; `body` returns false to stop). Returns why the connection must close
    /// ("" for an orderly close by the peer), or nil to keep it.
    ///
    /// Reads at most about `budget` bytes of plaintext (a TLS session decrypts all the socket
    /// has): what is left waits for the next turn (the poller is level-triggered), so that a client with many large requests queued has the first ones
    /// answered this turn instead of all of them at the end of one long turn.
    func readFrames(maxFrameBytes: Int, budget: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
        var left = budget
        while left > 0 {
            let space = receiveBuffer(atMost: left)
            let got: Int?
            do {
                got = try Net.read(fd, into: space)
            } catch {
                return "read failed: \(error)"
            }
            guard let got else { break }
            if let reason = received(got, maxFrameBytes: maxFrameBytes, body) { return reason }
            if got < space.count { break }  // drained: the next read would block
            left -= got
        }
        return nil
    }

    /// Where the next bytes from the socket go: room for the rest of the frame being received
    /// (its size was checked when its prefix arrived), so that one read can take it whole up
    /// to 8 MiB; otherwise the buffer doubles when full.
    func receiveBuffer() -> UnsafeMutableRawBufferPointer {
        if let tls { return tls.inSpace() }
        return plainReceiveBuffer()
    }

    /// ``receiveBuffer()`` cut to `limit` bytes (at least 64 KiB) for a turn's read budget.
    func receiveBuffer(atMost limit: Int) -> UnsafeMutableRawBufferPointer {
        let buffer = receiveBuffer()
        return tls == nil ? UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(max(limit, 64 << 10))) : buffer
    }

    private func plainReceiveBuffer() -> UnsafeMutableRawBufferPointer {
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
        guard let tls else { return receivedPlain(count, maxFrameBytes: maxFrameBytes, body) }
        // Ciphertext: decrypt what came, then read on until the socket is empty (a ring receive
        // brings one buffer's worth; the session's buffer is smaller than a busy socket's backlog).
        var got = count
        while true {
            if let reason = decrypt(tls, got, maxFrameBytes: maxFrameBytes, body) { return reason }
            let space = tls.inSpace()
            guard space.count > 0 else { return "TLS input buffer full" }  // the session reads everything it is given
            do {
                guard let n = try Net.read(fd, into: space) else { return nil }
                got = n
            } catch {
                return "read failed: \(error)"
            }
        }
    }

    /// Takes `count` bytes of ciphertext, finishes the handshake, and frames the plaintext.
    private func decrypt(_ tls: TLSSession, _ count: Int, maxFrameBytes: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
        if count == 0 { return inputCount > 0 ? "client disconnected mid-request" : "" }
        tls.commit(count)
        if !tls.handshakeDone {
            switch tls.handshake() {
            case 1:
                tls.handshakeDone = true
                if let subject = tls.peerSubject { session.setCertificatePrincipal(subject) }
            case 0:
                return nil
            default:
                return "TLS handshake failed: \(tls.error)"
            }
        }
        while true {
            let n = tls.read(into: plainReceiveBuffer())
            if n > 0 {
                if let reason = receivedPlain(n, maxFrameBytes: maxFrameBytes, body) { return reason }
                continue
            }
            if n == 0 { return nil }
            return n == -2 ? "" : "TLS read failed: \(tls.error)"
        }
    }

    private func receivedPlain(_ count: Int, maxFrameBytes: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> String? {
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

    var hasWritableData: Bool { slots.first?.frame != nil || (tls?.outPending ?? 0) > 0 }

    /// Writes ready responses in order until the socket is full.
    /// - Returns: true if everything ready was written.
    func flush() throws(SystemError) -> Bool {
        if let tls { return try flushTLS(tls) }
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

    // MARK: TLS: responses are encrypted into the session's buffer, which is written to the socket

    /// Sends the session's ciphertext and encrypts more of the ready responses, until the socket
    /// is full or everything ready is out (the handshake's messages included).
    private func flushTLS(_ tls: TLSSession) throws(SystemError) -> Bool {
        while true {
            while let out = tls.outData() {
                var one = iovec(iov_base: UnsafeMutableRawPointer(mutating: out.baseAddress!), iov_len: out.count)
                let n = try Net.writev(fd, &one, 1)
                tls.consume(n)
                if n < out.count { return false }
            }
            guard tls.handshakeDone, try seal(tls) else { return tls.outPending == 0 }
        }
    }

    /// Encrypts ready responses in order until the session's buffer is full; file ranges are
    /// read into memory first (once, 64 KiB at a time) since sendfile cannot encrypt.
    /// - Returns: whether anything was encrypted.
    private func seal(_ tls: TLSSession) throws(SystemError) -> Bool {
        var progressed = false
        while let first = slots.first, let frame = first.frame {
            while partIndex < frame.parts.count {
                let taken: Int
                let size: Int
                switch frame.parts[partIndex] {
                case .bytes(let bytes):
                    size = bytes.count
                    let offset = partOffset
                    taken = bytes.withUnsafeBytes { tls.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                case .file(let range):
                    size = range.length
                    taken = tls.write(try fileBytes(range, from: partOffset))
                }
                if taken < 0 { throw SystemError("TLS write", errno: EPROTO, tls.error) }
                if taken == 0 { return progressed }
                progressed = true
                partOffset += taken
                queuedBytes -= taken
                if partOffset < size { continue }
                partIndex += 1
                partOffset = 0
                fileChunk?.count = 0  // its descriptor may be another file's by the next range
            }
            finishFirst()
        }
        return progressed
    }

    /// The bytes of `range` from `offset`: from the chunk already read if it holds them (a write
    /// the session could not take whole is offered the same bytes again), else read now.
    private func fileBytes(_ range: FileRange, from offset: Int) throws(SystemError) -> UnsafeRawBufferPointer {
        let position = range.position + Int64(offset)
        if let chunk = fileChunk, chunk.fd == range.fd, position >= chunk.position, position < chunk.position + Int64(chunk.count) {
            let skip = Int(position - chunk.position)
            return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(chunk.buffer)[skip..<chunk.count])
        }
        let buffer = fileChunk?.buffer ?? .allocate(byteCount: Self.fileChunkBytes, alignment: 64)
        let want = min(Self.fileChunkBytes, range.length - offset)
        let n = try Sys.preadFully(range.fd, UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: position)
        guard n == want else { throw SystemError("pread", errno: EIO, "segment shorter than the range being sent") }
        fileChunk = (buffer, range.fd, position, n)
        return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[..<n])
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
