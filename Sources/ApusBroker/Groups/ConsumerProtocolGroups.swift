import KafkaProtocol

/// A partition of a topic, by name (the coordinator's view; the wire uses topic ids).
public struct GroupPartition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: GroupPartition, b: GroupPartition) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }

    public var description: String { "\(topic)-\(partition)" }
}

/// Settings of the consumer group protocol, with Kafka's names and defaults.
public struct ConsumerProtocolConfig: Sendable, Hashable {
    /// `group.consumer.heartbeat.interval.ms`
    public var heartbeatIntervalMs: Int32 = 5_000
    /// `group.consumer.session.timeout.ms`
    public var sessionTimeoutMs: Int64 = 45_000

    public init() {}
}

/// One member of a consumer-protocol group.
struct ConsumerMember: Sendable {
    var memberId: String
    var epoch: Int32 = 0
    var previousEpoch: Int32 = -1
    var instanceId: String?
    var rackId: String?
    var clientId: String
    var subscribed: [String] = []
    /// A subscription by regular expression (v1), matched against whole topic names.
    var regex: String?
    /// What the member subscribes to now: `subscribed` and the topics `regex` matches.
    var effective: [String] = []
    /// `effective` is up to date with the subscription (the catalog version is the group's).
    var resolved = false
    var rebalanceTimeoutMs: Int32 = 300_000
    /// The partitions the member was told it may use.
    var assigned: Set<GroupPartition> = []
    /// Partitions the member was told to give up and has not yet reported released: nobody
    /// else gets them meanwhile.
    var revoking: Set<GroupPartition> = []
    /// When the member must have released `revoking` (its rebalance timeout after being told).
    var revokeDeadlineMs: Int64?
    var sessionDeadlineMs: Int64
}

/// One group of the consumer group protocol (KIP-848): the coordinator assigns partitions
/// itself and moves them between members without a stop-the-world rebalance.
struct ConsumerProtocolGroup: Sendable {
    let groupId: String
    /// Advances whenever membership, subscriptions or the subscribed topics' partitions change.
    var groupEpoch: Int32 = 0
    /// The group epoch the target assignment was computed for.
    var assignmentEpoch: Int32 = 0
    var members: [String: ConsumerMember] = [:]
    var target: [String: Set<GroupPartition>] = [:]
    var assignor = "uniform"
    /// The subscribed topics' partition counts the target was computed from.
    var partitionCounts: [String: Int] = [:]
    /// The topic catalog's version the members' subscriptions were resolved against.
    var catalogVersion: UInt64 = 0

    /// Kafka's group states for this protocol.
    var state: String {
        if members.isEmpty { return "Empty" }
        if assignmentEpoch < groupEpoch { return "Assigning" }
        return members.values.allSatisfy { $0.epoch == assignmentEpoch } ? "Stable" : "Reconciling"
    }

    /// Partitions no other member than `memberId` may be given yet (assigned, or being revoked).
    func taken(except memberId: String) -> Set<GroupPartition> {
        var out = Set<GroupPartition>()
        for (id, member) in members where id != memberId { out.formUnion(member.assigned); out.formUnion(member.revoking) }
        return out
    }

    /// Computes the target assignment with the group's assignor and makes it current.
    mutating func computeTarget() {
        target = assignor == "range" ? rangeTarget() : uniformTarget()
        assignmentEpoch = groupEpoch
    }

    /// The `range` assignor: per topic, its subscribers (by member id) get consecutive ranges,
    /// the first ones one partition more when it does not divide evenly.
    func rangeTarget() -> [String: Set<GroupPartition>] {
        var next: [String: Set<GroupPartition>] = Dictionary(uniqueKeysWithValues: members.keys.map { ($0, []) })
        for (topic, count) in partitionCounts {
            let subscribers = members.keys.sorted().filter { members[$0]!.effective.contains(topic) }
            guard !subscribers.isEmpty else { continue }
            var p = 0
            for (i, id) in subscribers.enumerated() {
                let size = count / subscribers.count + (i < count % subscribers.count ? 1 : 0)
                for q in p..<(p + size) { next[id]!.insert(GroupPartition(topic, Int32(q))) }
                p += size
            }
        }
        return next
    }

