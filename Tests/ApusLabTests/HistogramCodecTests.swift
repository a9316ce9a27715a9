import Foundation
import Histogram
import KafkaWire
import Testing

@testable import ApusLab

/// HdrHistogram V2 encoding and .hlog writing: round trips, malformed input, known answers from
/// the reference implementations, and a cross-check against Python's `hdrh`.
@Suite struct HistogramCodecTests {
    static let highest: UInt64 = 60_000_000_000

    /// The lab's histogram: nanoseconds, 1 ns to 60 s, three digits.
    static func labHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }

    /// `values` values spread log-uniformly over 1 ns ... 60 s (plus the edges and zero), with
    /// counts mostly small and sometimes large.
    static func randomHistogram(seed: UInt64, values: Int) -> Histogram<UInt64> {
        var rng = SplitMix64(seed: seed)
        var h = labHistogram()
        for v: UInt64 in [0, 1, 2047, 2048, highest] { h.record(v, count: UInt64.random(in: 1...5, using: &rng)) }
        for _ in 0..<values {
            let v = Swift.min(UInt64(exp2(Double.random(in: 0...log2(Double(highest)), using: &rng))), highest)
            let count = rng.next() % 8 == 0 ? UInt64.random(in: 1...1_000_000, using: &rng) : UInt64.random(in: 1...3, using: &rng)
            h.record(v, count: count)
        }
        return h
    }

    static let percentiles: [Double] = [0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 99.999, 100]

    /// Decodes both encodings of `h` and checks the result is the same histogram.
    static func expectRoundTrip(_ h: Histogram<UInt64>, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let plain = HistogramCodec.encode(h)
        for (form, bytes) in [("plain", plain), ("compressed", HistogramCodec.encodeCompressed(h))] {
            let d = try HistogramCodec.decode(bytes)
            #expect(d == h, "\(form)", sourceLocation: sourceLocation)
            #expect(d.totalCount == h.totalCount, sourceLocation: sourceLocation)
            #expect(d.lowestDiscernibleValue == h.lowestDiscernibleValue, sourceLocation: sourceLocation)
            #expect(d.highestTrackableValue == h.highestTrackableValue, sourceLocation: sourceLocation)
            #expect(d.numberOfSignificantValueDigits == h.numberOfSignificantValueDigits, sourceLocation: sourceLocation)
            #expect(d.max == h.max, sourceLocation: sourceLocation)
            #expect(d.minNonZero == h.minNonZero, sourceLocation: sourceLocation)
            #expect(d.mean == h.mean, sourceLocation: sourceLocation)
            // The format keeps buckets, not the exact extremes: the decoded histogram reports each
            // percentile as its bucket's highest value (as Java's does), the original clamps to
            // its exact max (and reports the exact min at 0). `max` is the top bucket's highest
            // value, or 0 when only zeros were recorded.
            for p in percentiles {
                let v = h.valueAtPercentile(p)
                let expected = p == 0 ? h.lowestEquivalentForValue(v) : Swift.min(h.highestEquivalentForValue(v), h.max)
                #expect(d.valueAtPercentile(p) == expected, "\(form) p\(p)", sourceLocation: sourceLocation)
            }
            #expect(HistogramCodec.encode(d) == plain, "\(form): re-encoding differs", sourceLocation: sourceLocation)
        }
    }

    // MARK: Round trips

    @Test func emptyHistogramRoundTrips() throws {
        try Self.expectRoundTrip(Self.labHistogram())
    }

    @Test(arguments: [0, 1, 2, 1_023, 2_047, 2_048, 123_456_789, 59_999_999_999, 60_000_000_000] as [UInt64])
    func singleValueRoundTrips(_ value: UInt64) throws {
        var h = Self.labHistogram()
        h.record(value)
        try Self.expectRoundTrip(h)
        // As many as the library can iterate: its iterators sum count × value in a UInt64.
        var many = Self.labHistogram()
        many.record(value, count: 1 << 28)
        try Self.expectRoundTrip(many)
    }

    @Test(arguments: [1, 2, 3, 42] as [UInt64])
    func randomHistogramsRoundTrip(_ seed: UInt64) throws {
        try Self.expectRoundTrip(Self.randomHistogram(seed: seed, values: 20_000))
    }

    @Test func otherParametersRoundTrip() throws {
        var rng = SplitMix64(seed: 7)
        let configs: [(UInt64, UInt64, SignificantDigits)] = [
            (20_000, 3_600_000_000_000, .two), (1_000, 1_000_000_000, .zero), (1, 2, .five),
            (3, 1 << 40, .four), (1, UInt64(Int64.max), .one),
        ]
        for (lowest, highest, digits) in configs {
            var h = Histogram<UInt64>(lowestDiscernibleValue: lowest, highestTrackableValue: highest, numberOfSignificantValueDigits: digits)
            for _ in 0..<2_000 {
                // Values small enough for the library's iterators (they sum count × value in a
                // UInt64), and none in the first unit but 0: the format, like Java, cannot tell
                // 1 from 0 when the lowest discernible value is above 1 (both are bucket 0).
                let v = UInt64.random(in: 0...highest, using: &rng) >> UInt64.random(in: 20...63, using: &rng)
                h.record(v < lowest ? 0 : v)
            }
            try Self.expectRoundTrip(h)
        }
    }

    @Test func base64RoundTrips() throws {
        let h = Self.randomHistogram(seed: 5, values: 1_000)
        let text = HistogramCodec.encodeBase64Compressed(h)
        #expect(text.hasPrefix("HISTFAAA"))  // 0x1c849314, as every reference writer's
        #expect(try HistogramCodec.decodeBase64(text) == h)
        #expect(try HistogramCodec.decodeBase64("  \(text)\n") == h)
        #expect(try HistogramCodec.decodeBase64(Data(HistogramCodec.encode(h)).base64EncodedString()) == h)
    }

    /// The index math is computed outside the library; it must agree with the library's own.
    @Test func layoutAgreesWithTheLibrary() throws {
        var rng = SplitMix64(seed: 11)
        let configs: [(UInt64, UInt64, SignificantDigits)] = [
            (1, Self.highest, .three), (20_000, 3_600_000_000_000, .two), (1_000, 1_000_000_000, .zero),
            (1, 2, .five), (3, 1 << 40, .four), (1, UInt64(Int64.max), .three), (1 << 20, UInt64(Int64.max), .five),
        ]
        for (lowest, highest, digits) in configs {
            var h = Histogram<UInt64>(lowestDiscernibleValue: lowest, highestTrackableValue: highest, numberOfSignificantValueDigits: digits)
            let layout = try #require(HistogramCodec.Layout(lowestDiscernibleValue: lowest, highestTrackableValue: highest, digits: digits))
            for _ in 0..<5_000 {
                let v = UInt64.random(in: 0...highest, using: &rng) >> UInt64.random(in: 0...63, using: &rng)
                #expect(layout.valueFromIndex(layout.countsIndex(for: v)) == h.lowestEquivalentForValue(v), "\(lowest) \(highest) \(digits) \(v)")
            }
            let last = layout.valueFromIndex(layout.countsLength - 1)
            let recordedLast = h.record(last)
            #expect(recordedLast, "the last index is inside the library's counts array")
            let past = layout.valueFromIndex(layout.countsLength)
            if past > last {
                let recordedPast = h.record(past)
                #expect(!recordedPast, "the index after the last is outside it")
            }
        }
    }

    // MARK: Known answers

    /// What Java writes for an empty histogram: the 40-byte header and one zero count.
    @Test func emptyEncodingBytes() {
        let expected: [UInt8] = [
            0x1c, 0x84, 0x93, 0x13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3,
            0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x0d, 0xf8, 0x47, 0x58, 0x00,
            0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x00,
        ]
        #expect(HistogramCodec.encode(Self.labHistogram()) == expected)
    }

    /// 1, 3 and 7 (×5): counts 0 1 0 1 0 0 0 5, written as Java writes them (a lone zero is 0,
    /// three zeros are -3). Python's hdrh writes every zero run negated (-1 for a lone zero);
    /// its encoding of the same histogram, captured from hdrh 0.10.8, decodes to the same.
    @Test func smallEncodingMatchesJavaAndReadsPython() throws {
        var h = Self.labHistogram()
        h.record(1)
        h.record(3)
        h.record(7, count: 5)
        let plain = HistogramCodec.encode(h)
        #expect(plain.count == 46)
        #expect(Array(plain[4..<8]) == [0, 0, 0, 6])
        #expect(Array(plain[40...]) == [0x00, 0x02, 0x00, 0x02, 0x05, 0x0a])

        let pythonPlain = try #require(hexBytes(
            "1c84931300000006000000000000000300000000000000010000000df84758003ff000000000000001020102050a"))
        #expect(try HistogramCodec.decode(pythonPlain) == h)
        #expect(try HistogramCodec.decodeBase64("HISTFAAAACZ4nJNpmSzMwMDAxgABzFCaEYh5f7hHMNh/gAowMTKxcgEAZqsEOQ==") == h)
        // hdrh writes no counts at all for an empty histogram (Java writes one zero).
        #expect(try HistogramCodec.decodeBase64("HISTFAAAAB14nJNpmSzMgADMUJoRiHl/uEcw2H+ACAAATN8EHg==") == Self.labHistogram())
    }

    /// The first interval of jHiccup-2.0.7S.logV2.hlog, the V2 log the reference implementations
    /// test against (Java-written: 20000 ns lowest discernible value, 2 digits, 1 h highest).
    /// Expected values: hdrhistogram-go's golden test for that interval (count 741, max 2768895,
    /// p50 344063, p99 409599) and HdrHistogramJS's (floor of the mean 301998); its line in the
    /// log starts "0.127,1.007,2.769,".
    static let jHiccupFirstInterval =
        "HISTFAAAAEV42pNpmSzMwMCgyAABTBDKT4GBgdnNYMcCBvsPEBEJISEuATEZMQ4uASkhIR4nrxg9v2lMaxhvMekILGZkKmcCAEf2CsI="

    @Test func decodesTheReferenceLog() throws {
        let h = try HistogramCodec.decodeBase64(Self.jHiccupFirstInterval)
        #expect(h.lowestDiscernibleValue == 20_000)
        #expect(h.highestTrackableValue == 3_600_000_000_000)
        #expect(h.numberOfSignificantValueDigits == .two)
        #expect(h.totalCount == 741)
        #expect(h.max == 2_768_895)
        #expect(h.valueAtPercentile(100) == 2_768_895)
        #expect(h.valueAtPercentile(50) == 344_063)
        #expect(h.valueAtPercentile(99) == 409_599)
        #expect(h.mean.rounded(.down) == 301_998)
        try Self.expectRoundTrip(h)

        var log = HistogramLogWriter(startTimeEpochSeconds: 1_441_812_279.474)
        log.append(start: 0.127, length: 1.007, histogram: h, tag: "A")
        let line = try #require(log.text.split(separator: "\n").last)
        #expect(line.hasPrefix("Tag=A,0.127,1.007,2.769,HISTFAAAA"))
        #expect(try HistogramCodec.decodeBase64(String(line.split(separator: ",")[4])) == h)
    }

    // MARK: Malformed input

    @Test func everyTruncationThrows() throws {
        let h = Self.randomHistogram(seed: 9, values: 300)
        for bytes in [HistogramCodec.encode(h), HistogramCodec.encodeCompressed(h)] {
            for n in 0..<bytes.count {
                #expect(throws: HistogramCodecError.self) { try HistogramCodec.decode(Array(bytes.prefix(n))) }
            }
            #expect(throws: HistogramCodecError.lengthMismatch) { try HistogramCodec.decode(bytes + [0]) }
        }
        // A cut zlib stream whose outer length agrees with what is left.
        let compressed = HistogramCodec.encodeCompressed(h)
        for n in 8..<compressed.count {
            var cut = Array(compressed.prefix(n))
            cut.replaceSubrange(4..<8, with: withUnsafeBytes(of: UInt32(n - 8).bigEndian, Array.init))
            #expect(throws: HistogramCodecError.self) { try HistogramCodec.decode(cut) }
        }
    }

    /// Flipped bits anywhere: decoding throws or yields a histogram that is safe to use.
    @Test func corruptedBytesNeverTrap() throws {
        var rng = SplitMix64(seed: 13)
        let h = Self.randomHistogram(seed: 17, values: 500)
        var decoded = 0
        for bytes in [HistogramCodec.encode(h), HistogramCodec.encodeCompressed(h)] {
            for round in 0..<1_000 {
                var b = bytes
                // Half of the rounds aim at the header, the rest anywhere.
                let span = round % 2 == 0 ? Swift.min(48, b.count) : b.count
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    b[Int.random(in: 0..<span, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
                guard let d = try? HistogramCodec.decode(b) else { continue }
                decoded += 1
                _ = (d.valueAtPercentile(50), d.valueAtPercentile(99.9), d.valueAtPercentile(100))
                if decoded % 8 == 1 {  // the iterating checks are slow in debug builds
                    _ = (d.mean, d.stdDeviation)
                    #expect(d.recordedValues().reduce(0) { $0 + $1.count } == d.totalCount)
                    #expect(try HistogramCodec.decode(HistogramCodec.encode(d)) == d)
                }
            }
        }
        #expect(decoded > 0, "some corruptions (of counts) still decode")
        for _ in 0..<2_000 {
            let cookie: [UInt8] = rng.next() % 2 == 0 ? [0x1c, 0x84, 0x93, 0x13] : [0x1c, 0x84, 0x93, 0x14]
            let junk = (0..<Int.random(in: 0...120, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? HistogramCodec.decode(cookie + junk)
        }
    }

    /// A V2 encoding with the given header fields and counts payload.
    static func v2(digits: UInt32 = 3, lowest: UInt64 = 1, highest: UInt64 = Self.highest, payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { b.append(contentsOf: $0) } }
        put(UInt32(0x1c84_9313))
        put(UInt32(payload.count))
        put(UInt32(0))
        put(digits)
        put(lowest)
        put(highest)
        put((1.0).bitPattern)
        return b + payload
    }

    static func varint(_ v: Int64) -> [UInt8] {
        var out: [UInt8] = []
        HistogramCodec.appendVarint(v, to: &out)
        return out
    }

    @Test func malformedHeadersAndCountsAreTypedErrors() {
        typealias E = HistogramCodecError
        func expectError(_ error: E, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(throws: error, sourceLocation: sourceLocation) { try HistogramCodec.decode(bytes) }
        }
        let one = Self.varint(1)
        expectError(.truncated, [])
        expectError(.truncated, [0x1c, 0x84])
        expectError(.unknownCookie(0x1c84_9301), [0x1c, 0x84, 0x93, 0x01] + [UInt8](repeating: 0, count: 60))
        expectError(.unknownCookie(0xdead_beef), [0xde, 0xad, 0xbe, 0xef])
        expectError(.invalidParameters, Self.v2(digits: 6, payload: one))
        expectError(.invalidParameters, Self.v2(lowest: 0, payload: one))
        expectError(.invalidParameters, Self.v2(lowest: 1_000, highest: 1_999, payload: one))
        expectError(.invalidParameters, Self.v2(highest: UInt64(Int64.max) + 1, payload: one))
        expectError(.invalidParameters, Self.v2(digits: 5, lowest: 1 << 50, highest: 1 << 52, payload: one))
        // A payload length larger than any counts array of these parameters.
        var huge = Self.v2(payload: one)
        huge.replaceSubrange(4..<8, with: [0x7f, 0xff, 0xff, 0xff])
        expectError(.lengthMismatch, huge)
        expectError(.truncated, Self.v2(payload: [0x80, 0x80]))  // unterminated varint
        let length = Int64(HistogramCodec.Layout(lowestDiscernibleValue: 1, highestTrackableValue: Self.highest, digits: .three)!.countsLength)
        expectError(.countOutOfRange, Self.v2(payload: Self.varint(-length) + one))
        expectError(.countOutOfRange, Self.v2(payload: Self.varint(.min) + one))
        expectError(.countOutOfRange, Self.v2(payload: Self.varint(.min) + Self.varint(0)))
        #expect((try? HistogramCodec.decode(Self.v2(payload: one + Self.varint(.min)))) != nil, "a trailing zero run may overshoot")
        expectError(.countTooLarge, Self.v2(payload: Self.varint(.max) + Self.varint(.max)))
        expectError(.countTooLarge, Self.v2(payload: Self.varint(-20_000) + Self.varint(1 << 40)))  // count × value
        #expect(throws: E.invalidBase64) { try HistogramCodec.decodeBase64("not base64!") }
    }

    // MARK: .hlog

    @Test func logWriterFormat() throws {
        var h = Self.labHistogram()
        h.record(1_500_000)
        h.record(2_768_895)
        var log = HistogramLogWriter(startTimeEpochSeconds: 1_441_812_279.474)
        log.append(start: 0, length: 1, histogram: h)
        log.append(start: 1, length: 0.5, histogram: Self.labHistogram(), tag: "produce.intended")
        let lines = log.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 7)
        #expect(lines[0] == "#[Histogram log format version 1.3]")
        #expect(lines[1] == "#[StartTime: 1441812279.474 (seconds since epoch), Wed Sep 09 15:24:39 UTC 2015]")
        #expect(lines[2] == "#[BaseTime: 1441812279.474 (seconds since epoch)]")
        #expect(lines[3] == "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")
        #expect(lines[4].hasPrefix("0.000,1.000,2.769,HISTFAAAA"))
        #expect(lines[5].hasPrefix("Tag=produce.intended,1.000,0.500,0.000,HISTFAAAA"))
        #expect(lines[6] == "")
        #expect(try HistogramCodec.decodeBase64(String(lines[4].split(separator: ",")[3])) == h)
    }

    // MARK: Python's hdrh

    static let pythonCheck = """
        import json, sys
        from hdrh.histogram import HdrHistogram
        from hdrh.log import HistogramLogReader
        PERCENTILES = [50.0, 90.0, 99.0, 99.9, 100.0]
        def describe(h):
            return {"total": h.get_total_count(), "max": h.get_max_value(), "lowest": h.lowest_trackable_value,
                    "highest": h.highest_trackable_value, "digits": h.significant_figures,
                    "percentiles": [h.get_value_at_percentile(p) for p in PERCENTILES]}
        b64_path, hlog_path, values_path = sys.argv[1:4]
        out = {"b64": describe(HdrHistogram.decode(open(b64_path).read().strip()))}
        reader = HistogramLogReader(hlog_path, HdrHistogram(1, 60000000000, 3))
        intervals = []
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            d = describe(h)
            d["tag"] = h.get_tag()
            d["start_ms"] = h.get_start_time_stamp()
            d["end_ms"] = h.get_end_time_stamp()
            intervals.append(d)
        out["intervals"] = intervals
        out["start_time_sec"] = reader.get_start_time_sec()
        py = HdrHistogram(1, 60000000000, 3)
        for line in open(values_path):
            value, count = line.split()
            py.record_value(int(value), int(count))
        out["python_b64"] = py.encode().decode()
        print(json.dumps(out))
        """

    struct PythonHistogram: Decodable {
        var total: UInt64
        var max: UInt64
        var lowest: UInt64
        var highest: UInt64
        var digits: Int
        var percentiles: [UInt64]
        var tag: String?
        var start_ms: Double?
        var end_ms: Double?
    }

    struct PythonReport: Decodable {
        var b64: PythonHistogram
        var intervals: [PythonHistogram]
        var start_time_sec: Double
        var python_b64: String
    }

    /// Runs python3 (from PATH) with arguments; nil (and a recorded issue) when it fails.
    static func python(_ arguments: [String], in dir: URL) throws -> String? {
        let out = dir.appendingPathComponent("python.out")
        let err = dir.appendingPathComponent("python.err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + arguments
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        do { try p.run() } catch {
            Issue.record("cannot run python3 (needed for the hdrh cross-check): \(error)")
            return nil
        }
        p.waitUntilExit()
        let stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        guard p.terminationStatus == 0 else {
            Issue.record("python3 \(arguments.first == "-c" ? "-c …" : arguments.joined(separator: " ")) exited \(p.terminationStatus): \(stderr)")
            return nil
        }
        return try String(contentsOf: out, encoding: .utf8)
    }

    /// Python's `hdrh` reads the lab's base64 histogram and .hlog with the same counts and
    /// percentiles, and the lab reads `hdrh`'s encoding. Requires the first python3 on PATH to
    /// have the `hdrhistogram` package (`pip install hdrhistogram`); fails, not skips, without it.
    @Test func pythonHdrhAgrees() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apus-hdrh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        guard try Self.python(["-c", "import hdrh"], in: dir) != nil else {
            Issue.record("python3 cannot import hdrh: install it with `pip install hdrhistogram`")
            return
        }

        // Total counts that are multiples of 10,000 make every tested percentile's rank an
        // integer, where hdrh's rounding (nearest) and the Swift library's (up) agree.
        var rng = SplitMix64(seed: 21)
        func histogram(_ n: Int) -> Histogram<UInt64> {
            var h = Self.labHistogram()
            for _ in 0..<n {
                h.record(Swift.min(UInt64(exp2(Double.random(in: 0...log2(Double(Self.highest)), using: &rng))), Self.highest))
            }
            return h
        }
        let main = histogram(30_000)
        let intervals = [histogram(10_000), histogram(20_000), Self.labHistogram()]
        let tags: [String?] = [nil, "produce.intended", "e2e"]

        try HistogramCodec.encodeBase64Compressed(main).write(to: dir.appendingPathComponent("h.b64"), atomically: true, encoding: .utf8)
        var log = HistogramLogWriter(startTimeEpochSeconds: 1_700_000_000.25)
        for (i, h) in intervals.enumerated() { log.append(start: Double(i) * 1.5, length: 1.5, histogram: h, tag: tags[i]) }
        try log.text.write(to: dir.appendingPathComponent("run.hlog"), atomically: true, encoding: .utf8)
        let values = main.recordedValues().map { "\($0.value) \($0.count)\n" }.joined()
        try values.write(to: dir.appendingPathComponent("values.txt"), atomically: true, encoding: .utf8)

        let output = try #require(try Self.python(
            ["-c", Self.pythonCheck] + ["h.b64", "run.hlog", "values.txt"].map { dir.appendingPathComponent($0).path }, in: dir))
        let report = try JSONDecoder().decode(PythonReport.self, from: Data(output.utf8))

        func expectSame(_ py: PythonHistogram, _ h: Histogram<UInt64>, _ what: String) {
            #expect(py.total == h.totalCount, "\(what): total")
            #expect(py.max == h.max, "\(what): max")
            #expect(py.lowest == h.lowestDiscernibleValue && py.highest == h.highestTrackableValue && py.digits == 3, "\(what): parameters")
            for (p, value) in zip([50.0, 90.0, 99.0, 99.9, 100.0], py.percentiles) {
                let swift = h.valueAtPercentile(p)
                #expect(h.valuesAreEquivalent(value, swift), "\(what): p\(p) hdrh \(value), Swift \(swift)")
                #expect(value == (p == 100 ? h.max : h.highestEquivalentForValue(swift)), "\(what): p\(p)")
            }
        }
        expectSame(report.b64, main, "base64")
        try #require(report.intervals.count == intervals.count, "hdrh read \(report.intervals.count) intervals")
        #expect(report.start_time_sec == 1_700_000_000.25)
        for (i, py) in report.intervals.enumerated() {
            expectSame(py, intervals[i], "interval \(i)")
            #expect(py.tag == tags[i], "interval \(i): tag")
            let start = (1_700_000_000.25 + Double(i) * 1.5) * 1000
            #expect(abs((py.start_ms ?? 0) - start) < 1 && abs((py.end_ms ?? 0) - (start + 1500)) < 1, "interval \(i): times")
        }
        #expect(try HistogramCodec.decodeBase64(report.python_b64) == main, "hdrh's own encoding of the same counts")
    }
}

/// Bytes from hex text, nil if it is not hex.
private func hexBytes(_ hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    return stride(from: 0, to: digits.count, by: 2).compactMap { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16) }
}
