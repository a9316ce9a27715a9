import ApusClient
import Testing

@Suite struct Murmur2Tests {
    /// Values of the Java client's `Utils.murmur2` (Kafka's UtilsTest lists the first six;
    /// all were recomputed here with an independent transcription of the Java algorithm).
    static let known: [(String, Int32)] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107),
        ("", 275_646_681),
        ("a", -1_563_381_124),
        ("key-1", 193_331_640),
    ]

    @Test(arguments: Self.known.indices)
    func javaValues(_ i: Int) {
        let (text, expected) = Self.known[i]
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBytes { murmur2($0) } == expected, "murmur2(\"\(text)\")")
    }

    @Test func partitionIsToPositiveModulo() {
        // toPositive(-973932308) = 1173551340; % 4 = 0, % 7 = 1173551340 % 7.
        let key = Array("21".utf8)
        #expect(key.withUnsafeBytes { murmur2Partition(key: $0, partitions: 4) } == 0)
        #expect(key.withUnsafeBytes { murmur2Partition(key: $0, partitions: 7) } == 1_173_551_340 % 7)
        let foobar = Array("foobar".utf8)  // -790332482 & 0x7fffffff = 1357151166
        #expect(foobar.withUnsafeBytes { murmur2Partition(key: $0, partitions: 10) } == 1_357_151_166 % 10)
    }
}
