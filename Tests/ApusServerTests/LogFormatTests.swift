import ApusTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `log.format = json`: every line a JSON object, and a line about a client names its address
/// and client id.
@Suite struct LogFormatTests {
    @Test func jsonLinesNameTheClient() throws {
        let server = try ApusServerProcess(arguments: ["--set", "log.format=json"])
        defer { server.removeData() }
        // A request for an API that does not exist, from client id "json-test": the broker
        // closes the connection and says why.
        var frame: [UInt8] = []
        func int16(_ v: Int16) { frame += withUnsafeBytes(of: v.bigEndian, Array.init) }
        int16(7777); int16(0); frame += withUnsafeBytes(of: Int32(1).bigEndian, Array.init)
        int16(9); frame += Array("json-test".utf8)
        let sized = withUnsafeBytes(of: Int32(frame.count).bigEndian, Array.init) + frame
        let fd = try #require(connectLoopback(server.port))
        _ = sized.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var byte: UInt8 = 0
        #expect(recv(fd, &byte, 1, 0) == 0, "the broker closed the connection")
        close(fd)
        #expect(server.stop() == 0)

        let lines = server.log.split(separator: "\n")
        #expect(lines.count >= 3)
        var closing: [String: Any]?
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            #expect(object["ts"] is String && object["level"] is String && object["msg"] is String)
            if object["msg"] as? String == "closing connection" { closing = object }
        }
        let line = try #require(closing, "a line about the closed connection")
        #expect(line["client"] as? String == "json-test")
        #expect((line["peer"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect((line["reason"] as? String)?.contains("unknown API key 7777") == true)
        #expect(line["level"] as? String == "warning")
    }

    /// Standard error on a full disk (/dev/full fails every write): the broker loses its log
    /// lines, not its life — it keeps serving and stops cleanly, in either log format.
    @Test(arguments: ["text", "json"]) func aLogThatCannotBeWrittenDoesNotStopTheBroker(format: String) throws {
        let server = try ApusServerProcess(arguments: ["--set", "log.format=\(format)"], stderrTo: "/dev/full")
        defer { server.removeData() }
        let kcat = try #require(which("kcat"))
        // Connections the broker closes with a warning line each, then real traffic.
        for _ in 0..<3 {
            let fd = try #require(connectLoopback(server.port))
            let garbage: [UInt8] = [0, 0, 0, 6, 0x1E, 0x61, 0, 0, 0, 1]
            _ = garbage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) == 0, "the broker closed the connection")
            close(fd)
        }
        let produced = try run(kcat, ["-P", "-b", server.bootstrap, "-t", "full-log", "-X", "acks=all"], input: "a\nb\nc\n")
        #expect(produced.status == 0, "\(produced.err)")
        let consumed = try run(kcat, ["-C", "-b", server.bootstrap, "-t", "full-log", "-o", "beginning", "-e", "-q"])
        #expect(consumed.out == "a\nb\nc\n")
        #expect(server.process.isRunning)
        #expect(server.stop() == 0)
    }
}
