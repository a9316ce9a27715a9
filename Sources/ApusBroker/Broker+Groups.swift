import ApusStorage
import KafkaProtocol
import KafkaWire

/// Where a group response goes: the request it answers.
struct GroupToken {
    var connection: ConnectionID
    var sequence: UInt64
    var correlationId: Int32
    var headerVersion: Int16
}

/// A group response that waits for its offset commits to be written (and synced per the
/// durability mode) in the internal offsets log — in cluster mode, in each offsets partition it
/// wrote, up to the partition's high watermark (its in-sync replicas have them).
struct PendingGroupWrite {
    var output: GroupOutput<GroupToken>
    /// Each offsets log written, and the last offset written there.
    var writes: [(log: PartitionLog, lastOffset: Int64)]
    /// When it fails with COORDINATOR_NOT_AVAILABLE (cluster mode: `offsets.commit.timeout.ms`).
    var deadlineMs: Int64?
}

extension Broker {
    static let offsetsTopic = consumerOffsetsTopic

    /// Opens the internal offsets log and replays the commits it holds into the coordinator.
    func loadGroupOffsets(nowMs: Int64) throws(StorageError) {
        let log = try logs.openLog(TopicPartition(Broker.offsetsTopic, 0), config: config.log, nowMs: nowMs)
        shard.adopt(log)
        offsetsLog = log
        var offset = log.logStartOffset
        var replayed = 0
        while offset < log.logEndOffset, let (next, records) = try replayOffsets(from: log, at: offset, maxBytes: 8 << 20) {
            replayed += records
            offset = next
        }
        if replayed > 0 { logger.info("replayed committed offsets", metadata: ["records": "\(replayed)"]) }
    }

    /// Replays the committed offsets in up to `maxBytes` of `log` from `offset` into the
    /// coordinator; returns the offset after the last batch read and the records replayed, nil
    /// when nothing could be read there.
    func replayOffsets(from log: PartitionLog, at offset: Int64, maxBytes: Int) throws(StorageError) -> (next: Int64, records: Int)? {
        let chunk = try log.readCopy(from: offset, maxBytes: maxBytes)
        var next = offset, replayed = 0
        chunk.withUnsafeBytes { raw in
            var batches = RecordBatchSequence(raw)
            while let view = try? batches.next() {
                next = view.lastOffset + 1
                guard let batch = try? RecordBatch(view) else { continue }
                for record in batch.records {
                    if let value = record.value, (try? groups.replay(encoded: value)) != nil { replayed += 1 }
                }
            }
        }
        return next > offset ? (next, replayed) : nil
    }

    /// Sends the coordinator's outputs where they belong; returns the caller's own outcome.
    func route(_ outputs: [GroupOutput<GroupToken>], caller: RequestContext?, nowMs: Int64) -> HandleOutcome {
        var mine: HandleOutcome = .pending
        for output in outputs {
            let token = output.token
            var frame = encode(output)
            let isCaller = caller.map { $0.connection == token.connection && $0.sequence == token.sequence } ?? false
            if !output.recordsToPersist.isEmpty {
                if let write = persist(output, nowMs: nowMs) {
                    pendingGroupWrites.append(write)
                    continue
                }
                groups.revert(output)  // the offsets log refused the write
                frame = encode(Broker.failedCommit(output))
            }
            if isCaller {
                mine = .respond(frame)
            } else {
                groupCompletions.append(Completion(connection: token.connection, sequence: token.sequence, correlationId: token.correlationId, frame: frame))
            }
        }
        return mine
    }

    /// Stages an output's records as one batch per offsets log (one log on a single broker; in
    /// cluster mode the partition of each record's group, which this broker leads).
    private func persist(_ output: GroupOutput<GroupToken>, nowMs: Int64) -> PendingGroupWrite? {
        var byLog: [(log: PartitionLog, records: [OffsetCommitRecord])] = []
        for record in output.recordsToPersist {
            guard let log = offsetsLog(for: record.groupId) else { return nil }
            if let i = byLog.firstIndex(where: { $0.log === log }) { byLog[i].records.append(record) } else { byLog.append((log, [record])) }
        }
        var write = PendingGroupWrite(output: output, writes: [], deadlineMs: cluster == nil ? nil : nowMs + config.offsetCommitTimeoutMs)
        for (log, records) in byLog {
            let encoded = records.map { ($0.groupId, $0.encoded()) }
            var builder = RecordBatchBuilder(capacity: 128 + encoded.reduce(0) { $0 + $1.0.utf8.count + $1.1.count + 32 })
            builder.reset(baseTimestamp: nowMs)
            for (group, value) in encoded {
                _ = Array(group.utf8).withUnsafeBytes { key in value.withUnsafeBytes { builder.append(key: key, value: $0) } }
            }
            guard let finished = try? builder.finish() else { break }
            let owned = UnsafeMutableRawBufferPointer.allocate(byteCount: finished.count, alignment: 16)
            owned.copyMemory(from: finished)
            do {
                let info = try shard.append(owned, to: log, requireDurable: true, nowMs: nowMs)
                write.writes.append((log, info.lastOffset))
                stagedBuffers.append(owned)
                if cluster != nil { markAdvanced(log) }  // followers' long polls wake for it
            } catch {
                owned.deallocate()
                logger.error("could not persist committed offsets", metadata: ["error": "\(error)", "log": "\(log.topicPartition)"])
                break
            }
        }
        // Some batches staged is still a failure: the client commits again.
        return write.writes.count == byLog.count ? write : nil
    }

