import KafkaProtocol
import KafkaWire
import Testing

@testable import ApusBroker

// MARK: - GroupHarness

private typealias GroupOut = GroupOutput<String>

private enum GroupCode {
    static let none: Int16 = 0
    static let offsetMetadataTooLarge: Int16 = 12
    static let illegalGeneration: Int16 = 22
    static let inconsistentGroupProtocol: Int16 = 23
    static let invalidGroupId: Int16 = 24
    static let unknownMemberId: Int16 = 25
    static let invalidSessionTimeout: Int16 = 26
    static let rebalanceInProgress: Int16 = 27
    static let memberIdRequired: Int16 = 79
    static let nonEmptyGroup: Int16 = 68
    static let groupIdNotFound: Int16 = 69
    static let groupSubscribedToTopic: Int16 = 86
    static let fencedInstanceId: Int16 = 82
}

private typealias GroupProtocols = [(name: String, metadata: [UInt8])]

/// Drives a coordinator with a fake clock; every request gets a unique token so tests can see
/// exactly which parked responses an event completed.
private struct GroupHarness {
    var coordinator: GroupCoordinator<String>
    var now: Int64 = 1_000_000
    var requests = 0
    let group = "g"

    init(initialDelayMs: Int32 = 0) {
        coordinator = GroupCoordinator(
            config: GroupCoordinatorConfig(initialRebalanceDelayMs: initialDelayMs),
            memberIdGenerator: { clientId, sequence in "\(clientId)-\(sequence)" })
    }

    mutating func token(_ name: String) -> String {
        requests += 1
        return "\(name)#\(requests)"
    }

    mutating func join(
        _ client: String, memberId: String = "", version: Int16 = 5, protocols: GroupProtocols = [("range", [1])],
        type: String = "consumer", session: Int32 = 10_000, rebalance: Int32 = 30_000, group: String? = nil
    ) -> (token: String, outputs: [GroupOut]) {
        let token = token("join-\(client)")
        let request = JoinGroupRequest(
            groupId: group ?? self.group, sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, memberId: memberId,
            protocolType: type, protocols: protocols.map { .init(name: $0.name, metadata: $0.metadata) })
        return (token, coordinator.handleJoinGroup(request, version: version, clientId: client, token: token, nowMs: now))
    }

    /// JoinGroup v4+ as a client does it: empty id → MEMBER_ID_REQUIRED → join again with the id.
    mutating func joinWithMemberIdRequired(
        _ client: String, protocols: GroupProtocols = [("range", [1])], session: Int32 = 10_000, rebalance: Int32 = 30_000
    ) -> (memberId: String, token: String, outputs: [GroupOut]) {
        let first = join(client, protocols: protocols, session: session, rebalance: rebalance)
        let rejected = first.outputs.join(first.token)
        #expect(first.outputs.count == 1)
        #expect(rejected?.errorCode == GroupCode.memberIdRequired)
        let memberId = rejected?.memberId ?? ""
        #expect(memberId.hasPrefix("\(client)-"))
        let second = join(client, memberId: memberId, protocols: protocols, session: session, rebalance: rebalance)
        return (memberId, second.token, second.outputs)
    }

    mutating func sync(
        _ memberId: String, generation: Int32, version: Int16 = 3, assignments: [String: [UInt8]] = [:]
    ) -> (token: String, outputs: [GroupOut]) {
        let token = token("sync-\(memberId)")
        let request = SyncGroupRequest(
            groupId: group, generationId: generation, memberId: memberId,
            assignments: assignments.sorted { $0.key < $1.key }.map { .init(memberId: $0.key, assignment: $0.value) })
        return (token, coordinator.handleSyncGroup(request, version: version, token: token, nowMs: now))
    }

    mutating func heartbeat(_ memberId: String, generation: Int32, group: String? = nil) -> Int16? {
        let token = token("hb-\(memberId)")
        let request = HeartbeatRequest(groupId: group ?? self.group, generationId: generation, memberId: memberId)
        let outputs = coordinator.handleHeartbeat(request, version: 3, token: token, nowMs: now)
        #expect(outputs.count == 1)
        return outputs.heartbeat(token)?.errorCode
    }

    mutating func leave(_ memberId: String, version: Int16 = 1) -> (token: String, outputs: [GroupOut]) {
        let token = token("leave-\(memberId)")
        let request = LeaveGroupRequest(groupId: group, memberId: memberId)
        return (token, coordinator.handleLeaveGroup(request, version: version, token: token, nowMs: now))
    }

    mutating func commit(
        _ offsets: [(topic: String, partition: Int32, offset: Int64, metadata: String?)],
        memberId: String = "", generation: Int32 = -1, version: Int16 = 7, group: String? = nil
    ) -> GroupOut {
        let token = token("commit")
        var byTopic: [(String, [OffsetCommitRequest.OffsetCommitRequestPartition])] = []
        for o in offsets {
            let p = OffsetCommitRequest.OffsetCommitRequestPartition(
                partitionIndex: o.partition, committedOffset: o.offset, committedLeaderEpoch: 5, committedMetadata: o.metadata)
            if let i = byTopic.firstIndex(where: { $0.0 == o.topic }) { byTopic[i].1.append(p) } else { byTopic.append((o.topic, [p])) }
        }
        let request = OffsetCommitRequest(
            groupId: group ?? self.group, generationIdOrMemberEpoch: generation, memberId: memberId,
            topics: byTopic.map { .init(name: $0.0, partitions: $0.1) })
        let outputs = coordinator.handleOffsetCommit(request, version: version, token: token, nowMs: now)
        #expect(outputs.count == 1)
        #expect(outputs.first?.token == token)
        return outputs[0]
    }

    /// Error codes of a commit's partitions, in request order.
    mutating func commitCodes(
        _ offsets: [(topic: String, partition: Int32, offset: Int64, metadata: String?)],
        memberId: String = "", generation: Int32 = -1, version: Int16 = 7, group: String? = nil
    ) -> [Int16] {
        guard case .offsetCommit(let r) = commit(offsets, memberId: memberId, generation: generation, version: version, group: group).response else {
            Issue.record("not an OffsetCommit response")
            return []
        }
        return r.topics.flatMap { $0.partitions.map(\.errorCode) }
    }

    func fetch(_ topics: [(String, [Int32])]?, version: Int16 = 5, group: String? = nil) -> OffsetFetchResponse? {
        let request = OffsetFetchRequest(groupId: group ?? self.group, topics: topics?.map { .init(name: $0.0, partitionIndexes: $0.1) })
        let outputs = coordinator.handleOffsetFetch(request, version: version, token: "fetch")
        guard outputs.count == 1, case .offsetFetch(let r) = outputs[0].response else { return nil }
        return r
    }

