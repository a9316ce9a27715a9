import KafkaProtocol
import KafkaWire

/// Kafka's classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
/// OffsetCommit, OffsetFetch) as a pure state machine: no I/O, no clock, no threads.
///
/// **Threading.** A value type used from one thread (the shard that owns the groups); it
/// stores no closures other than the member-id generator and never calls out.
///
/// **Driving it.** Each `handle…` call takes a decoded request, its API version, the time, and
/// an opaque `Token` naming where the answer goes (say connection + correlation id). It returns
/// every response that is ready now: the caller's own (always, except for JoinGroup/SyncGroup
/// that must wait) and any other members' parked JoinGroup/SyncGroup responses this event
/// completed. Time only moves in ``tick(nowMs:)``, which the broker calls periodically (or at
/// ``nextDeadlineMs``) and which returns the same kind of outputs: rebalances that end by
/// timeout, members removed for missed heartbeats. Every parked request is eventually answered
/// exactly once (when its member is removed, with UNKNOWN_MEMBER_ID). If a connection goes
/// away the broker just drops outputs addressed to it.
///
/// **Durability.** Committed offsets are persisted by the broker: an OffsetCommit output lists
/// ``OffsetCommitRecord``s to append to the offsets log before its response is sent. The
/// in-memory table is updated at once, so an OffsetFetch may see a commit before it is durable.
/// At start-up the broker replays the log with ``replay(encoded:)``. Group membership is not
/// persisted: after a restart groups exist only through their offsets (Empty, generation 0),
/// and members find out by UNKNOWN_MEMBER_ID on their next heartbeat and rejoin.
///
/// **Static membership** (KIP-345): a member with a `group.instance.id` joins without the
/// MEMBER_ID_REQUIRED round trip; when it comes back with no member id (a restart) within its
/// session timeout it takes over its old place — same assignment, no rebalance if the group
/// is Stable and its protocols are unchanged — and the old member id is fenced
/// (FENCED_INSTANCE_ID on its requests).
///
/// **Left out:** `group.max.size`, offset retention/expiry, transactional commits, the consumer protocol (KIP-848), and the 5-minute join timeout Kafka
/// gives new members (the rebalance timeout bounds their wait here).
public struct GroupCoordinator<Token> {
    public typealias Output = GroupOutput<Token>
    /// Makes a new member id from the client id and a sequence number that never repeats.
    public typealias MemberIdGenerator = @Sendable (_ clientId: String, _ sequence: UInt64) -> String

    public let config: GroupCoordinatorConfig
    var groups: [String: ConsumerGroup<Token>] = [:]
    let memberIdGenerator: MemberIdGenerator
    var memberIdSequence: UInt64 = 0

    /// - Parameters:
    ///   - config: timeouts and limits (Kafka's defaults unless set).
    ///   - memberIdGenerator: makes member ids; by default `<clientId>-<random UUID>` as Kafka
    ///     does, from a seed drawn once here. Tests pass a deterministic one.
    public init(config: GroupCoordinatorConfig = GroupCoordinatorConfig(), memberIdGenerator: MemberIdGenerator? = nil) {
        self.config = config
        if let memberIdGenerator {
            self.memberIdGenerator = memberIdGenerator
        } else {
            let seed = UInt64.random(in: .min ... .max)
            self.memberIdGenerator = { clientId, sequence in "\(clientId)-\(groupMemberUUID(seed: seed, sequence: sequence))" }
        }
    }

    // MARK: JoinGroup

    /// JoinGroup v0–v9. On v4+ a member without an id is given one
    /// with MEMBER_ID_REQUIRED and must join again with it (KIP-394); below v4 it is added at once.
    /// The answer is parked until the join phase ends: when every member has rejoined, at the
    /// rebalance timeout, or after the initial delay when the group was empty.
    public mutating func handleJoinGroup(
        _ request: JoinGroupRequest, version: Int16, clientId: String, token: Token, nowMs: Int64
    ) -> [Output] {
        let caller = ParkedGroupRequest(token: token, version: version)
        func fail(_ code: ErrorCode, memberId: String) -> [Output] {
            [Output(caller, .joinGroup(ConsumerGroup<Token>.joinError(code, memberId: memberId, version: version)))]
        }
        guard !request.groupId.isEmpty else { return fail(.invalidGroupId, memberId: request.memberId) }
        guard request.sessionTimeoutMs >= config.minSessionTimeoutMs, request.sessionTimeoutMs <= config.maxSessionTimeoutMs else {
            return fail(.invalidSessionTimeout, memberId: request.memberId)
        }
        let isUnknownMember = request.memberId.isEmpty
        guard var group = groups.removeValue(forKey: request.groupId) ?? (isUnknownMember ? ConsumerGroup(groupId: request.groupId) : nil) else {
            return fail(.unknownMemberId, memberId: request.memberId)
        }
        var out: [Output] = []
        join(&group, request, version: version, clientId: clientId, caller: caller, nowMs: nowMs, out: &out)
        put(group)
        return out
    }