    /// After the commit: answers offset commits that are written (and synced as required), and
    /// whatever the coordinator's timers completed.
    func completeGroups(nowMs: Int64, into completions: inout [Completion]) {
        if !pendingGroupWrites.isEmpty {
            var still: [PendingGroupWrite] = []
            for write in pendingGroupWrites {
                let token = write.output.token
                let done = write.writes.allSatisfy { log, last in
                    log.highWatermark > last && (log.config.durability == .pageCache || log.durableOffset > last)
                }
                let failed = write.writes.contains { log, last in log.failure != nil || log.logEndOffset <= last && log.nextOffset <= last }
                let moved = write.writes.contains { log, _ in !leads(log.topicPartition.topic, log.topicPartition.partition) }
                if done {
                    completions.append(Completion(connection: token.connection, sequence: token.sequence, correlationId: token.correlationId, frame: encode(write.output)))
                } else if failed || moved || write.deadlineMs.map({ nowMs >= $0 }) == true {
                    // Not written, or not known to be on the in-sync replicas in time: forget the
                    // commit and answer with a retriable error so that the client commits again
                    // (NOT_COORDINATOR when the offsets partition's leadership moved: the group
                    // is not here any more, nothing to revert).
                    if !moved { groups.revert(write.output) }
                    completions.append(Completion(connection: token.connection, sequence: token.sequence, correlationId: token.correlationId,
                                                  frame: encode(Broker.failedCommit(write.output, moved ? .notCoordinator : .coordinatorNotAvailable))))
                    logger.warning("offset commit not persisted", metadata: ["connection": "\(token.connection)",
                                                                            "why": "\(failed ? "write failed" : moved ? "coordinator moved" : "replicas timed out")"])
                } else {
                    still.append(write)
                }
            }
            pendingGroupWrites = still
        }
        _ = route(groups.tick(nowMs: nowMs), caller: nil, nowMs: nowMs)
        if index == 0 { consumerGroups.tick(nowMs: nowMs) }
        completions += groupCompletions
        groupCompletions.removeAll()
    }

    func encode(_ output: GroupOutput<GroupToken>) -> ResponseFrame {
        ResponseFrame(correlationId: output.token.correlationId, headerVersion: output.token.headerVersion) {
            output.response.encode(into: &$0, version: output.version)
        }
    }

    /// The same answer with `code` (COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR, both retriable)
    /// wherever it said success: an OffsetCommit, DeleteGroups or OffsetDelete whose records the
    /// offsets log refused (the caller has reverted the change in the coordinator).
    static func failedCommit(_ output: GroupOutput<GroupToken>, _ code: ErrorCode = .coordinatorNotAvailable) -> GroupOutput<GroupToken> {
        let unavailable = code.rawValue
        var failed = output
        failed.recordsToPersist = []
        switch output.response {
        case .offsetCommit(var response):
            for t in response.topics.indices {
                for p in response.topics[t].partitions.indices { response.topics[t].partitions[p].errorCode = unavailable }
            }
            failed.response = .offsetCommit(response)
        case .deleteGroups(var response):
            for i in response.results.indices where response.results[i].errorCode == 0 { response.results[i].errorCode = unavailable }
            failed.response = .deleteGroups(response)
        case .offsetDelete(var response):
            response.errorCode = unavailable
            failed.response = .offsetDelete(response)
        default:
            break
        }
        return failed
    }

    func groupToken(_ context: RequestContext) -> GroupToken {
        GroupToken(connection: context.connection, sequence: context.sequence, correlationId: context.correlationId,
                   headerVersion: context.responseHeaderVersion)
    }
}