    /// The `uniform` assignor, sticky: each member keeps what it has up to its fair share of the
    /// partitions of the topics it subscribes to; the rest go to the least-loaded subscriber.
    func uniformTarget() -> [String: Set<GroupPartition>] {
        let ids = members.keys.sorted()
        var all: [GroupPartition] = []
        for (topic, count) in partitionCounts.sorted(by: { $0.key < $1.key }) {
            for p in 0..<count { all.append(GroupPartition(topic, Int32(p))) }
        }
        let share = ids.isEmpty ? 0 : (all.count + ids.count - 1) / ids.count
        var next: [String: Set<GroupPartition>] = Dictionary(uniqueKeysWithValues: ids.map { ($0, []) })
        var placed = Set<GroupPartition>()
        for id in ids {
            let member = members[id]!
            for tp in member.assigned.union(member.revoking).sorted()
            where next[id]!.count < share && partitionCounts[tp.topic].map({ Int(tp.partition) < $0 }) == true
                && member.effective.contains(tp.topic) && !placed.contains(tp) {
                next[id]!.insert(tp)
                placed.insert(tp)
            }
        }
        for tp in all where !placed.contains(tp) {
            let eligible = ids.filter { members[$0]!.effective.contains(tp.topic) }
            guard let chosen = eligible.min(by: { (next[$0]!.count, $0) < (next[$1]!.count, $1) }) else { continue }
            next[chosen]!.insert(tp)
            placed.insert(tp)
        }
        return next
    }

    /// Moves `memberId` towards its target: first it gives up what it must (kept out of
    /// everyone's reach until it reports them released), then it takes what nobody else holds,
    /// and its epoch becomes the assignment epoch.
    mutating func reconcile(_ memberId: String, nowMs: Int64) {
        guard var member = members[memberId] else { return }
        let goal = target[memberId] ?? []
        let revoke = member.assigned.subtracting(goal)
        if !revoke.isEmpty {
            member.assigned.subtract(revoke)
            member.revoking.formUnion(revoke)
            if member.revokeDeadlineMs == nil { member.revokeDeadlineMs = nowMs + Int64(member.rebalanceTimeoutMs) }
        }
        if member.revoking.isEmpty {
            member.revokeDeadlineMs = nil
            member.assigned.formUnion(goal.subtracting(member.assigned).subtracting(taken(except: memberId)))
            if member.epoch != assignmentEpoch {
                member.previousEpoch = member.epoch
                member.epoch = assignmentEpoch
            }
        }
        members[memberId] = member
    }
}

/// What a ConsumerGroupHeartbeat asks of the coordinator, decoded from topic ids to names.
struct ConsumerHeartbeat {
    var groupId: String
    var memberId: String
    var memberEpoch: Int32
    var instanceId: String?
    var rackId: String?
    var rebalanceTimeoutMs: Int32
    var subscribedTopicNames: [String]?
    /// nil: unchanged; "": none any more.
    var subscribedTopicRegex: String?
    var serverAssignor: String?
    /// The partitions the member owns, when it says (nil: unchanged).
    var owned: Set<GroupPartition>?
    var clientId: String
}

/// The coordinator's answer to a heartbeat (assignment by name; the handler maps it to ids).
struct ConsumerHeartbeatResult: Equatable {
    var error: Int16 = 0
    var message: String?
    var memberId: String?
    var memberEpoch: Int32 = 0
    var assignment: Set<GroupPartition>?
}

/// Every consumer-protocol group of the broker: a pure state machine (no I/O, no clock), used
/// on shard 0. Committed offsets stay with the classic coordinator's offset store.
struct ConsumerProtocolGroups {
    let config: ConsumerProtocolConfig
    var groups: [String: ConsumerProtocolGroup] = [:]
    let newMemberId: () -> String