    private mutating func join(
        _ group: inout ConsumerGroup<Token>, _ request: JoinGroupRequest, version: Int16, clientId: String,
        caller: ParkedGroupRequest<Token>, nowMs: Int64, out: inout [Output]
    ) {
        func respond(_ response: JoinGroupResponse) { out.append(Output(caller, .joinGroup(response))) }
        func fail(_ code: ErrorCode, memberId: String) {
            respond(ConsumerGroup<Token>.joinError(code, memberId: memberId, version: version))
        }
        guard group.supportsProtocols(type: request.protocolType, names: request.protocols.map(\.name), excluding: request.memberId) else {
            return fail(.inconsistentGroupProtocol, memberId: request.memberId)
        }
        // v0 has no rebalance timeout: the session timeout serves.
        let rebalanceTimeoutMs = Int64(version == 0 ? request.sessionTimeoutMs : max(request.rebalanceTimeoutMs, 0))
        func newMember(_ memberId: String) -> GroupMember<Token> {
            GroupMember(
                memberId: memberId, clientId: clientId, groupInstanceId: request.groupInstanceId,
                protocolType: request.protocolType, protocols: request.protocols,
                sessionTimeoutMs: Int64(request.sessionTimeoutMs), rebalanceTimeoutMs: rebalanceTimeoutMs,
                sessionDeadlineMs: nowMs + Int64(request.sessionTimeoutMs), awaitingJoin: caller)
        }

        let instanceId = version >= 5 ? request.groupInstanceId.flatMap { $0.isEmpty ? nil : $0 } : nil
        if let instanceId, let holder = group.memberId(ofInstance: instanceId) {
            // Static membership (KIP-345): the instance keeps its place across restarts.
            if !request.memberId.isEmpty && request.memberId != holder {
                return fail(.fencedInstanceId, memberId: request.memberId)
            }
            if request.memberId.isEmpty {
                let memberId = memberIdGenerator(clientId, memberIdSequence)
                memberIdSequence &+= 1
                group.replaceStaticMember(holder, with: memberId, clientId: clientId, out: &out)
                let member = group.members[memberId]!
                if group.state == .stable && member.matches(request.protocols) {
                    // A restart within the session timeout: no rebalance, the same assignment.
                    group.members[memberId]!.sessionTimeoutMs = Int64(request.sessionTimeoutMs)
                    group.members[memberId]!.rebalanceTimeoutMs = rebalanceTimeoutMs
                    group.members[memberId]!.sessionDeadlineMs = nowMs + Int64(request.sessionTimeoutMs)
                    respond(group.joinResponse(for: memberId))
                } else {
                    group.updateMember(memberId, with: request, rebalanceTimeoutMs: rebalanceTimeoutMs, parked: caller, nowMs: nowMs, config: config, out: &out)
                }
                group.maybeCompleteJoin(nowMs: nowMs, out: &out)
                return
            }
        }
        if request.memberId.isEmpty {
            let memberId = memberIdGenerator(clientId, memberIdSequence)
            memberIdSequence &+= 1
            // A static member skips the MEMBER_ID_REQUIRED round trip (KIP-345): its instance
            // id names it.
            if version >= 4 && instanceId == nil {
                group.pendingMembers[memberId] = nowMs + Int64(request.sessionTimeoutMs)
                return fail(.memberIdRequired, memberId: memberId)
            }
            group.addMember(newMember(memberId), nowMs: nowMs, config: config, out: &out)
        } else if group.pendingMembers.removeValue(forKey: request.memberId) != nil {
            group.addMember(newMember(request.memberId), nowMs: nowMs, config: config, out: &out)
        } else if let member = group.members[request.memberId] {
            switch group.state {
            case .preparingRebalance:
                group.updateMember(member.memberId, with: request, rebalanceTimeoutMs: rebalanceTimeoutMs, parked: caller, nowMs: nowMs, config: config, out: &out)
            case .completingRebalance, .stable:
                // A follower with unchanged protocols (say, it lost the first answer) gets the
                // current generation again; a changed member, or the leader in Stable (it wants a
                // new assignment, e.g. for new partitions), starts a rebalance.
                let forceRebalance = !member.matches(request.protocols) || (group.state == .stable && member.memberId == group.leaderId)
                if forceRebalance {
                    group.updateMember(member.memberId, with: request, rebalanceTimeoutMs: rebalanceTimeoutMs, parked: caller, nowMs: nowMs, config: config, out: &out)
                } else {
                    var response = group.joinResponse(for: member.memberId)
                    if group.state == .stable { response.members = [] }
                    respond(response)
                }
            case .empty, .dead:
                fail(.unknownMemberId, memberId: request.memberId)
            }
        } else {
            fail(.unknownMemberId, memberId: request.memberId)
        }
        group.maybeCompleteJoin(nowMs: nowMs, out: &out)
    }

