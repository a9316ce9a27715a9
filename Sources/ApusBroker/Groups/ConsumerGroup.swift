import KafkaProtocol
import KafkaWire

/// A classic group's state, as Kafka's `GroupMetadata` names them.
///
/// `Empty → PreparingRebalance → CompletingRebalance → Stable`, back to `PreparingRebalance`
/// whenever membership or a member's protocols change. `Dead` is never entered here: an empty
/// group with no members, pending members or offsets is simply forgotten.
public enum GroupState: String, Sendable, Hashable, CustomStringConvertible {
    case empty = "Empty"
    case preparingRebalance = "PreparingRebalance"
    case completingRebalance = "CompletingRebalance"
    case stable = "Stable"
    case dead = "Dead"

    public var description: String { rawValue }
}

/// A request whose response is delayed (JoinGroup, SyncGroup): who gets the answer.
struct ParkedGroupRequest<Token> {
    var token: Token
    var version: Int16
}

/// One member of a classic group.
struct GroupMember<Token> {
    var memberId: String
    var clientId: String
    var groupInstanceId: String?
    var protocolType: String
    /// The member's protocols in its order of preference.
    var protocols: [JoinGroupRequest.JoinGroupRequestProtocol]
    var sessionTimeoutMs: Int64
    var rebalanceTimeoutMs: Int64
    /// The member's assignment in the current generation (set by the leader's SyncGroup).
    var assignment: [UInt8] = []
    /// When the member is removed unless it heartbeats (ignored while a request is parked).
    var sessionDeadlineMs: Int64
    var awaitingJoin: ParkedGroupRequest<Token>?
    var awaitingSync: ParkedGroupRequest<Token>?

    func supports(_ protocolName: String) -> Bool {
        protocols.contains { $0.name == protocolName }
    }

    func metadata(for protocolName: String?) -> [UInt8] {
        protocols.first { $0.name == protocolName }?.metadata ?? []
    }

    /// Same protocols, same metadata, same order (Kafka's `MemberMetadata.matches`).
    func matches(_ other: [JoinGroupRequest.JoinGroupRequestProtocol]) -> Bool {
        protocols == other
    }

    /// Members waiting for a JoinGroup or SyncGroup answer are kept alive: the rebalance and
    /// sync deadlines bound those waits instead.
    func hasExpired(nowMs: Int64) -> Bool {
        awaitingJoin == nil && awaitingSync == nil && sessionDeadlineMs <= nowMs
    }
}

/// The group-level timer of a join phase that began in `Empty` (Kafka's `InitialDelayedJoin`).
struct InitialRebalanceDelay {
    /// How much of the rebalance timeout is left to extend the delay by.
    var remainingMs: Int64
    /// Whether a member joined since the delay was last (re)started.
    var newMemberAdded: Bool
}

/// One classic consumer group: membership state machine and committed offsets.
///
/// Owned by ``GroupCoordinator``; not thread-safe. Methods append every response they complete
/// (their own caller's and other members' parked ones) to `out`.
struct ConsumerGroup<Token> {
    typealias Output = GroupOutput<Token>
    typealias Member = GroupMember<Token>

    let groupId: String
    var state: GroupState = .empty
    var generationId: Int32 = 0
    var protocolType: String?
    var protocolName: String?
    var leaderId: String?
    var members: [String: Member] = [:]
    /// Member ids in the order they joined: leader succession and member lists follow it.
    var memberOrder: [String] = []
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    var pendingMembers: [String: Int64] = [:]
    /// In PreparingRebalance: when the join phase ends whether or not everyone rejoined.
    var joinDeadlineMs: Int64?
    var initialDelay: InitialRebalanceDelay?
    /// Members of the new generation that have not sent SyncGroup yet, and until when they may.
    var pendingSyncMembers: Set<String> = []
    var syncDeadlineMs: Int64?
    /// topic → partition → committed offset.
    var offsets: [String: [Int32: CommittedOffset]] = [:]

    init(groupId: String) {
        self.groupId = groupId
    }

    /// Sets (or, with nil, forgets) a partition's committed offset.
    mutating func setOffset(_ offset: CommittedOffset?, topic: String, partition: Int32) {
        offsets[topic, default: [:]][partition] = offset
        if offsets[topic]!.isEmpty { offsets[topic] = nil }
    }

    /// The topics the members subscribe to, from their consumer-protocol metadata for the
    /// group's protocol (`ConsumerProtocolSubscription`: version, then the topic names).
    var subscribedTopics: Set<String> {
        var topics = Set<String>()
        for member in members.values {
            let metadata = member.metadata(for: protocolName)
            metadata.withUnsafeBytes { raw in
                var r = WireReader(raw)
                guard (try? r.readInt16()) != nil, let count = try? r.readInt32(), count >= 0 else { return }
                for _ in 0..<count {
                    guard let name = try? r.readString(compact: false) else { return }
                    topics.insert(name)
                }
            }
        }
        return topics
    }