    mutating func advance(by ms: Int64) -> [GroupOut] {
        now += ms
        return coordinator.tick(nowMs: now)
    }

    var state: GroupState? { coordinator.describeGroup(group)?.state }
    var generation: Int32? { coordinator.describeGroup(group)?.generationId }
    var memberIds: [String] { coordinator.describeGroup(group)?.members.map(\.memberId) ?? [] }

    /// Three consumers join with the v5 MEMBER_ID_REQUIRED flow inside the initial delay, then
    /// sync; returns their ids in join order (the first is the leader) and the generation.
    mutating func stableGroupOfThree(
        session: Int32 = 10_000, rebalance: Int32 = 30_000, metadata: (String) -> [UInt8] = { Array($0.utf8) }
    ) -> (ids: [String], generation: Int32) {
        var ids: [String] = []
        var tokens: [String] = []
        for client in ["a", "b", "c"] {
            let j = joinWithMemberIdRequired(client, protocols: [("range", metadata(client))], session: session, rebalance: rebalance)
            #expect(j.outputs.isEmpty)
            ids.append(j.memberId)
            tokens.append(j.token)
        }
        var joined = advance(by: 3_000)
        if joined.isEmpty { joined = advance(by: 3_000) }
        #expect(Set(joined.map(\.token)) == Set(tokens))
        let generation = joined.join(tokens[0])?.generationId ?? -1
        #expect(state == .completingRebalance)
        for id in ids.dropFirst() {
            #expect(sync(id, generation: generation).outputs.isEmpty)
        }
        let leaderSync = sync(ids[0], generation: generation, assignments: Dictionary(uniqueKeysWithValues: ids.map { ($0, Array($0.utf8)) }))
        #expect(leaderSync.outputs.count == 3)
        #expect(state == .stable)
        return (ids, generation)
    }
}

extension Array where Element == GroupOutput<String> {
    fileprivate func join(_ token: String) -> JoinGroupResponse? {
        for o in self where o.token == token { if case .joinGroup(let r) = o.response { return r } }
        return nil
    }

    fileprivate func sync(_ token: String) -> SyncGroupResponse? {
        for o in self where o.token == token { if case .syncGroup(let r) = o.response { return r } }
        return nil
    }

    fileprivate func heartbeat(_ token: String) -> HeartbeatResponse? {
        for o in self where o.token == token { if case .heartbeat(let r) = o.response { return r } }
        return nil
    }

    fileprivate func leave(_ token: String) -> LeaveGroupResponse? {
        for o in self where o.token == token { if case .leaveGroup(let r) = o.response { return r } }
        return nil
    }
}

/// Returns the offset fetch partitions as (topic, partition, offset, metadata) for easy comparison.
private func flattenFetch(_ r: OffsetFetchResponse?) -> [String] {
    guard let r else { return ["no response"] }
    return r.topics.flatMap { t in t.partitions.map { "\(t.name)/\($0.partitionIndex)=\($0.committedOffset):\($0.metadata ?? "nil"):e\($0.errorCode)" } }
}

// MARK: - Tests

@Suite struct GroupCoordinatorTests {
    // MARK: Joining

    @Test func threeMembersJoinWithMemberIdRequiredAndSync() {
        var h = GroupHarness(initialDelayMs: 3_000)
        var ids: [String] = []
        var tokens: [String] = []
        for (client, meta) in [("a", [UInt8](arrayLiteral: 0xA)), ("b", [0xB]), ("c", [0xC])] {
            let j = h.joinWithMemberIdRequired(client, protocols: [("range", meta), ("roundrobin", meta + meta)])
            #expect(j.outputs.isEmpty, "the rejoin is parked until the join phase ends")
            ids.append(j.memberId)
            tokens.append(j.token)
            _ = h.advance(by: 100)
        }
        #expect(Set(ids).count == 3)
        #expect(h.state == .preparingRebalance)

        // The initial delay (3 s) is extended once because members kept arriving, then ends.
        #expect(h.advance(by: 2_800).isEmpty)
        var joined = h.advance(by: 3_000)
        if joined.isEmpty { joined = h.advance(by: 3_000) }  // the delay is extended once: b joined during it
        #expect(joined.count == 3)
        let leader = joined.join(tokens[0])
        #expect(leader?.errorCode == GroupCode.none)
        #expect(leader?.generationId == 1)
        #expect(leader?.leader == ids[0])
        #expect(leader?.memberId == ids[0])
        #expect(leader?.protocolName == "range")
        #expect(leader?.members.map(\.memberId) == ids)
        #expect(leader?.members.map(\.metadata) == [[0xA], [0xB], [0xC]])
        for (i, token) in tokens.enumerated().dropFirst() {
            let follower = joined.join(token)
            #expect(follower?.errorCode == GroupCode.none)
            #expect(follower?.memberId == ids[i])
            #expect(follower?.leader == ids[0])
            #expect(follower?.generationId == 1)
            #expect(follower?.members.isEmpty == true, "followers get no member list")
        }
        #expect(h.state == .completingRebalance)

        // Followers' SyncGroup waits for the leader's.
        let syncB = h.sync(ids[1], generation: 1)
        let syncC = h.sync(ids[2], generation: 1)
        #expect(syncB.outputs.isEmpty && syncC.outputs.isEmpty)
        #expect(h.heartbeat(ids[1], generation: 1) == GroupCode.none, "heartbeats are fine while awaiting assignments")
        let syncA = h.sync(ids[0], generation: 1, assignments: [ids[0]: [1], ids[1]: [2], ids[2]: [3]])
        #expect(syncA.outputs.count == 3)
        #expect(syncA.outputs.sync(syncA.token)?.assignment == [1])
        #expect(syncA.outputs.sync(syncB.token)?.assignment == [2])
        #expect(syncA.outputs.sync(syncC.token)?.assignment == [3])
        #expect(syncA.outputs.allSatisfy { $0.version == 3 })
        #expect(h.state == .stable)

        for id in ids { #expect(h.heartbeat(id, generation: 1) == GroupCode.none) }
        // A late SyncGroup in Stable gets the assignment at once.
        let late = h.sync(ids[2], generation: 1)
        #expect(late.outputs.sync(late.token)?.assignment == [3])
    }

    @Test func membersBelowV4GetTheirIdAtOnce() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let a = h.join("a", version: 0, session: 10_000)
        let b = h.join("b", version: 1)
        let c = h.join("c", version: 3)
        #expect(a.outputs.isEmpty && b.outputs.isEmpty && c.outputs.isEmpty, "no MEMBER_ID_REQUIRED below v4")
        #expect(h.memberIds == ["a-0", "b-1", "c-2"])
        var joined = h.advance(by: 3_000)
        if joined.isEmpty { joined = h.advance(by: 3_000) }  // the delay is extended once: b joined during it + h.advance(by: 3_000)
        #expect(joined.count == 3)
        #expect(joined.join(a.token)?.memberId == "a-0")
        #expect(joined.join(a.token)?.members.count == 3)
        #expect(joined.join(b.token)?.memberId == "b-1")
        #expect(joined.join(c.token)?.memberId == "c-2")
        #expect(joined.join(c.token)?.leader == "a-0")
        #expect(joined.first { $0.token == a.token }?.version == 0)
    }