    // MARK: SyncGroup

    /// SyncGroup v0–v5. Followers' requests wait for the leader's, which carries
    /// everyone's assignment; then each member gets its own. In Stable the current assignment is
    /// returned at once.
    public mutating func handleSyncGroup(_ request: SyncGroupRequest, version: Int16, token: Token, nowMs: Int64) -> [Output] {
        let caller = ParkedGroupRequest(token: token, version: version)
        func fail(_ code: ErrorCode) -> [Output] {
            [Output(caller, .syncGroup(ConsumerGroup<Token>.syncError(code)))]
        }
        guard !request.groupId.isEmpty else { return fail(.invalidGroupId) }
        guard var group = groups.removeValue(forKey: request.groupId) else { return fail(.unknownMemberId) }
        defer { put(group) }
        if let fenced = group.fencing(memberId: request.memberId, instanceId: request.groupInstanceId) { return fail(fenced) }
        guard group.members[request.memberId] != nil else { return fail(.unknownMemberId) }
        guard request.generationId == group.generationId else { return fail(.illegalGeneration) }
        if let type = request.protocolType, type != group.protocolType { return fail(.inconsistentGroupProtocol) }
        if let name = request.protocolName, name != group.protocolName { return fail(.inconsistentGroupProtocol) }

        var out: [Output] = []
        let memberId = request.memberId
        switch group.state {
        case .empty, .dead:
            return fail(.unknownMemberId)
        case .preparingRebalance:
            return fail(.rebalanceInProgress)
        case .completingRebalance:
            if let superseded = group.members[memberId]!.awaitingSync {
                out.append(Output(superseded, .syncGroup(ConsumerGroup<Token>.syncError(.rebalanceInProgress))))
            }
            group.members[memberId]!.awaitingSync = caller
            group.markSynced(memberId)
            if memberId == group.leaderId {
                group.applyAssignments(request.assignments, nowMs: nowMs, out: &out)
            }
        case .stable:
            group.markSynced(memberId)
            group.members[memberId]!.sessionDeadlineMs = nowMs + group.members[memberId]!.sessionTimeoutMs
            out.append(Output(caller, .syncGroup(group.syncResponse(assignment: group.members[memberId]!.assignment))))
        }
        return out
    }

    // MARK: Heartbeat

    /// Heartbeat v0–v4: keeps a member's session alive. REBALANCE_IN_PROGRESS
    /// tells a member of the current generation to rejoin.
    public mutating func handleHeartbeat(_ request: HeartbeatRequest, version: Int16, token: Token, nowMs: Int64) -> [Output] {
        [Output(token: token, version: version, response: .heartbeat(HeartbeatResponse(errorCode: heartbeat(request, nowMs: nowMs).rawValue)))]
    }

    private mutating func heartbeat(_ request: HeartbeatRequest, nowMs: Int64) -> ErrorCode {
        guard !request.groupId.isEmpty else { return .invalidGroupId }
        guard var group = groups.removeValue(forKey: request.groupId) else { return .unknownMemberId }
        defer { put(group) }
        if let fenced = group.fencing(memberId: request.memberId, instanceId: request.groupInstanceId) { return fenced }
        guard let member = group.members[request.memberId] else { return .unknownMemberId }
        guard request.generationId == group.generationId else { return .illegalGeneration }
        switch group.state {
        case .empty, .dead:
            return .unknownMemberId
        case .preparingRebalance:
            group.members[member.memberId]!.sessionDeadlineMs = nowMs + member.sessionTimeoutMs
            return .rebalanceInProgress
        case .completingRebalance, .stable:
            group.members[member.memberId]!.sessionDeadlineMs = nowMs + member.sessionTimeoutMs
            return .none
        }
    }