    /// Nothing left worth keeping: the coordinator drops the group.
    var isCollectable: Bool {
        state == .empty && members.isEmpty && pendingMembers.isEmpty && offsets.isEmpty
    }

    /// The group's rebalance timeout: the largest of its members'.
    var rebalanceTimeoutMs: Int64 {
        members.values.lazy.map(\.rebalanceTimeoutMs).max() ?? 0
    }

    var allMembersJoined: Bool {
        pendingMembers.isEmpty && members.values.allSatisfy { $0.awaitingJoin != nil }
    }

    /// Whether a member (new, or `memberId` rejoining) with these protocols may be in the group:
    /// same protocol type, and at least one protocol every other member also supports.
    func supportsProtocols(type: String, names: [String], excluding memberId: String) -> Bool {
        guard !type.isEmpty, !names.isEmpty else { return false }
        if members.isEmpty { return true }
        guard protocolType == type else { return false }
        return names.contains { name in
            members.values.allSatisfy { $0.memberId == memberId || $0.supports(name) }
        }
    }

    /// The protocol for the next generation. Candidates are the protocols every member supports;
    /// each member votes for the first candidate in its own list; most votes wins, and a tie goes
    /// to the candidate the leader lists first. (Kafka votes the same way but breaks ties
    /// arbitrarily.)
    func selectProtocol() -> String? {
        let ordered = memberOrder.compactMap { members[$0] }
        guard let leader = leaderId.flatMap({ members[$0] }) ?? ordered.first else { return nil }
        let candidates = leader.protocols.map(\.name).filter { name in ordered.allSatisfy { $0.supports(name) } }
        guard !candidates.isEmpty else { return leader.protocols.first?.name }
        var votes: [String: Int] = [:]
        for member in ordered {
            if let choice = member.protocols.first(where: { candidates.contains($0.name) }) {
                votes[choice.name, default: 0] += 1
            }
        }
        var best = candidates[0]
        for name in candidates where votes[name, default: 0] > votes[best, default: 0] {
            best = name
        }
        return best
    }

    // MARK: Responses

    /// The JoinGroup answer for `memberId` in the current generation; the leader's lists every
    /// member with its metadata for the chosen protocol, in join order.
    func joinResponse(for memberId: String) -> JoinGroupResponse {
        var response = JoinGroupResponse(
            generationId: generationId, protocolType: protocolType, protocolName: protocolName,
            leader: leaderId ?? "", memberId: memberId)
        if memberId == leaderId {
            response.members = memberOrder.compactMap { id in
                members[id].map { .init(memberId: id, groupInstanceId: $0.groupInstanceId, metadata: $0.metadata(for: protocolName)) }
            }
        }
        return response
    }

    static func joinError(_ code: ErrorCode, memberId: String, version: Int16) -> JoinGroupResponse {
        JoinGroupResponse(
            errorCode: code.rawValue, generationId: -1, protocolType: nil,
            protocolName: version >= 7 ? nil : "", leader: "", memberId: memberId)
    }

    func syncResponse(assignment: [UInt8]) -> SyncGroupResponse {
        SyncGroupResponse(protocolType: protocolType, protocolName: protocolName, assignment: assignment)
    }

    static func syncError(_ code: ErrorCode) -> SyncGroupResponse {
        SyncGroupResponse(errorCode: code.rawValue)
    }

    // MARK: Membership changes

