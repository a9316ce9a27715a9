import KafkaProtocol
import KafkaWire

/// Writes a ProduceRequest (v3–v11) for one topic around finished record batches by hand, so
/// the batch bytes are never copied. The frame is: the header (size, request header, body up
/// to the partition count), then per partition its head (index, records length; before every
/// partition but the first, the previous one's empty tagged fields when flexible) and its
/// batch, then `suffixLength` bytes of empty tagged-field sections (flexible only). Same bytes
/// as the generated `ProduceRequest` encoder (tested).
public enum ProduceRequestEncoder {
    /// Three empty tagged-field sections: partition, topic, request (flexible versions).
    public static let flexibleSuffix: [UInt8] = [0, 0, 0]

    public static func suffixLength(version: Int16) -> Int { ProduceRequest.isFlexible(version) ? 3 : 0 }

    /// Clears `w` and writes everything before the first partition; the size is patched by
    /// `patchSize` once the partitions are known.
    public static func writeHeader(
        into w: inout WireWriter, version: Int16, correlationId: Int32, clientId: String,
        acks: Int16, timeoutMs: Int32, topic: String, partitions: Int
    ) {
        precondition(version >= 3, "Produce v3+ carries RecordBatch v2")
        w.bytes.removeAll(keepingCapacity: true)
        let flexible = ProduceRequest.isFlexible(version)
        w.writeInt32(0)  // size, patched by patchSize
        RequestHeader(requestApiKey: ProduceRequest.apiKey, requestApiVersion: version, correlationId: correlationId, clientId: clientId)
            .encode(into: &w, version: ProduceRequest.requestHeaderVersion(version))
        w.writeNullableString(nil, compact: flexible)  // transactional id
        w.writeInt16(acks)
        w.writeInt32(timeoutMs)
        w.writeLength(1, compact: flexible, wide: true)  // one topic
        w.writeString(topic, compact: flexible)
        w.writeLength(partitions, compact: flexible, wide: true)
    }

    /// Appends a partition's head: what goes between the previous batch (none if `first`) and
    /// this partition's batch of `recordsLength` bytes.
    public static func writePartitionHead(into w: inout WireWriter, version: Int16, partition: Int32, recordsLength: Int, first: Bool) {
        let flexible = ProduceRequest.isFlexible(version)
        if flexible && !first { w.writeInt8(0) }  // the previous partition's tagged fields
        w.writeInt32(partition)
        w.writeLength(recordsLength, compact: flexible, wide: true)
    }

    /// Sets the frame's size: what `w` holds, `recordsLength` bytes of batches in all, and the suffix.
    public static func patchSize(_ w: inout WireWriter, version: Int16, recordsLength: Int) {
        let size = Int32(w.count - 4 + recordsLength + suffixLength(version: version)).bigEndian
        withUnsafeBytes(of: size) { s in for i in 0..<4 { w.bytes[i] = s[i] } }
    }

    /// Writes the whole prefix of a one-partition request into `w` (which it clears first).
    public static func writePrefix(
        into w: inout WireWriter, version: Int16, correlationId: Int32, clientId: String,
        acks: Int16, timeoutMs: Int32, topic: String, partition: Int32, recordsLength: Int
    ) {
        writeHeader(into: &w, version: version, correlationId: correlationId, clientId: clientId, acks: acks, timeoutMs: timeoutMs,
                    topic: topic, partitions: 1)
        writePartitionHead(into: &w, version: version, partition: partition, recordsLength: recordsLength, first: true)
        patchSize(&w, version: version, recordsLength: recordsLength)
    }
}