    // MARK: LeaveGroup

    /// LeaveGroup v0–v5: v0–v2 name one member at the top level, v3+ a batch.
    /// Each leaving member is removed and the rest rebalance.
    public mutating func handleLeaveGroup(_ request: LeaveGroupRequest, version: Int16, token: Token, nowMs: Int64) -> [Output] {
        var out: [Output] = []
        let leaving = version >= 3 ? request.members : [LeaveGroupRequest.MemberIdentity(memberId: request.memberId)]
        var response = LeaveGroupResponse()
        var results: [LeaveGroupResponse.MemberResponse] = []
        if request.groupId.isEmpty {
            response.errorCode = ErrorCode.invalidGroupId.rawValue
        } else if var group = groups.removeValue(forKey: request.groupId) {
            for identity in leaving {
                let code: ErrorCode
                if let instanceId = identity.groupInstanceId, !instanceId.isEmpty {
                    // A static member leaves by its instance id (its member id, if given, must match).
                    if let holder = group.memberId(ofInstance: instanceId) {
                        if !identity.memberId.isEmpty && identity.memberId != holder {
                            code = .fencedInstanceId
                        } else {
                            group.removeMember(holder, nowMs: nowMs, config: config, out: &out)
                            code = .none
                        }
                    } else {
                        code = .unknownMemberId
                    }
                } else if group.pendingMembers[identity.memberId] != nil {
                    group.removePendingMember(identity.memberId, nowMs: nowMs, out: &out)
                    code = .none
                } else if group.members[identity.memberId] != nil {
                    group.removeMember(identity.memberId, nowMs: nowMs, config: config, out: &out)
                    code = .none
                } else {
                    code = .unknownMemberId
                }
                results.append(.init(memberId: identity.memberId, groupInstanceId: identity.groupInstanceId, errorCode: code.rawValue))
            }
            put(group)
        } else {
            results = leaving.map { .init(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, errorCode: ErrorCode.unknownMemberId.rawValue) }
        }
        if version >= 3 {
            response.members = results
        } else if response.errorCode == 0 {
            response.errorCode = results.first?.errorCode ?? 0
        }
        out.append(Output(token: token, version: version, response: .leaveGroup(response)))
        return out
    }

    // MARK: OffsetCommit

    /// OffsetCommit v0–v9. Members of the current generation may commit (not
    /// while it waits for assignments: REBALANCE_IN_PROGRESS); so may "simple" consumers
    /// (generation < 0, no member id — v0 always) when the group has no members. The output
    /// carries the records to persist before the response is sent.
    ///
    /// Topic/partition existence is the broker's check (UNKNOWN_TOPIC_OR_PARTITION) before this.
    /// `refusal` is the broker's verdict on each partition (.none: accept): a commit for one that
    /// does not exist is answered UNKNOWN_TOPIC_OR_PARTITION, as Kafka does, one the principal may
    /// not read TOPIC_AUTHORIZATION_FAILED, and not stored.
    public mutating func handleOffsetCommit(
        _ request: OffsetCommitRequest, version: Int16, token: Token, nowMs: Int64,
        refusal: (String, Int32) -> ErrorCode = { _, _ in .none }
    ) -> [Output] {
        let generation = request.generationIdOrMemberEpoch
        var group = groups.removeValue(forKey: request.groupId)
        let rejection: ErrorCode?
        if group == nil {
            if generation < 0 {
                group = ConsumerGroup(groupId: request.groupId)
                rejection = nil
            } else {
                rejection = .illegalGeneration
            }
        } else if let fenced = group!.fencing(memberId: request.memberId, instanceId: request.groupInstanceId) {
            rejection = fenced
        } else if generation < 0 && group!.state == .empty {
            rejection = nil
        } else if let member = group!.members[request.memberId] {
            if generation != group!.generationId {
                rejection = .illegalGeneration
            } else {
                switch group!.state {
                case .stable, .preparingRebalance:
                    // In PreparingRebalance the member learns of the rebalance from its heartbeat.
                    group!.members[member.memberId]!.sessionDeadlineMs = nowMs + member.sessionTimeoutMs
                    rejection = nil
                case .completingRebalance:
                    rejection = .rebalanceInProgress
                case .empty, .dead:
                    rejection = .unknownMemberId
                }
            }
        } else {
            rejection = .unknownMemberId
        }

        var response = OffsetCommitResponse()
        var records: [OffsetCommitRecord] = []
        var previous: [CommittedOffset?] = []
        for topic in request.topics {
            var partitions: [OffsetCommitResponse.OffsetCommitResponsePartition] = []
            partitions.reserveCapacity(topic.partitions.count)
            for p in topic.partitions {
                var code = rejection ?? .none
                let metadata = p.committedMetadata ?? ""
                if rejection == nil {
                    let refused = refusal(topic.name, p.partitionIndex)
                    if refused != .none {
                        code = refused
                    } else if metadata.utf8.count > config.offsetMetadataMaxBytes {
                        code = .offsetMetadataTooLarge
                    } else {
                        let committed = CommittedOffset(
                            offset: p.committedOffset, leaderEpoch: p.committedLeaderEpoch, metadata: metadata,
                            commitTimestampMs: p.commitTimestamp >= 0 ? p.commitTimestamp : nowMs)
                        previous.append(group!.offsets[topic.name]?[p.partitionIndex])
                        group!.offsets[topic.name, default: [:]][p.partitionIndex] = committed
                        records.append(OffsetCommitRecord(groupId: request.groupId, topic: topic.name, partition: p.partitionIndex, offset: committed))
                    }
                }
                partitions.append(.init(partitionIndex: p.partitionIndex, errorCode: code.rawValue))
            }
            response.topics.append(.init(name: topic.name, partitions: partitions))
        }
        if let group { put(group) }
        var output = Output(token: token, version: version, response: .offsetCommit(response), recordsToPersist: records)
        output.replacedOffsets = previous
        return [output]
    }