    mutating func addMember(_ member: Member, nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]) {
        if members.isEmpty { protocolType = member.protocolType }
        if leaderId == nil { leaderId = member.memberId }
        members[member.memberId] = member
        memberOrder.append(member.memberId)
        if state == .preparingRebalance, initialDelay != nil { initialDelay!.newMemberAdded = true }
        maybePrepareRebalance(nowMs: nowMs, config: config, out: &out)
    }

    /// The member id a static member (KIP-345 `group.instance.id`) has now, if it is in the group.
    func memberId(ofInstance instanceId: String) -> String? {
        members.values.first { $0.groupInstanceId == instanceId }?.memberId
    }

    /// A static member came back with a new member id: it takes over the old member's place
    /// (assignment, leadership, join order) and the old id is fenced — requests it has parked
    /// are answered FENCED_INSTANCE_ID.
    mutating func replaceStaticMember(_ oldId: String, with newId: String, clientId: String, out: inout [Output]) {
        guard var member = members.removeValue(forKey: oldId) else { return }
        if let parked = member.awaitingJoin {
            out.append(Output(parked, .joinGroup(Self.joinError(.fencedInstanceId, memberId: oldId, version: parked.version))))
        }
        if let parked = member.awaitingSync {
            out.append(Output(parked, .syncGroup(Self.syncError(.fencedInstanceId))))
        }
        member.memberId = newId
        member.clientId = clientId
        member.awaitingJoin = nil
        member.awaitingSync = nil
        members[newId] = member
        memberOrder = memberOrder.map { $0 == oldId ? newId : $0 }
        if leaderId == oldId { leaderId = newId }
        if pendingSyncMembers.remove(oldId) != nil { pendingSyncMembers.insert(newId) }
    }

    /// Why a request naming `memberId` and `instanceId` is refused for static membership, if
    /// it is: another member id now holds the instance (FENCED_INSTANCE_ID).
    func fencing(memberId: String, instanceId: String?) -> ErrorCode? {
        guard let instanceId, !instanceId.isEmpty, let holder = self.memberId(ofInstance: instanceId) else { return nil }
        return holder == memberId ? nil : .fencedInstanceId
    }

    /// A known member rejoins: new protocols/timeouts, its JoinGroup parked, a rebalance if none is on.
    mutating func updateMember(
        _ memberId: String, with request: JoinGroupRequest, rebalanceTimeoutMs: Int64, parked: ParkedGroupRequest<Token>,
        nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]
    ) {
        if let superseded = members[memberId]!.awaitingJoin {
            // A client that re-sent JoinGroup no longer waits for the first one.
            out.append(Output(superseded, .joinGroup(Self.joinError(.rebalanceInProgress, memberId: memberId, version: superseded.version))))
        }
        members[memberId]!.protocols = request.protocols
        members[memberId]!.sessionTimeoutMs = Int64(request.sessionTimeoutMs)
        members[memberId]!.rebalanceTimeoutMs = rebalanceTimeoutMs
        members[memberId]!.awaitingJoin = parked
        maybePrepareRebalance(nowMs: nowMs, config: config, out: &out)
    }

    /// Removes a member, answering any request it has parked with UNKNOWN_MEMBER_ID, and moves the
    /// group on (a rebalance from Stable/CompletingRebalance; maybe the end of a join phase).
    mutating func removeMember(_ memberId: String, nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]) {
        guard let member = members.removeValue(forKey: memberId) else { return }
        if let parked = member.awaitingJoin {
            out.append(Output(parked, .joinGroup(Self.joinError(.unknownMemberId, memberId: "", version: parked.version))))
        }
        if let parked = member.awaitingSync {
            out.append(Output(parked, .syncGroup(Self.syncError(.unknownMemberId))))
        }
        memberOrder.removeAll { $0 == memberId }
        markSynced(memberId)
        if leaderId == memberId { leaderId = memberOrder.first }
        switch state {
        case .stable, .completingRebalance:
            maybePrepareRebalance(nowMs: nowMs, config: config, out: &out)
        case .preparingRebalance:
            maybeCompleteJoin(nowMs: nowMs, out: &out)
        case .empty, .dead:
            break
        }
    }

    mutating func removePendingMember(_ memberId: String, nowMs: Int64, out: inout [Output]) {
        pendingMembers.removeValue(forKey: memberId)
        maybeCompleteJoin(nowMs: nowMs, out: &out)
    }

    mutating func markSynced(_ memberId: String) {
        pendingSyncMembers.remove(memberId)
        if pendingSyncMembers.isEmpty { syncDeadlineMs = nil }
    }

    // MARK: Rebalance

    mutating func maybePrepareRebalance(nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]) {
        switch state {
        case .empty, .stable, .completingRebalance:
            prepareRebalance(nowMs: nowMs, config: config, out: &out)
        case .preparingRebalance, .dead:
            break
        }
    }

    /// Enters PreparingRebalance: members waiting for their assignment are told to rejoin, and the
    /// join phase gets its deadline (the initial delay when the group was empty, else the
    /// rebalance timeout).
    mutating func prepareRebalance(nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]) {
        if state == .completingRebalance {
            for id in memberOrder {
                members[id]!.assignment = []
                if let parked = members[id]!.awaitingSync {
                    members[id]!.awaitingSync = nil
                    out.append(Output(parked, .syncGroup(Self.syncError(.rebalanceInProgress))))
                }
            }
        }
        pendingSyncMembers = []
        syncDeadlineMs = nil
        if state == .empty && config.initialRebalanceDelayMs > 0 {
            let delay = Int64(config.initialRebalanceDelayMs)
            initialDelay = InitialRebalanceDelay(remainingMs: max(rebalanceTimeoutMs - delay, 0), newMemberAdded: false)
            joinDeadlineMs = nowMs + delay
        } else {
            initialDelay = nil
            joinDeadlineMs = nowMs + rebalanceTimeoutMs
        }
        state = .preparingRebalance
        maybeCompleteJoin(nowMs: nowMs, out: &out)
    }

    /// Ends the join phase early once every member (and no pending one) has rejoined; never
    /// during an initial delay, which always runs its course.
    mutating func maybeCompleteJoin(nowMs: Int64, out: inout [Output]) {
        guard state == .preparingRebalance, initialDelay == nil, allMembersJoined else { return }
        completeJoin(nowMs: nowMs, out: &out)
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation advances,
    /// and every parked JoinGroup is answered (the leader's with the member list).
    mutating func completeJoin(nowMs: Int64, out: inout [Output]) {
        for id in memberOrder where members[id]!.awaitingJoin == nil {
            members.removeValue(forKey: id)
        }
        memberOrder.removeAll { members[$0] == nil }
        initialDelay = nil
        joinDeadlineMs = nil
        generationId &+= 1
        guard let first = memberOrder.first else {
            state = .empty
            protocolType = nil
            protocolName = nil
            leaderId = nil
            return
        }
        if leaderId.flatMap({ members[$0] }) == nil { leaderId = first }
        protocolName = selectProtocol()
        state = .completingRebalance
        for id in memberOrder {
            let parked = members[id]!.awaitingJoin!
            members[id]!.awaitingJoin = nil
            members[id]!.sessionDeadlineMs = nowMs + members[id]!.sessionTimeoutMs
            out.append(Output(parked, .joinGroup(joinResponse(for: id))))
        }
        pendingSyncMembers = Set(memberOrder)
        syncDeadlineMs = nowMs + rebalanceTimeoutMs
    }

    /// The leader's SyncGroup: record everyone's assignment (missing members get an empty one),
    /// answer every parked SyncGroup, become Stable.
    mutating func applyAssignments(_ assignments: [SyncGroupRequest.SyncGroupRequestAssignment], nowMs: Int64, out: inout [Output]) {
        var given: [String: [UInt8]] = [:]
        for a in assignments { given[a.memberId] = a.assignment }
        state = .stable
        for id in memberOrder {
            members[id]!.assignment = given[id] ?? []
            if let parked = members[id]!.awaitingSync {
                members[id]!.awaitingSync = nil
                members[id]!.sessionDeadlineMs = nowMs + members[id]!.sessionTimeoutMs
                out.append(Output(parked, .syncGroup(syncResponse(assignment: members[id]!.assignment))))
            }
        }
    }

    // MARK: Time

    /// Applies every deadline that has passed: lapsed pending ids and sessions, the end of a join
    /// phase (or an extension of the initial delay), members that never sent SyncGroup.
    mutating func tick(nowMs: Int64, config: GroupCoordinatorConfig, out: inout [Output]) {
        for (id, deadline) in pendingMembers where deadline <= nowMs {
            removePendingMember(id, nowMs: nowMs, out: &out)
        }
        for id in memberOrder where members[id]?.hasExpired(nowMs: nowMs) == true {
            removeMember(id, nowMs: nowMs, config: config, out: &out)
        }
        if state == .preparingRebalance, let deadline = joinDeadlineMs, deadline <= nowMs {
            if var delay = initialDelay, delay.newMemberAdded, delay.remainingMs > 0 {
                // Kafka's InitialDelayedJoin: members keep arriving, so wait one more delay,
                // never past the rebalance timeout.
                let step = min(Int64(config.initialRebalanceDelayMs), delay.remainingMs)
                delay.remainingMs -= step
                delay.newMemberAdded = false
                initialDelay = delay
                joinDeadlineMs = nowMs + step
            } else {
                completeJoin(nowMs: nowMs, out: &out)
            }
        }
        if state == .completingRebalance || state == .stable, let deadline = syncDeadlineMs, deadline <= nowMs {
            let laggards = memberOrder.filter { pendingSyncMembers.contains($0) }
            pendingSyncMembers = []
            syncDeadlineMs = nil
            for id in laggards {
                removeMember(id, nowMs: nowMs, config: config, out: &out)
            }
        }
    }

    /// The earliest time ``tick(nowMs:config:out:)`` has something to do.
    var nextDeadlineMs: Int64? {
        var next: Int64? = nil
        func consider(_ t: Int64?) {
            if let t, next.map({ t < $0 }) ?? true { next = t }
        }
        consider(pendingMembers.values.min())
        for member in members.values where member.awaitingJoin == nil && member.awaitingSync == nil {
            consider(member.sessionDeadlineMs)
        }
        if state == .preparingRebalance { consider(joinDeadlineMs) }
        if state == .completingRebalance || state == .stable { consider(syncDeadlineMs) }
        return next
    }
}

extension GroupOutput {
    init(_ parked: ParkedGroupRequest<Token>, _ response: GroupResponse) {
        self.init(token: parked.token, version: parked.version, response: response)
    }
}

extension ParkedGroupRequest: Sendable where Token: Sendable {}
extension GroupMember: Sendable where Token: Sendable {}
extension ConsumerGroup: Sendable where Token: Sendable {}