    @Test func withoutInitialDelayLaterJoinersRebalanceTheGroup() {
        var h = GroupHarness(initialDelayMs: 0)
        let a = h.joinWithMemberIdRequired("a")
        #expect(a.outputs.join(a.token)?.generationId == 1, "the only member completes the rebalance at once")
        #expect(a.outputs.join(a.token)?.members.map(\.memberId) == [a.memberId])

        let b = h.joinWithMemberIdRequired("b")
        #expect(b.outputs.isEmpty, "b waits for a to rejoin")
        #expect(h.state == .preparingRebalance)
        let syncA = h.sync(a.memberId, generation: 1)
        #expect(syncA.outputs.sync(syncA.token)?.errorCode == GroupCode.rebalanceInProgress)
        #expect(h.heartbeat(a.memberId, generation: 1) == GroupCode.rebalanceInProgress)

        let rejoin = h.join("a", memberId: a.memberId)
        #expect(rejoin.outputs.count == 2)
        #expect(rejoin.outputs.join(rejoin.token)?.generationId == 2)
        #expect(rejoin.outputs.join(rejoin.token)?.members.map(\.memberId) == [a.memberId, b.memberId])
        #expect(rejoin.outputs.join(b.token)?.members.isEmpty == true)
        #expect(rejoin.outputs.join(b.token)?.leader == a.memberId)
    }

    @Test func protocolSelectionVotesAndBreaksTiesByLeaderOrder() {
        func chosen(_ lists: [[String]]) -> String? {
            var h = GroupHarness(initialDelayMs: 1_000)
            var tokens: [String] = []
            for (i, list) in lists.enumerated() {
                tokens.append(h.join("m\(i)", version: 3, protocols: list.map { ($0, Array($0.utf8)) }).token)
            }
            let joined = h.advance(by: 1_000) + h.advance(by: 1_000)
            let leader = joined.join(tokens[0])
            #expect(leader?.members.allSatisfy { $0.metadata == Array((leader?.protocolName ?? "").utf8) } == true)
            return leader?.protocolName
        }
        #expect(chosen([["range", "roundrobin"], ["roundrobin", "range"]]) == "range", "tie: the leader's order wins")
        #expect(chosen([["range", "roundrobin"], ["roundrobin", "range"], ["roundrobin", "range"]]) == "roundrobin", "majority")
        #expect(chosen([["range", "roundrobin"], ["roundrobin"]]) == "roundrobin", "only common protocol")
    }

    @Test func inconsistentProtocolsAreRejected() {
        var h = GroupHarness(initialDelayMs: 0)
        let empty = h.join("x", version: 3, type: "")
        #expect(empty.outputs.join(empty.token)?.errorCode == GroupCode.inconsistentGroupProtocol)
        let none = h.join("x", version: 3, protocols: [])
        #expect(none.outputs.join(none.token)?.errorCode == GroupCode.inconsistentGroupProtocol)

        let a = h.join("a", version: 3, protocols: [("range", [1])])
        #expect(a.outputs.join(a.token)?.errorCode == GroupCode.none)
        let otherType = h.join("b", version: 3, protocols: [("range", [1])], type: "connect")
        #expect(otherType.outputs.join(otherType.token)?.errorCode == GroupCode.inconsistentGroupProtocol)
        let otherProtocol = h.join("c", version: 5, protocols: [("sticky", [1])])
        #expect(otherProtocol.outputs.join(otherProtocol.token)?.errorCode == GroupCode.inconsistentGroupProtocol)
        #expect(h.memberIds == ["a-0"], "rejected joiners never become members")
        #expect(h.state == .completingRebalance)
    }

    @Test func invalidJoinsAreRejected() {
        var h = GroupHarness()
        let noGroup = h.join("a", group: "")
        #expect(noGroup.outputs.join(noGroup.token)?.errorCode == GroupCode.invalidGroupId)
        let shortSession = h.join("a", session: 1_000)
        #expect(shortSession.outputs.join(shortSession.token)?.errorCode == GroupCode.invalidSessionTimeout)
        let unknownId = h.join("a", memberId: "a-made-up")
        #expect(unknownId.outputs.join(unknownId.token)?.errorCode == GroupCode.unknownMemberId)
        #expect(h.coordinator.groupIds.isEmpty)
    }

    @Test func stableFollowerRejoiningUnchangedGetsCurrentGeneration() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree()
        let follower = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        #expect(follower.outputs.join(follower.token)?.generationId == generation)
        #expect(follower.outputs.join(follower.token)?.members.isEmpty == true)
        #expect(h.state == .stable)