    // MARK: DeleteGroups, OffsetDelete

    /// DeleteGroups: a group with no members loses its committed offsets (deletion records to
    /// persist) and is forgotten; one with members gets NON_EMPTY_GROUP, an unknown one
    /// GROUP_ID_NOT_FOUND.
    public mutating func handleDeleteGroups(_ request: DeleteGroupsRequest, version: Int16, token: Token) -> [Output] {
        var response = DeleteGroupsResponse()
        var records: [OffsetCommitRecord] = []
        var previous: [CommittedOffset?] = []
        for id in request.groupsNames {
            var code = ErrorCode.none
            if id.isEmpty {
                code = .invalidGroupId
            } else if let group = groups[id] {
                if !group.members.isEmpty || !group.pendingMembers.isEmpty || group.state != .empty {
                    code = .nonEmptyGroup
                } else {
                    for (topic, partitions) in group.offsets.sorted(by: { $0.key < $1.key }) {
                        for (partition, offset) in partitions.sorted(by: { $0.key < $1.key }) {
                            records.append(.deletion(groupId: id, topic: topic, partition: partition))
                            previous.append(offset)
                        }
                    }
                    groups[id] = nil
                }
            } else {
                code = .groupIdNotFound
            }
            response.results.append(.init(groupId: id, errorCode: code.rawValue))
        }
        var output = Output(token: token, version: version, response: .deleteGroups(response), recordsToPersist: records)
        output.replacedOffsets = previous
        return [output]
    }

    /// OffsetDelete: deletes committed offsets of a group, except for topics its members are
    /// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC), as Kafka does; a group with members that is
    /// not a consumer group gets NON_EMPTY_GROUP.
    public mutating func handleOffsetDelete(_ request: OffsetDeleteRequest, version: Int16, token: Token) -> [Output] {
        var response = OffsetDeleteResponse()
        guard !request.groupId.isEmpty else {
            response.errorCode = ErrorCode.invalidGroupId.rawValue
            return [Output(token: token, version: version, response: .offsetDelete(response))]
        }
        guard var group = groups.removeValue(forKey: request.groupId) else {
            response.errorCode = ErrorCode.groupIdNotFound.rawValue
            return [Output(token: token, version: version, response: .offsetDelete(response))]
        }
        let active = !group.members.isEmpty
        guard !active || group.protocolType == "consumer" else {
            put(group)
            response.errorCode = ErrorCode.nonEmptyGroup.rawValue
            return [Output(token: token, version: version, response: .offsetDelete(response))]
        }
        let subscribed = active ? group.subscribedTopics : []
        var records: [OffsetCommitRecord] = []
        var previous: [CommittedOffset?] = []
        for topic in request.topics {
            var partitions: [OffsetDeleteResponse.OffsetDeleteResponsePartition] = []
            for p in topic.partitions {
                var code = ErrorCode.none
                if subscribed.contains(topic.name) {
                    code = .groupSubscribedToTopic
                } else if let offset = group.offsets[topic.name]?[p.partitionIndex] {
                    records.append(.deletion(groupId: request.groupId, topic: topic.name, partition: p.partitionIndex))
                    previous.append(offset)
                    group.setOffset(nil, topic: topic.name, partition: p.partitionIndex)
                }
                partitions.append(.init(partitionIndex: p.partitionIndex, errorCode: code.rawValue))
            }
            response.topics.append(.init(name: topic.name, partitions: partitions))
        }
        put(group)
        var output = Output(token: token, version: version, response: .offsetDelete(response), recordsToPersist: records)
        output.replacedOffsets = previous
        return [output]
    }

