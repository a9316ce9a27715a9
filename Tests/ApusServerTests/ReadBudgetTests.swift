import ApusBroker
import ApusIO
@testable import ApusServer
import Glibc
import Testing

/// `loop.read.bytes`: one turn reads about that much from a connection; the rest waits for the
/// next turn, and nothing is lost or reordered.
@Suite struct ReadBudgetTests {
    @Test func aTurnReadsAboutTheBudgetAndTheNextTurnsTheRest() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[1]) }
        var size: Int32 = 8 << 20
        _ = setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Five frames of 256 KiB, each filled with its number.
        let frameBytes = 256 << 10
        var written = 0
        for n in 0..<5 {
            var frame = [UInt8](repeating: UInt8(n), count: 4 + frameBytes)
            withUnsafeBytes(of: Int32(frameBytes).bigEndian) { for i in 0..<4 { frame[i] = $0[i] } }
            written += frame.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        }
        #expect(written == 5 * (4 + frameBytes), "the socket buffers hold all five frames")
        let connection = Connection(id: 1, fd: fds[0], peer: "test", session: ClientSession(), counters: ShardCounters())
        var seen: [UInt8] = []
        var perTurn: [Int] = []
        for _ in 0..<6 where seen.count < 5 {
            let before = seen.count
            let reason = connection.readFrames(maxFrameBytes: 1 << 20, budget: 300 << 10) { frame in
                #expect(frame.count == frameBytes && frame.allSatisfy { $0 == frame[0] })
                seen.append(frame[0])
                return true
            }
            #expect(reason == nil)
            perTurn.append(seen.count - before)
        }
        #expect(seen == [0, 1, 2, 3, 4], "every frame once, in order")
        #expect(perTurn.allSatisfy { $0 <= 2 }, "about 300 KiB a turn, not all 1.25 MiB at once: \(perTurn)")
        #expect(perTurn.count >= 3)
    }
}