        // The leader's JoinGroup always rebalances (it may want a new assignment).
        let leader = h.join("a", memberId: ids[0], protocols: [("range", Array("a".utf8))])
        #expect(leader.outputs.isEmpty)
        #expect(h.state == .preparingRebalance)
        #expect(h.heartbeat(ids[1], generation: generation) == GroupCode.rebalanceInProgress)
    }

    // MARK: Leaving and timeouts

    @Test func leaveTriggersRebalanceAndTheRestFormANewGeneration() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree()
        let left = h.leave(ids[2])
        #expect(left.outputs.count == 1)
        #expect(left.outputs.leave(left.token)?.errorCode == GroupCode.none)
        #expect(h.state == .preparingRebalance)
        #expect(h.heartbeat(ids[0], generation: generation) == GroupCode.rebalanceInProgress)
        #expect(h.heartbeat(ids[1], generation: generation) == GroupCode.rebalanceInProgress)
        #expect(h.heartbeat(ids[2], generation: generation) == GroupCode.unknownMemberId)

        let a = h.join("a", memberId: ids[0], protocols: [("range", Array("a".utf8))])
        #expect(a.outputs.isEmpty)
        let b = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        #expect(b.outputs.count == 2, "the last rejoin completes the join phase without waiting for the timeout")
        #expect(b.outputs.join(a.token)?.generationId == generation + 1)
        #expect(b.outputs.join(a.token)?.members.map(\.memberId) == [ids[0], ids[1]])
        #expect(b.outputs.join(b.token)?.generationId == generation + 1)
        #expect(h.memberIds == [ids[0], ids[1]])

        let sb = h.sync(ids[1], generation: generation + 1)
        let sa = h.sync(ids[0], generation: generation + 1, assignments: [ids[0]: [7], ids[1]: [8]])
        #expect(sa.outputs.sync(sb.token)?.assignment == [8])
        #expect(h.heartbeat(ids[0], generation: generation + 1) == GroupCode.none)
        #expect(h.heartbeat(ids[0], generation: generation) == GroupCode.illegalGeneration)
    }

    @Test func leaderLeavingHandsLeadershipToTheNextMember() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree()
        _ = h.leave(ids[0], version: 0)
        let b = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        let c = h.join("c", memberId: ids[2], protocols: [("range", Array("c".utf8))])
        #expect(c.outputs.join(b.token)?.leader == ids[1])
        #expect(c.outputs.join(b.token)?.members.count == 2)
        #expect(c.outputs.join(c.token)?.members.isEmpty == true)
        #expect(h.generation == generation + 1)
    }

    @Test func leaveOfUnknownMembers() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let v0 = h.leave("nobody", version: 0)
        #expect(v0.outputs.leave(v0.token)?.errorCode == GroupCode.unknownMemberId)
        let (ids, _) = h.stableGroupOfThree()
        let v1 = h.leave("nobody", version: 1)
        #expect(v1.outputs.leave(v1.token)?.errorCode == GroupCode.unknownMemberId)
        #expect(h.state == .stable)

        let token = h.token("leave-batch")
        let batch = LeaveGroupRequest(groupId: h.group, members: [.init(memberId: ids[1]), .init(memberId: "nobody")])
        let out = h.coordinator.handleLeaveGroup(batch, version: 3, token: token, nowMs: h.now)
        #expect(out.leave(token)?.errorCode == GroupCode.none)
        #expect(out.leave(token)?.members.map(\.errorCode) == [GroupCode.none, GroupCode.unknownMemberId])
        #expect(h.memberIds == [ids[0], ids[2]])
    }

    @Test func memberThatStopsHeartbeatingIsRemovedAfterSessionTimeout() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree(session: 10_000)
        #expect(h.coordinator.nextDeadlineMs == h.now + 10_000)
        #expect(h.advance(by: 6_000).isEmpty)
        #expect(h.heartbeat(ids[0], generation: generation) == GroupCode.none)
        #expect(h.heartbeat(ids[1], generation: generation) == GroupCode.none)
        #expect(h.advance(by: 3_999).isEmpty)
        #expect(h.state == .stable)
        #expect(h.advance(by: 1).isEmpty, "nothing was parked, so there is nothing to answer")
        #expect(h.memberIds == [ids[0], ids[1]], "c missed its session deadline")
        #expect(h.state == .preparingRebalance)
        #expect(h.heartbeat(ids[2], generation: generation) == GroupCode.unknownMemberId)
        #expect(h.heartbeat(ids[0], generation: generation) == GroupCode.rebalanceInProgress)

        let a = h.join("a", memberId: ids[0], protocols: [("range", Array("a".utf8))])
        let b = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        #expect(b.outputs.join(a.token)?.members.map(\.memberId) == [ids[0], ids[1]])
        #expect(h.generation == generation + 1)
    }

    @Test func memberNotRejoiningWithinRebalanceTimeoutIsDropped() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree(session: 10_000, rebalance: 30_000)
        // a changes its metadata: rebalance.
        let a = h.join("a", memberId: ids[0], protocols: [("range", [0xFF])])
        let b = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        #expect(a.outputs.isEmpty && b.outputs.isEmpty, "c has not rejoined yet")
        // c keeps heartbeating (so its session stays alive) but never rejoins.
        for _ in 0..<5 {
            #expect(h.advance(by: 5_000).isEmpty)
            #expect(h.heartbeat(ids[2], generation: generation) == GroupCode.rebalanceInProgress)
        }
        #expect(h.coordinator.nextDeadlineMs == h.now + 5_000)
        let done = h.advance(by: 5_000)
        #expect(done.count == 2)
        #expect(done.join(a.token)?.members.map(\.memberId) == [ids[0], ids[1]])
        #expect(done.join(a.token)?.members.first?.metadata == [0xFF])
        #expect(done.join(b.token)?.generationId == generation + 1)
        #expect(h.heartbeat(ids[2], generation: generation) == GroupCode.unknownMemberId)
    }

    @Test func pendingMemberIdHoldsTheJoinPhaseUntilItLapses() {
        var h = GroupHarness(initialDelayMs: 0)
        let x = h.join("x", session: 6_000)
        #expect(x.outputs.join(x.token)?.errorCode == GroupCode.memberIdRequired)
        let a = h.joinWithMemberIdRequired("a", session: 10_000, rebalance: 30_000)
        #expect(a.outputs.isEmpty, "x may still come back with its id")
        #expect(h.advance(by: 6_000).join(a.token)?.members.map(\.memberId) == [a.memberId])
        #expect(h.state == .completingRebalance)
        let late = h.join("x", memberId: x.outputs.join(x.token)!.memberId)
        #expect(late.outputs.join(late.token)?.errorCode == GroupCode.unknownMemberId)
    }

    @Test func removedMembersParkedJoinIsAnswered() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let a = h.joinWithMemberIdRequired("a")
        let b = h.joinWithMemberIdRequired("b")
        let left = h.leave(b.memberId)
        #expect(left.outputs.count == 2)
        #expect(left.outputs.join(b.token)?.errorCode == GroupCode.unknownMemberId)
        #expect(left.outputs.leave(left.token)?.errorCode == GroupCode.none)
        let done = h.advance(by: 3_000) + h.advance(by: 3_000)
        #expect(done.map(\.token) == [a.token])
    }

    @Test func leaderThatNeverSyncsIsDroppedAndFollowersRejoin() {
        var h = GroupHarness(initialDelayMs: 3_000)
        let ids = ["a", "b"].map { h.joinWithMemberIdRequired($0, session: 30_000, rebalance: 20_000).memberId }
        var joined = h.advance(by: 3_000)
        if joined.isEmpty { joined = h.advance(by: 3_000) }  // the delay is extended once: b joined during it + h.advance(by: 3_000)
        #expect(joined.count == 2)
        let syncB = h.sync(ids[1], generation: 1)
        #expect(syncB.outputs.isEmpty)
        let out = h.advance(by: 20_000)
        #expect(out.sync(syncB.token)?.errorCode == GroupCode.rebalanceInProgress)
        #expect(h.memberIds == [ids[1]])
        #expect(h.state == .preparingRebalance)
        let rejoin = h.join("b", memberId: ids[1])
        #expect(rejoin.outputs.join(rejoin.token)?.leader == ids[1])
        #expect(rejoin.outputs.join(rejoin.token)?.generationId == 2)
    }

    // MARK: Errors on sync and heartbeat

    @Test func syncAndHeartbeatErrors() {
        var h = GroupHarness(initialDelayMs: 3_000)
        #expect(h.heartbeat("a", generation: 1) == GroupCode.unknownMemberId, "unknown group")
        #expect(h.heartbeat("a", generation: 1, group: "") == GroupCode.invalidGroupId)
        let unknownGroup = h.sync("a", generation: 1)
        #expect(unknownGroup.outputs.sync(unknownGroup.token)?.errorCode == GroupCode.unknownMemberId)

        let (ids, generation) = h.stableGroupOfThree()
        #expect(h.heartbeat("nobody", generation: generation) == GroupCode.unknownMemberId)
        #expect(h.heartbeat(ids[1], generation: generation + 1) == GroupCode.illegalGeneration)
        let unknown = h.sync("nobody", generation: generation)
        #expect(unknown.outputs.sync(unknown.token)?.errorCode == GroupCode.unknownMemberId)
        let wrongGeneration = h.sync(ids[1], generation: generation - 1)
        #expect(wrongGeneration.outputs.sync(wrongGeneration.token)?.errorCode == GroupCode.illegalGeneration)

        _ = h.leave(ids[2])
        let during = h.sync(ids[1], generation: generation)
        #expect(during.outputs.sync(during.token)?.errorCode == GroupCode.rebalanceInProgress)
    }

    // MARK: Offsets

    @Test func offsetsRoundTripWithMetadataAndUnknownPartitions() {
        var h = GroupHarness()
        let codes = h.commitCodes([("t1", 0, 10, "m0"), ("t1", 2, 12, nil), ("t2", 0, 20, "x")], version: 2)
        #expect(codes == [0, 0, 0], "a simple consumer (generation -1, no member) may commit to a new group")
        #expect(h.state == .empty)

        let fetched = h.fetch([("t1", [0, 1, 2]), ("t3", [0])], version: 1)
        #expect(flattenFetch(fetched) == ["t1/0=10:m0:e0", "t1/1=-1::e0", "t1/2=12::e0", "t3/0=-1::e0"])
        #expect(fetched?.topics[0].partitions[0].committedLeaderEpoch == 5)
        #expect(flattenFetch(h.fetch(nil, version: 2)) == ["t1/0=10:m0:e0", "t1/2=12::e0", "t2/0=20:x:e0"], "null topics: everything committed")
        #expect(flattenFetch(h.fetch(nil, group: "other")) == [])
        #expect(flattenFetch(h.fetch([("t1", [0])], group: "other")) == ["t1/0=-1::e0"])

        // Later commits win.
        #expect(h.commitCodes([("t1", 0, 11, "m1")], version: 0) == [0])
        #expect(flattenFetch(h.fetch([("t1", [0])])) == ["t1/0=11:m1:e0"])

        // v8 asks per group.
        let request = OffsetFetchRequest(groups: [.init(groupId: h.group, topics: nil), .init(groupId: "other", topics: [.init(name: "t2", partitionIndexes: [0])])])
        let outputs = h.coordinator.handleOffsetFetch(request, version: 8, token: "f8")
        guard case .offsetFetch(let r) = outputs.first?.response else { Issue.record("no v8 fetch response"); return }
        #expect(r.groups.map(\.groupId) == [h.group, "other"])
        #expect(r.groups[0].topics.flatMap { t in t.partitions.map { "\(t.name)/\($0.partitionIndex)=\($0.committedOffset)" } } == ["t1/0=11", "t1/2=12", "t2/0=20"])
        #expect(r.groups[1].topics[0].partitions[0].committedOffset == -1)

        // Metadata over offset.metadata.max.bytes is refused per partition.
        let big = String(repeating: "x", count: 4_097)
        #expect(h.commitCodes([("t1", 0, 99, big), ("t1", 1, 5, "ok")]) == [GroupCode.offsetMetadataTooLarge, 0])
        #expect(flattenFetch(h.fetch([("t1", [0, 1])])) == ["t1/0=11:m1:e0", "t1/1=5:ok:e0"])
    }

    @Test func commitsAreCheckedAgainstMembershipAndGeneration() {
        var h = GroupHarness(initialDelayMs: 3_000)
        #expect(h.commitCodes([("t", 0, 1, nil)], memberId: "m", generation: 3) == [GroupCode.illegalGeneration], "no such group: a stale generation")
        #expect(h.coordinator.groupIds.isEmpty)

        let (ids, generation) = h.stableGroupOfThree()
        #expect(h.commitCodes([("t", 0, 1, nil)], memberId: ids[1], generation: generation) == [0])
        #expect(h.commitCodes([("t", 0, 2, nil)], memberId: ids[1], generation: generation - 1) == [GroupCode.illegalGeneration])
        #expect(h.commitCodes([("t", 0, 3, nil)], memberId: "nobody", generation: generation) == [GroupCode.unknownMemberId])
        #expect(h.commitCodes([("t", 0, 4, nil)]) == [GroupCode.unknownMemberId], "a group with members refuses simple commits")

        // During PreparingRebalance the current generation may still commit…
        _ = h.leave(ids[2])
        #expect(h.commitCodes([("t", 1, 5, nil)], memberId: ids[0], generation: generation) == [0])
        // …but not while the new generation waits for its assignments.
        _ = h.join("a", memberId: ids[0], protocols: [("range", Array("a".utf8))])
        _ = h.join("b", memberId: ids[1], protocols: [("range", Array("b".utf8))])
        #expect(h.state == .completingRebalance)
        #expect(h.commitCodes([("t", 1, 6, nil)], memberId: ids[0], generation: generation + 1) == [GroupCode.rebalanceInProgress])
        #expect(h.commitCodes([("t", 1, 6, nil)], memberId: ids[0], generation: generation) == [GroupCode.illegalGeneration])
        #expect(flattenFetch(h.fetch([("t", [0, 1])])) == ["t/0=1::e0", "t/1=5::e0"])

        // Once everyone left, the empty group takes simple commits again.
        _ = h.leave(ids[0])
        _ = h.leave(ids[1])
        #expect(h.state == .empty)
        #expect(h.commitCodes([("t", 1, 7, nil)]) == [0])
    }

    // MARK: Persistence

    /// A commit the offsets log refused is undone in memory: OffsetFetch shows what it replaced,
    /// and a later commit is never undone by an earlier one's failure.
    @Test func aCommitThatWasNotPersistedIsReverted() {
        var h = GroupHarness()
        _ = h.commit([("orders", 0, 100, "kept")])
        let failed = h.commit([("orders", 0, 150, nil), ("orders", 1, 7, nil), ("new-topic", 2, 1, nil)])
        #expect(failed.replacedOffsets.map { $0?.offset } == [100, nil, nil])
        h.coordinator.revert(failed)
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "orders", partition: 0)?.offset == 100)
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "orders", partition: 0)?.metadata == "kept")
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "orders", partition: 1) == nil)
        #expect(flattenFetch(h.fetch(nil)) == ["orders/0=100:kept:e0"])

        let slow = h.commit([("orders", 0, 200, nil)])
        _ = h.commit([("orders", 0, 300, nil)])
        h.coordinator.revert(slow)  // fails after a newer commit: the newer one stays
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "orders", partition: 0)?.offset == 300)
    }

    @Test func committedOffsetsSurviveARestartThroughReplay() throws {
        var h = GroupHarness(initialDelayMs: 3_000)
        let (ids, generation) = h.stableGroupOfThree()
        var log: [[UInt8]] = []
        for commit in [
            h.commit([("orders", 0, 100, "first"), ("orders", 1, 200, nil)], memberId: ids[0], generation: generation),
            h.commit([("orders", 0, 150, "second"), ("payments", 3, 7, "p")], memberId: ids[1], generation: generation),
            h.commit([("x", 0, 1, nil)], memberId: ids[1], generation: generation - 1),  // rejected: nothing to persist
            h.commit([("solo", 0, 42, "simple")], group: "simple-group"),
        ] {
            log += commit.recordsToPersist.map { $0.encoded() }
        }
        #expect(log.count == 5)

        var restarted = GroupCoordinator<String>(config: GroupCoordinatorConfig(initialRebalanceDelayMs: 0))
        for value in log { try restarted.replay(encoded: value) }
        #expect(restarted.groupIds == ["g", "simple-group"])
        #expect(restarted.describeGroup("g")?.state == .empty, "membership is not persisted")
        #expect(restarted.committedOffset(groupId: "g", topic: "orders", partition: 0)?.offset == 150)
        #expect(restarted.committedOffset(groupId: "g", topic: "orders", partition: 0)?.metadata == "second")
        #expect(restarted.committedOffset(groupId: "g", topic: "orders", partition: 0)?.leaderEpoch == 5)
        #expect(restarted.committedOffset(groupId: "g", topic: "orders", partition: 0)?.commitTimestampMs == h.now)

        var replayed = GroupHarness()
        replayed.coordinator = restarted
        #expect(flattenFetch(replayed.fetch(nil)) == flattenFetch(h.fetch(nil)))
        #expect(flattenFetch(replayed.fetch(nil, group: "simple-group")) == ["solo/0=42:simple:e0"])

        // Members of the old generation learn of the restart and rejoin.
        #expect(replayed.heartbeat(ids[0], generation: generation) == GroupCode.unknownMemberId)
        #expect(replayed.commitCodes([("orders", 0, 1, nil)], memberId: ids[0], generation: generation) == [GroupCode.unknownMemberId])
    }

    /// KIP-345: a static member that restarts within its session timeout takes its place back
    /// without a rebalance; its old member id is fenced.
    @Test func staticMemberRestartsWithoutARebalance() {
        var h = GroupHarness(initialDelayMs: 3_000)
        func joinStatic(_ client: String, memberId: String = "") -> (token: String, outputs: [GroupOut]) {
            let token = h.token("join-\(client)")
            let request = JoinGroupRequest(groupId: h.group, sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000, memberId: memberId,
                                           groupInstanceId: "instance-\(client)", protocolType: "consumer", protocols: [.init(name: "range", metadata: [1])])
            return (token, h.coordinator.handleJoinGroup(request, version: 5, clientId: client, token: token, nowMs: h.now))
        }
        // Static members join without MEMBER_ID_REQUIRED.
        let a = joinStatic("a")
        #expect(a.outputs.isEmpty, "parked until the join phase ends, not MEMBER_ID_REQUIRED")
        let b = joinStatic("b")
        var joined = h.advance(by: 3_000)
        if joined.isEmpty { joined = h.advance(by: 3_000) }  // the delay is extended once: b joined during it
        let leader = try! #require(joined.join(a.token))
        let follower = try! #require(joined.join(b.token))
        let generation = leader.generationId
        _ = h.sync(follower.memberId, generation: generation)
        _ = h.sync(leader.memberId, generation: generation, assignments: [leader.memberId: [0xA], follower.memberId: [0xB]])
        #expect(h.state == .stable)

        // "b" restarts: no member id, same instance id.
        let back = joinStatic("b")
        let rejoined = try! #require(back.outputs.join(back.token), "answered at once")
        #expect(rejoined.errorCode == 0 && rejoined.generationId == generation && rejoined.memberId != follower.memberId)
        #expect(h.state == .stable, "no rebalance")
        #expect(h.heartbeat(leader.memberId, generation: generation) == 0, "the other member is not told to rejoin")
        let sync = h.sync(rejoined.memberId, generation: generation)
        #expect(sync.outputs.first.flatMap { if case .syncGroup(let r) = $0.response { r.assignment } else { nil } } == [UInt8(0xB)])
        // The old incarnation is fenced wherever it names the instance.
        let stale = HeartbeatRequest(groupId: h.group, generationId: generation, memberId: follower.memberId, groupInstanceId: "instance-b")
        let fenced = h.coordinator.handleHeartbeat(stale, version: 3, token: "stale", nowMs: h.now)
        #expect(fenced.heartbeat("stale")?.errorCode == GroupCode.fencedInstanceId)
        #expect(joinStatic("b", memberId: follower.memberId).outputs.first.flatMap {
            if case .joinGroup(let r) = $0.response { r.errorCode } else { nil } } == GroupCode.fencedInstanceId)
    }

    @Test func deleteGroupsAndOffsetDeleteForgetOffsetsDurably() throws {
        var h = GroupHarness(initialDelayMs: 3_000)
        // Members subscribed to "orders" (ConsumerProtocolSubscription v0: version, topics, user data).
        var subscription = WireWriter()
        subscription.writeInt16(0)
        subscription.writeInt32(1)
        subscription.writeString("orders", compact: false)
        subscription.writeInt32(-1)
        let (ids, generation) = h.stableGroupOfThree(metadata: { _ in subscription.bytes })
        var log = h.commit([("orders", 0, 10, nil), ("payments", 0, 20, nil)], memberId: ids[0], generation: generation).recordsToPersist
        log += h.commit([("solo", 0, 42, nil), ("other", 0, 1, nil)], group: "simple").recordsToPersist

        func offsetDelete(_ group: String, _ topics: [(String, Int32)]) -> GroupOut {
            let request = OffsetDeleteRequest(groupId: group, topics: topics.map { .init(name: $0.0, partitions: [.init(partitionIndex: $0.1)]) })
            return h.coordinator.handleOffsetDelete(request, version: 0, token: "delete")[0]
        }
        let active = offsetDelete("g", [("orders", 0), ("payments", 0)])
        guard case .offsetDelete(let activeResponse) = active.response else { Issue.record("not OffsetDelete"); return }
        #expect(activeResponse.errorCode == 0)
        #expect(activeResponse.topics.map { $0.partitions[0].errorCode } == [GroupCode.groupSubscribedToTopic, 0])
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "payments", partition: 0) == nil)
        #expect(h.coordinator.committedOffset(groupId: "g", topic: "orders", partition: 0)?.offset == 10)
        log += active.recordsToPersist
        let simple = offsetDelete("simple", [("solo", 0)])
        #expect(simple.recordsToPersist.map(\.isDeletion) == [true])
        log += simple.recordsToPersist
        guard case .offsetDelete(let missing) = offsetDelete("nobody", [("solo", 0)]).response else { return }
        #expect(missing.errorCode == GroupCode.groupIdNotFound)

        let deleted = h.coordinator.handleDeleteGroups(DeleteGroupsRequest(groupsNames: ["simple", "g", "nobody", ""]), version: 2, token: "dg")[0]
        guard case .deleteGroups(let response) = deleted.response else { Issue.record("not DeleteGroups"); return }
        #expect(response.results.map(\.errorCode) == [0, GroupCode.nonEmptyGroup, GroupCode.groupIdNotFound, GroupCode.invalidGroupId])
        #expect(deleted.recordsToPersist.map { "\($0.topic)/\($0.partition)" } == ["other/0"])
        #expect(!h.coordinator.groupIds.contains("simple"))
        log += deleted.recordsToPersist

        // A restart replays the deletions too.
        var restarted = GroupCoordinator<String>(config: GroupCoordinatorConfig())
        for record in log { try restarted.replay(encoded: record.encoded()) }
        #expect(restarted.groupIds == ["g"])
        #expect(restarted.committedOffset(groupId: "g", topic: "orders", partition: 0)?.offset == 10)
        #expect(restarted.committedOffset(groupId: "g", topic: "payments", partition: 0) == nil)

        // A deletion the log refused is undone.
        var reverting = GroupHarness()
        _ = reverting.commit([("t", 0, 5, nil)], group: "r")
        let refused = reverting.coordinator.handleDeleteGroups(DeleteGroupsRequest(groupsNames: ["r"]), version: 2, token: "x")[0]
        reverting.coordinator.revert(refused)
        #expect(reverting.coordinator.committedOffset(groupId: "r", topic: "t", partition: 0)?.offset == 5)
    }

    @Test func recordEncodingRoundTrips() throws {
        let records = [
            OffsetCommitRecord(groupId: "", topic: "t", partition: 0, offset: CommittedOffset(offset: 0, commitTimestampMs: 0)),
            OffsetCommitRecord(groupId: "grüppe", topic: String(repeating: "t", count: 40_000), partition: .max,
                               offset: CommittedOffset(offset: .max, leaderEpoch: 9, metadata: "ü→", commitTimestampMs: -1)),
        ]
        for record in records {
            #expect(try OffsetCommitRecord.decode(record.encoded()) == record)
        }
        let deletion = OffsetCommitRecord.deletion(groupId: "g", topic: "t", partition: 3)
        #expect(try OffsetCommitRecord.decode(deletion.encoded()) == deletion)
        #expect(throws: OffsetCommitRecordError.trailingBytes(1)) { try OffsetCommitRecord.decode(deletion.encoded() + [0]) }
        var bytes = records[0].encoded()
        bytes[1] = 3
        #expect(throws: OffsetCommitRecordError.unsupportedVersion(3)) { try OffsetCommitRecord.decode(bytes) }
        #expect(throws: OffsetCommitRecordError.trailingBytes(1)) { try OffsetCommitRecord.decode(records[0].encoded() + [0]) }
    }

    @Test func garbageIntoTheRecordDecoderOnlyThrowsTypedErrors() {
        let valid = OffsetCommitRecord(
            groupId: "group", topic: "topic", partition: 3,
            offset: CommittedOffset(offset: 77, leaderEpoch: 1, metadata: "meta", commitTimestampMs: 123)).encoded()
        // Every truncation of a valid record.
        for n in 0..<valid.count {
            #expect(throws: OffsetCommitRecordError.self) { try OffsetCommitRecord.decode(Array(valid[..<n])) }
        }
        // Deterministic random bytes, some with a valid version prefix so the body is parsed.
        var rng = GroupSplitMix(seed: 0xA905)
        var decoded = 0
        for i in 0..<5_000 {
            var bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if i % 2 == 0 { bytes = [0, 1] + bytes }
            do throws(OffsetCommitRecordError) {
                _ = try OffsetCommitRecord.decode(bytes)
                decoded += 1
            } catch {
                switch error {
                case .unsupportedVersion, .malformed, .trailingBytes: break
                }
            }
        }
        // Single-byte flips of a valid record: decode or fail, never trap.
        for i in valid.indices {
            var bytes = valid
            bytes[i] ^= 0xFF
            _ = try? OffsetCommitRecord.decode(bytes)
        }
        #expect(decoded < 5_000)
    }

    @Test func replayRejectsGarbageWithoutChangingState() {
        var c = GroupCoordinator<String>()
        #expect(throws: OffsetCommitRecordError.self) { try c.replay(encoded: [0xde, 0xad, 0xbe, 0xef]) }
        #expect(c.groupIds.isEmpty)
    }

    // MARK: Randomized

    /// Random clients join, sync, heartbeat, leave, go quiet and come back while time passes.
    /// Every request is answered exactly once (parked ones included), the group's invariants
    /// hold after every step, and once everyone goes quiet the group empties.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func randomSchedulesAnswerEveryRequestOnce(seed: UInt64) {
        struct Client { var memberId = ""; var generation: Int32 = -1; var lastMembers: [String] = []; var busy = false }
        var h = GroupHarness(initialDelayMs: seed % 2 == 0 ? 0 : 3_000)
        var rng = GroupSplitMix(seed: seed)
        var clients = Array(repeating: Client(), count: 5)
        var outstanding: [String: Int] = [:]  // token → client
        var lastGeneration: Int32 = 0
        var highestGeneration: Int32 = 0

        func deliver(_ outputs: [GroupOut]) {
            for o in outputs {
                guard let i = outstanding.removeValue(forKey: o.token) else {
                    Issue.record("answer for \(o.token), which is not outstanding (seed \(seed))")
                    continue
                }
                clients[i].busy = false
                switch o.response {
                case .joinGroup(let r):
                    if r.errorCode == GroupCode.none {
                        clients[i].memberId = r.memberId
                        clients[i].generation = r.generationId
                        clients[i].lastMembers = r.members.map(\.memberId)
                    } else if r.errorCode == GroupCode.memberIdRequired {
                        clients[i].memberId = r.memberId
                    } else if r.errorCode == GroupCode.unknownMemberId {
                        clients[i].memberId = ""
                    }
                case .syncGroup(let r) where r.errorCode == GroupCode.unknownMemberId:
                    clients[i].memberId = ""
                case .heartbeat(let r) where r.errorCode == GroupCode.unknownMemberId:
                    clients[i].memberId = ""
                default:
                    break
                }
            }
        }

        func send(_ i: Int, _ make: (inout GroupHarness, String) -> [GroupOut]) {
            let token = h.token("c\(i)")
            outstanding[token] = i
            clients[i].busy = true
            deliver(make(&h, token))
        }

        for _ in 0..<400 {
            let i = Int(rng.next() % 5)
            let c = clients[i]
            let action = rng.next() % 6
            if c.busy && action != 4 && rng.next() % 10 != 0 { continue }  // mostly one request at a time
            switch action {
            case 0:
                let version = Int16(rng.next() % 6)
                let request = JoinGroupRequest(
                    groupId: h.group, sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 20_000, memberId: c.memberId,
                    protocolType: "consumer", protocols: [.init(name: "range", metadata: [UInt8(i)])])
                send(i) { h, token in h.coordinator.handleJoinGroup(request, version: version, clientId: "c\(i)", token: token, nowMs: h.now) }
            case 1:
                let assignments = c.lastMembers.map { SyncGroupRequest.SyncGroupRequestAssignment(memberId: $0, assignment: Array($0.utf8)) }
                let request = SyncGroupRequest(groupId: h.group, generationId: c.generation, memberId: c.memberId, assignments: assignments)
                send(i) { h, token in h.coordinator.handleSyncGroup(request, version: 3, token: token, nowMs: h.now) }
            case 2, 3:
                let request = HeartbeatRequest(groupId: h.group, generationId: c.generation, memberId: c.memberId)
                send(i) { h, token in h.coordinator.handleHeartbeat(request, version: 3, token: token, nowMs: h.now) }
            case 4:
                h.now += Int64(rng.next() % 4_000)
                deliver(h.coordinator.tick(nowMs: h.now))
            default:
                if rng.next() % 3 == 0 {
                    let request = LeaveGroupRequest(groupId: h.group, memberId: c.memberId)
                    send(i) { h, token in h.coordinator.handleLeaveGroup(request, version: 1, token: token, nowMs: h.now) }
                }
            }

            if let g = h.coordinator.describeGroup(h.group) {
                #expect(g.generationId >= lastGeneration)
                lastGeneration = g.generationId
                highestGeneration = max(highestGeneration, g.generationId)
                if g.members.isEmpty {
                    #expect(g.leaderId == nil || g.state == .preparingRebalance)
                } else {
                    #expect(g.state != .empty)
                    #expect(g.leaderId.map { id in g.members.contains { $0.memberId == id } } == true)
                }
            } else {
                lastGeneration = 0  // an empty group without offsets is forgotten; a new one starts over
            }
        }

        // Everyone goes quiet: timeouts answer whatever is parked and empty the group.
        for _ in 0..<20 {
            h.now += 10_000
            deliver(h.coordinator.tick(nowMs: h.now))
        }
        #expect(highestGeneration >= 2, "the schedule should have gone through rebalances")
        #expect(outstanding.isEmpty, "unanswered: \(outstanding.keys.sorted()) (seed \(seed))")
        #expect(h.coordinator.describeGroup(h.group) == nil)
        #expect(h.coordinator.nextDeadlineMs == nil)
    }

    // MARK: Wire

    @Test func outputsEncodeAtTheirVersion() throws {
        var h = GroupHarness(initialDelayMs: 0)
        for version: Int16 in [0, 3, 4, 5, 6, 7, 9] {
            let group = "wire-\(version)"
            var first = h.join("c", version: version, group: group)
            if version >= 4 {
                let id = first.outputs.join(first.token)!.memberId
                var w = WireWriter()
                first.outputs[0].response.encode(into: &w, version: version)
                #expect(try JoinGroupResponse.decode(w.bytes, version: version).errorCode == GroupCode.memberIdRequired)
                first = h.join("c", memberId: id, version: version, group: group)
            }
            let output = try #require(first.outputs.first)
            #expect(output.version == version)
            #expect(output.response.apiKey == JoinGroupResponse.apiKey)
            var w = WireWriter()
            output.response.encode(into: &w, version: version)
            let decoded = try JoinGroupResponse.decode(w.bytes, version: version)
            #expect(decoded.generationId == 1)
            #expect(decoded.members.count == 1)
            #expect(decoded.protocolName == "range")
        }
    }
}

/// SplitMix64, for deterministic fuzz input.
private struct GroupSplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 { SplitMix64.step(&state) }
}