    // MARK: OffsetFetch

    /// OffsetFetch v0–v9 (advertised 0–8): committed offsets, -1 (and "" metadata) for
    /// partitions without one; null topics (v2+) means every partition the group has committed.
    /// v8+ answers per group. Group state is not checked, as in Kafka.
    public func handleOffsetFetch(_ request: OffsetFetchRequest, version: Int16, token: Token) -> [Output] {
        var response = OffsetFetchResponse()
        if version >= 8 {
            response.groups = request.groups.map { g in
                let requested = g.topics.map { $0.map { ($0.name, $0.partitionIndexes) } }
                return .init(groupId: g.groupId, topics: fetchOffsets(g.groupId, requested).map { topic in
                    .init(name: topic.name, partitions: topic.partitions.map { p, c in
                        .init(partitionIndex: p, committedOffset: c?.offset ?? -1, committedLeaderEpoch: c?.leaderEpoch ?? -1, metadata: c?.metadata ?? "")
                    })
                })
            }
        } else {
            let requested = request.topics.map { $0.map { ($0.name, $0.partitionIndexes) } }
            response.topics = fetchOffsets(request.groupId, requested).map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { p, c in
                    .init(partitionIndex: p, committedOffset: c?.offset ?? -1, committedLeaderEpoch: c?.leaderEpoch ?? -1, metadata: c?.metadata ?? "")
                })
            }
        }
        return [Output(token: token, version: version, response: .offsetFetch(response))]
    }

    private func fetchOffsets(
        _ groupId: String, _ requested: [(String, [Int32])]?
    ) -> [(name: String, partitions: [(Int32, CommittedOffset?)])] {
        let stored = groups[groupId]?.offsets ?? [:]
        guard let requested else {
            return stored.keys.sorted().map { name in
                let partitions = stored[name]!
                return (name, partitions.keys.sorted().map { ($0, partitions[$0]) })
            }
        }
        return requested.map { name, indexes in
            (name, indexes.map { ($0, stored[name]?[$0]) })
        }
    }

    // MARK: Time

    /// Applies every deadline up to `nowMs` (session timeouts, join-phase ends, initial-delay
    /// extensions, members that never sent SyncGroup) and returns the responses that completed.
    public mutating func tick(nowMs: Int64) -> [Output] {
        var out: [Output] = []
        for id in Array(groups.keys) {
            guard let deadline = groups[id]!.nextDeadlineMs, deadline <= nowMs else { continue }
            var group = groups.removeValue(forKey: id)!
            group.tick(nowMs: nowMs, config: config, out: &out)
            put(group)
        }
        return out
    }

    /// The earliest time at which ``tick(nowMs:)`` would change something, if any.
    public var nextDeadlineMs: Int64? {
        groups.values.lazy.compactMap(\.nextDeadlineMs).min()
    }

    // MARK: Persistence

    /// Restores one committed offset from the offsets log (start-up; records in log order).
    public mutating func replay(_ record: OffsetCommitRecord) {
        var group = groups.removeValue(forKey: record.groupId) ?? ConsumerGroup(groupId: record.groupId)
        group.setOffset(record.isDeletion ? nil : record.offset, topic: record.topic, partition: record.partition)
        put(group)
    }

    /// Forgets every group `moved` picks (cluster mode: its coordinator is elsewhere now), with
    /// its members and offsets; parked JoinGroup/SyncGroup requests are answered with
    /// NOT_COORDINATOR, so that their members look the new coordinator up.
    public mutating func unload(where moved: (String) -> Bool) -> [Output] {
        var out: [Output] = []
        for id in groups.keys where moved(id) {
            let group = groups.removeValue(forKey: id)!
            for id in group.memberOrder {
                guard let member = group.members[id] else { continue }
                if let parked = member.awaitingJoin {
                    out.append(Output(parked, .joinGroup(ConsumerGroup<Token>.joinError(.notCoordinator, memberId: id, version: parked.version))))
                }
                if let parked = member.awaitingSync {
                    out.append(Output(parked, .syncGroup(ConsumerGroup<Token>.syncError(.notCoordinator))))
                }
            }
        }
        return out
    }

    /// Undoes an OffsetCommit whose records could not be persisted: each partition gets back
    /// the offset the commit replaced, unless a later commit has replaced it since.
    public mutating func revert(_ output: Output) {
        for (record, previous) in zip(output.recordsToPersist, output.replacedOffsets) {
            var group = groups.removeValue(forKey: record.groupId) ?? ConsumerGroup(groupId: record.groupId)
            let current = group.offsets[record.topic]?[record.partition]
            if record.isDeletion ? current == nil : current == record.offset {
                group.setOffset(previous, topic: record.topic, partition: record.partition)
            }
            put(group)
        }
    }

    /// Decodes and restores one record value from the offsets log.
    public mutating func replay(encoded bytes: [UInt8]) throws(OffsetCommitRecordError) {
        replay(try OffsetCommitRecord.decode(bytes))
    }

    // MARK: Inspection

    /// A group's state and membership (DescribeGroups, tests), or nil if the coordinator has none.
    public func describeGroup(_ groupId: String) -> GroupSummary? {
        guard let group = groups[groupId] else { return nil }
        return GroupSummary(
            groupId: groupId, state: group.state, generationId: group.generationId,
            protocolType: group.protocolType, protocolName: group.protocolName, leaderId: group.leaderId,
            members: group.memberOrder.map { id in
                let m = group.members[id]!
                return GroupSummary.Member(
                    memberId: id, clientId: m.clientId, groupInstanceId: m.groupInstanceId,
                    metadata: m.metadata(for: group.protocolName), assignment: m.assignment)
            })
    }

    /// Every group the coordinator knows (with members or committed offsets), sorted.
    public var groupIds: [String] { groups.keys.sorted() }

    /// One partition's committed offset in a group, if any.
    public func committedOffset(groupId: String, topic: String, partition: Int32) -> CommittedOffset? {
        groups[groupId]?.offsets[topic]?[partition]
    }

    /// Every committed offset of a group, sorted by topic and partition.
    public func committedOffsets(groupId: String) -> [(topic: String, partition: Int32, offset: CommittedOffset)] {
        guard let offsets = groups[groupId]?.offsets else { return [] }
        return offsets.flatMap { topic, partitions in partitions.map { (topic, $0.key, $0.value) } }
            .sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }

    /// Stores the group back unless nothing about it is worth keeping.
    private mutating func put(_ group: ConsumerGroup<Token>) {
        if !group.isCollectable { groups[group.groupId] = group }
    }
}

