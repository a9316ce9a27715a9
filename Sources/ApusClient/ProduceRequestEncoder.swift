import KafkaProtocol
import KafkaWire

/// Writes a one-partition ProduceRequest (v3–v11) around a finished record batch by hand, so
/// the batch bytes are never copied: `prefix` (size, header, body up to the records length),
/// then the batch, then `suffixLength` bytes of empty tagged-field sections (flexible only).
/// Same bytes as the generated `ProduceRequest` encoder (tested).
public enum ProduceRequestEncoder {
    /// Three empty tagged-field sections: partition, topic, request (flexible versions).
    public static let flexibleSuffix: [UInt8] = [0, 0, 0]

    public static func suffixLength(version: Int16) -> Int { ProduceRequest.isFlexible(version) ? 3 : 0 }

    /// Writes the frame prefix into `w` (which it clears first).
    public static func writePrefix(
        into w: inout WireWriter, version: Int16, correlationId: Int32, clientId: String,
        acks: Int16, timeoutMs: Int32, topic: String, partition: Int32, recordsLength: Int
    ) {
        precondition(version >= 3, "Produce v3+ carries RecordBatch v2")
        w.bytes.removeAll(keepingCapacity: true)
        let flexible = ProduceRequest.isFlexible(version)
        w.writeInt32(0)  // size, patched below
        RequestHeader(requestApiKey: ProduceRequest.apiKey, requestApiVersion: version, correlationId: correlationId, clientId: clientId)
            .encode(into: &w, version: ProduceRequest.requestHeaderVersion(version))
        w.writeNullableString(nil, compact: flexible)  // transactional id
        w.writeInt16(acks)
        w.writeInt32(timeoutMs)
        w.writeLength(1, compact: flexible, wide: true)  // one topic
        w.writeString(topic, compact: flexible)
        w.writeLength(1, compact: flexible, wide: true)  // one partition
        w.writeInt32(partition)
        w.writeLength(recordsLength, compact: flexible, wide: true)
        let size = Int32(w.count - 4 + recordsLength + suffixLength(version: version)).bigEndian
        withUnsafeBytes(of: size) { s in for i in 0..<4 { w.bytes[i] = s[i] } }
    }
}