    /// Handles one heartbeat. `partitions` gives a topic's partition count (nil: no such topic);
    /// `topics` every topic's name (for subscriptions by regular expression), which change only
    /// when `catalogVersion` does.
    mutating func heartbeat(
        _ hb: ConsumerHeartbeat, nowMs: Int64, catalogVersion: UInt64 = 0, topics: () -> [String], partitions: (String) -> Int?
    ) -> ConsumerHeartbeatResult {
        func fail(_ code: Int16, _ message: String) -> ConsumerHeartbeatResult {
            ConsumerHeartbeatResult(error: code, message: message, memberId: hb.memberId, memberEpoch: hb.memberEpoch)
        }
        guard !hb.groupId.isEmpty else { return fail(ErrorCode.invalidRequest.rawValue, "the group id is empty") }
        if let assignor = hb.serverAssignor, !["uniform", "range"].contains(assignor) {
            return fail(ErrorCode.unsupportedAssignor.rawValue, "server assignors: uniform, range")
        }
        if let pattern = hb.subscribedTopicRegex, !pattern.isEmpty {
            do throws(TopicPattern.Invalid) { _ = try TopicPattern(pattern) } catch {
                return fail(ErrorCode.invalidRegularExpression.rawValue, "\(pattern): \(error.reason)")
            }
        }
        var group = groups[hb.groupId] ?? ConsumerProtocolGroup(groupId: hb.groupId)
        defer { groups[hb.groupId] = group.members.isEmpty ? nil : group }

        switch hb.memberEpoch {
        case -1, -2:
            // -1 leaves; -2 is a static member going away for a restart: its place is kept
            // until its session times out, so that it comes back to the same partitions.
            guard group.members[hb.memberId] != nil else { return fail(ErrorCode.unknownMemberId.rawValue, "unknown member") }
            if hb.memberEpoch == -1 {
                group.members[hb.memberId] = nil
                group.groupEpoch += 1
            }
            return ConsumerHeartbeatResult(memberId: hb.memberId, memberEpoch: hb.memberEpoch)
        case 0:
            let subscribed = hb.subscribedTopicNames ?? []
            let memberId = hb.memberId.isEmpty ? newMemberId() : hb.memberId
            var member = ConsumerMember(memberId: memberId, instanceId: hb.instanceId, rackId: hb.rackId, clientId: hb.clientId,
                                        subscribed: subscribed.sorted(), regex: hb.subscribedTopicRegex.flatMap { $0.isEmpty ? nil : $0 },
                                        sessionDeadlineMs: nowMs + config.sessionTimeoutMs)
            if let instance = hb.instanceId, let previous = group.members.values.first(where: { $0.instanceId == instance }) {
                // A static member back from a restart takes its place: same epoch, same partitions.
                group.members[previous.memberId] = nil
                group.target[memberId] = group.target.removeValue(forKey: previous.memberId)
                member.epoch = previous.epoch
                member.previousEpoch = previous.previousEpoch
                member.assigned = previous.assigned
                member.effective = previous.effective
                member.revoking = previous.revoking
                if member.subscribed != previous.subscribed || member.regex != previous.regex { group.groupEpoch += 1 }
            } else {
                if group.members[memberId] != nil { group.members[memberId] = nil }  // a fenced member rejoining
                group.groupEpoch += 1
            }
            if hb.rebalanceTimeoutMs >= 0 { member.rebalanceTimeoutMs = hb.rebalanceTimeoutMs }
            if let assignor = hb.serverAssignor, assignor != group.assignor {
                group.assignor = assignor
                group.groupEpoch += 1
            }
            group.members[memberId] = member
            return advance(&group, memberId, nowMs: nowMs, catalogVersion: catalogVersion, topics: topics, partitions: partitions)
        default:
            guard var member = group.members[hb.memberId] else { return fail(ErrorCode.unknownMemberId.rawValue, "unknown member") }
            if hb.memberEpoch != member.epoch {
                // A member whose last answer was lost may still speak for the previous epoch.
                let lostAnswer = hb.memberEpoch == member.previousEpoch && (hb.owned ?? []).isSubset(of: member.assigned)
                guard lostAnswer else { return fail(ErrorCode.fencedMemberEpoch.rawValue, "member epoch \(hb.memberEpoch), expected \(member.epoch)") }
            }
            member.sessionDeadlineMs = nowMs + config.sessionTimeoutMs
            if let subscribed = hb.subscribedTopicNames?.sorted(), subscribed != member.subscribed {
                member.subscribed = subscribed
                member.resolved = false
            }
            if let pattern = hb.subscribedTopicRegex, (pattern.isEmpty ? nil : pattern) != member.regex {
                member.regex = pattern.isEmpty ? nil : pattern
                member.resolved = false
            }
            if hb.rebalanceTimeoutMs >= 0 { member.rebalanceTimeoutMs = hb.rebalanceTimeoutMs }
            if let owned = hb.owned { member.revoking.formIntersection(owned) }
            group.members[hb.memberId] = member
            return advance(&group, hb.memberId, nowMs: nowMs, catalogVersion: catalogVersion, topics: topics, partitions: partitions)
        }
    }