extension GroupCoordinator: Sendable where Token: Sendable {}

/// Coordinator settings, with Kafka's broker defaults and names.
public struct GroupCoordinatorConfig: Sendable, Hashable {
    /// `group.min.session.timeout.ms`: shorter session timeouts get INVALID_SESSION_TIMEOUT.
    public var minSessionTimeoutMs: Int32 = 6_000
    /// `group.max.session.timeout.ms`: longer session timeouts get INVALID_SESSION_TIMEOUT.
    public var maxSessionTimeoutMs: Int32 = 1_800_000
    /// `group.initial.rebalance.delay.ms`: how long a rebalance of an empty group waits for more
    /// members (extended by the same again while members keep joining, up to the rebalance
    /// timeout). 0 completes the first rebalance as soon as everyone known has joined.
    public var initialRebalanceDelayMs: Int32 = 3_000
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    public var offsetMetadataMaxBytes: Int = 4_096

    public init() {}

    public init(minSessionTimeoutMs: Int32 = 6_000, maxSessionTimeoutMs: Int32 = 1_800_000, initialRebalanceDelayMs: Int32 = 3_000, offsetMetadataMaxBytes: Int = 4_096) {
        self.minSessionTimeoutMs = minSessionTimeoutMs
        self.maxSessionTimeoutMs = maxSessionTimeoutMs
        self.initialRebalanceDelayMs = initialRebalanceDelayMs
        self.offsetMetadataMaxBytes = offsetMetadataMaxBytes
    }
}