    /// Recomputes the target when the group epoch moved (or the subscribed topics' partitions
    /// changed), then reconciles the member.
    private func advance(
        _ group: inout ConsumerProtocolGroup, _ memberId: String, nowMs: Int64, catalogVersion: UInt64, topics: () -> [String],
        partitions: (String) -> Int?
    ) -> ConsumerHeartbeatResult {
        // Resolve the subscriptions that changed (all of them when the catalog did): names, and
        // what a regular expression matches now. A change moves the group epoch.
        let everyone = catalogVersion != group.catalogVersion
        group.catalogVersion = catalogVersion
        let stale = group.members.filter { everyone || !$0.value.resolved }
        let names = stale.values.contains { $0.regex != nil } ? topics().sorted() : []
        for (id, member) in stale {
            group.members[id]!.resolved = true
            var effective = Set(member.subscribed)
            if let pattern = member.regex, let regex = try? TopicPattern(pattern) {
                for name in names where regex.matches(name) { effective.insert(name) }
            }
            let sorted = effective.sorted()
            if sorted != member.effective {
                group.members[id]!.effective = sorted
                group.groupEpoch += 1
            }
        }
        var counts: [String: Int] = [:]
        for topic in Set(group.members.values.flatMap(\.effective)) { if let n = partitions(topic) { counts[topic] = n } }
        if counts != group.partitionCounts {
            group.partitionCounts = counts
            group.groupEpoch += 1
        }
        if group.assignmentEpoch < group.groupEpoch { group.computeTarget() }
        group.reconcile(memberId, nowMs: nowMs)
        let member = group.members[memberId]!
        return ConsumerHeartbeatResult(memberId: memberId, memberEpoch: member.epoch, assignment: member.assigned)
    }

    /// Removes members whose session expired, or that did not release revoked partitions within
    /// their rebalance timeout; their partitions go to the others.
    mutating func tick(nowMs: Int64) {
        for (id, group) in groups {
            var changed = group
            for (memberId, member) in group.members
            where member.sessionDeadlineMs <= nowMs || member.revokeDeadlineMs.map({ $0 <= nowMs }) == true {
                changed.members[memberId] = nil
                changed.groupEpoch += 1
            }
            groups[id] = changed.members.isEmpty ? nil : changed
        }
    }

    /// Why an OffsetCommit from `memberId` at `epoch` is refused, if this is a consumer-protocol
    /// group; nil to let the commit through (a "simple" commit with no member is allowed too).
    func commitRefusal(groupId: String, memberId: String, epoch: Int32) -> Int16? {
        guard let group = groups[groupId], !memberId.isEmpty || epoch >= 0 else { return nil }
        guard let member = group.members[memberId] else { return ErrorCode.unknownMemberId.rawValue }
        return epoch == member.epoch || epoch == member.previousEpoch ? nil : ErrorCode.staleMemberEpoch.rawValue
    }
}