/// A response the coordinator has ready, and where it goes.
public struct GroupOutput<Token> {
    /// The token passed in with the request this answers.
    public var token: Token
    /// The API version of that request: encode the response with it.
    public var version: Int16
    public var response: GroupResponse
    /// OffsetCommit only: append these (``OffsetCommitRecord/encoded()``) to the offsets log, and
    /// send `response` once they are as durable as the broker's durability mode promises.
    public var recordsToPersist: [OffsetCommitRecord]
    /// OffsetCommit only: what each of `recordsToPersist` replaced in memory (nil: nothing), so
    /// that ``GroupCoordinator/revert(_:)`` can undo a commit the log refused.
    public var replacedOffsets: [CommittedOffset?] = []

    public init(token: Token, version: Int16, response: GroupResponse, recordsToPersist: [OffsetCommitRecord] = []) {
        self.token = token
        self.version = version
        self.response = response
        self.recordsToPersist = recordsToPersist
    }
}

extension GroupOutput: Sendable where Token: Sendable {}

/// A response of one of the group APIs.
public enum GroupResponse: Hashable, Sendable {
    case joinGroup(JoinGroupResponse)
    case syncGroup(SyncGroupResponse)
    case heartbeat(HeartbeatResponse)
    case leaveGroup(LeaveGroupResponse)
    case offsetCommit(OffsetCommitResponse)
    case offsetFetch(OffsetFetchResponse)
    case deleteGroups(DeleteGroupsResponse)
    case offsetDelete(OffsetDeleteResponse)

    public var apiKey: Int16 {
        switch self {
        case .joinGroup: JoinGroupResponse.apiKey
        case .syncGroup: SyncGroupResponse.apiKey
        case .heartbeat: HeartbeatResponse.apiKey
        case .leaveGroup: LeaveGroupResponse.apiKey
        case .offsetCommit: OffsetCommitResponse.apiKey
        case .offsetFetch: OffsetFetchResponse.apiKey
        case .deleteGroups: DeleteGroupsResponse.apiKey
        case .offsetDelete: OffsetDeleteResponse.apiKey
        }
    }

    /// Encodes the body (no header) into `w` for `version`.
    public func encode(into w: inout WireWriter, version: Int16) {
        switch self {
        case .joinGroup(let r): r.encode(into: &w, version: version)
        case .syncGroup(let r): r.encode(into: &w, version: version)
        case .heartbeat(let r): r.encode(into: &w, version: version)
        case .leaveGroup(let r): r.encode(into: &w, version: version)
        case .offsetCommit(let r): r.encode(into: &w, version: version)
        case .offsetFetch(let r): r.encode(into: &w, version: version)
        case .deleteGroups(let r): r.encode(into: &w, version: version)
        case .offsetDelete(let r): r.encode(into: &w, version: version)
        }
    }
}

/// What ``GroupCoordinator/describeGroup(_:)`` reports.
public struct GroupSummary: Hashable, Sendable {
    public struct Member: Hashable, Sendable {
        public var memberId: String
        public var clientId: String
        public var groupInstanceId: String?
        /// The member's metadata for the group's protocol.
        public var metadata: [UInt8]
        public var assignment: [UInt8]
    }

    public var groupId: String
    public var state: GroupState
    public var generationId: Int32
    public var protocolType: String?
    public var protocolName: String?
    public var leaderId: String?
    /// In join order.
    public var members: [Member]
}


/// A version-4-shaped UUID string from a seed and a sequence number (SplitMix64), like Java's
/// `UUID.randomUUID().toString()`.
func groupMemberUUID(seed: UInt64, sequence: UInt64) -> String {
    var rng = SplitMix64(seed: seed &+ sequence &* 0x9E37_79B9_7F4A_7C15)
    let high = (rng.next() & ~0xF000) | 0x4000  // version 4
    let low = (rng.next() & ~(0xC << 60)) | (0x8 << 60)  // IETF variant
    func hex(_ v: UInt64, _ digits: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(digits - s.count, 0)) + s
    }
    return "\(hex(high >> 32, 8))-\(hex((high >> 16) & 0xFFFF, 4))-\(hex(high & 0xFFFF, 4))-\(hex(low >> 48, 4))-\(hex(low & 0xFFFF_FFFF_FFFF, 12))"
}
