@testable import ApusBroker
import KafkaProtocol
import Testing

/// The consumer group protocol's coordinator (KIP-848) driven by hand: assignments converge,
/// no partition is ever held by two members, epochs fence stale members.
@Suite struct ConsumerProtocolGroupsTests {
    struct Driver {
        var groups: ConsumerProtocolGroups
        var now: Int64 = 1_000
        /// The topics and their partition counts; a change moves the catalog version, as the broker's does.
        var counts: [String: Int] = ["t": 6] { didSet { version += 1 } }
        var version: UInt64 = 1
        var ids = 0

        init(sessionTimeoutMs: Int64 = 45_000) {
            var config = ConsumerProtocolConfig()
            config.sessionTimeoutMs = sessionTimeoutMs
            var next = 0
            groups = ConsumerProtocolGroups(config: config, newMemberId: { next += 1; return "m\(next)" })
        }

        mutating func beat(_ memberId: String, epoch: Int32, topics: [String]? = nil, regex: String? = nil, owned: Set<GroupPartition>? = nil,
                           instance: String? = nil, assignor: String? = nil) -> ConsumerHeartbeatResult {
            let counts = self.counts
            return groups.heartbeat(ConsumerHeartbeat(
                groupId: "g", memberId: memberId, memberEpoch: epoch, instanceId: instance, rackId: nil, rebalanceTimeoutMs: 30_000,
                subscribedTopicNames: topics, subscribedTopicRegex: regex, serverAssignor: assignor, owned: owned, clientId: "c"),
                nowMs: now, catalogVersion: version, topics: { Array(counts.keys) }) { counts[$0] }
        }

        /// Heartbeats every member (reporting what it was last given as owned) until nothing changes.
        mutating func settle(_ members: inout [String: (epoch: Int32, owned: Set<GroupPartition>)]) {
            for _ in 0..<10 {
                var changed = false
                for id in members.keys.sorted() {
                    let r = beat(id, epoch: members[id]!.epoch, owned: members[id]!.owned)
                    #expect(r.error == 0, "\(id): \(r.message ?? "")")
                    let next = (r.memberEpoch, r.assignment ?? members[id]!.owned)
                    if next.0 != members[id]!.epoch || next.1 != members[id]!.owned { changed = true }
                    members[id] = next
                    assertExclusive()
                }
                if !changed { return }
            }
        }

        /// No partition is assigned to (or still being revoked from) two members.
        func assertExclusive() {
            var seen = Set<GroupPartition>()
            for member in groups.groups["g"]?.members.values ?? [:].values {
                for tp in member.assigned.union(member.revoking) {
                    #expect(seen.insert(tp).inserted, "\(tp) held twice")
                }
            }
        }
    }

    @Test func membersJoiningAndLeavingConvergeWithoutSharingAPartition() {
        var d = Driver()
        let first = d.beat("", epoch: 0, topics: ["t"])
        let a = first.memberId!
        #expect(first.memberEpoch > 0 && first.assignment?.count == 6, "alone: every partition at once")
        var members: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [a: (first.memberEpoch, first.assignment!)]
        // b joins: a must give up half before b gets it.
        let joined = d.beat("", epoch: 0, topics: ["t"])
        let b = joined.memberId!
        #expect(joined.assignment == [], "nothing until a releases")
        members[b] = (joined.memberEpoch, [])
        d.settle(&members)
        #expect(members[a]!.owned.count == 3 && members[b]!.owned.count == 3)
        #expect(members[a]!.owned.isDisjoint(with: members[b]!.owned))
        #expect(d.groups.groups["g"]?.state == "Stable")
        let epoch = members[a]!.epoch
        #expect(members[b]!.epoch == epoch)
        // A stale epoch is fenced.
        #expect(d.beat(a, epoch: epoch + 7).error == ErrorCode.fencedMemberEpoch.rawValue)
        #expect(d.beat("nobody", epoch: 3).error == ErrorCode.unknownMemberId.rawValue)
        // a leaves: b gets everything.
        #expect(d.beat(a, epoch: -1).memberEpoch == -1)
        members[a] = nil
        d.settle(&members)
        #expect(members[b]!.owned.count == 6)
        // New partitions are picked up.
        d.counts["t"] = 8
        d.settle(&members)
        #expect(members[b]!.owned.count == 8)
    }

    @Test func sessionExpiryAndStaticRejoin() {
        var d = Driver(sessionTimeoutMs: 10_000)
        let a = d.beat("", epoch: 0, topics: ["t"], instance: "ia")
        let b = d.beat("", epoch: 0, topics: ["t"])
        var members: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [a.memberId!: (a.memberEpoch, a.assignment!), b.memberId!: (b.memberEpoch, [])]
        d.settle(&members)
        let aOwned = members[a.memberId!]!.owned
        // The static member restarts: -2, then a join with the same instance id gets the same partitions.
        #expect(d.beat(a.memberId!, epoch: -2).error == 0)
        let back = d.beat("", epoch: 0, topics: ["t"], instance: "ia")
        #expect(back.assignment == aOwned && back.memberEpoch == members[a.memberId!]!.epoch, "no reassignment")
        // b stops heartbeating: after the session timeout its partitions move.
        d.now += 6_000
        #expect(d.beat(back.memberId!, epoch: back.memberEpoch).error == 0)
        d.now += 6_000
        d.groups.tick(nowMs: d.now)
        #expect(d.groups.groups["g"]?.members[b.memberId!] == nil)
        var left: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [back.memberId!: (back.memberEpoch, back.assignment!)]
        d.settle(&left)
        #expect(left[back.memberId!]!.owned.count == 6)
    }

    /// A member that never releases what it was told to give up is removed after its rebalance
    /// timeout, so the others are not blocked for ever.
    @Test func aMemberThatKeepsRevokedPartitionsIsRemoved() {
        var d = Driver()
        let a = d.beat("", epoch: 0, topics: ["t"])
        let b = d.beat("", epoch: 0, topics: ["t"])
        let told = d.beat(a.memberId!, epoch: a.memberEpoch, owned: a.assignment)  // a is told to give up half
        #expect(told.assignment?.count == 3)
        // a keeps heartbeating with all six still owned; b gets nothing meanwhile.
        d.now += 20_000
        #expect(d.beat(a.memberId!, epoch: told.memberEpoch, owned: a.assignment).error == 0)
        #expect(d.beat(b.memberId!, epoch: b.memberEpoch, owned: []).assignment == [])
        d.now += 11_000  // past the 30 s rebalance timeout
        d.groups.tick(nowMs: d.now)
        #expect(d.groups.groups["g"]?.members[a.memberId!] == nil)
        var left: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [b.memberId!: (b.memberEpoch, [])]
        d.settle(&left)
        #expect(left[b.memberId!]!.owned.count == 6)
    }

    /// A subscription by regular expression covers the topics it matches, later ones included.
    @Test func regexSubscriptionsFollowTheTopics() {
        var d = Driver()
        d.counts = ["orders": 2, "orders-eu": 2, "payments": 2]
        let a = d.beat("", epoch: 0, topics: [], regex: "orders.*")
        #expect(Set(a.assignment!.map(\.topic)) == ["orders", "orders-eu"])
        var members: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [a.memberId!: (a.memberEpoch, a.assignment!)]
        d.counts["orders-us"] = 3
        d.settle(&members)
        #expect(members[a.memberId!]!.owned.count == 7, "a topic created later is picked up")
        #expect(d.beat("", epoch: 0, topics: [], regex: "orders(").error == ErrorCode.invalidRegularExpression.rawValue)
    }

    @Test func rangeAssignorGivesConsecutivePartitions() {
        var d = Driver()
        let a = d.beat("", epoch: 0, topics: ["t"], assignor: "range")
        let b = d.beat("", epoch: 0, topics: ["t"], assignor: "range")
        var members: [String: (epoch: Int32, owned: Set<GroupPartition>)] = [a.memberId!: (a.memberEpoch, a.assignment!), b.memberId!: (b.memberEpoch, [])]
        d.settle(&members)
        let ranges = members.keys.sorted().map { members[$0]!.owned.map(\.partition).sorted() }
        #expect(ranges == [[0, 1, 2], [3, 4, 5]])
        #expect(d.beat("", epoch: 0, topics: ["t"], assignor: "sticky").error == ErrorCode.unsupportedAssignor.rawValue)
    }
}

/// The linear-time pattern matcher behind regular-expression subscriptions.
@Suite struct TopicPatternTests {
    @Test func matchesWholeNamesWithRE2Syntax() throws {
        let cases: [(String, String, Bool)] = [
            ("orders", "orders", true), ("orders", "orders-eu", false), ("orders.*", "orders-eu", true),
            ("^orders-(eu|us)$", "orders-us", true), ("^orders-(eu|us)$", "orders-asia", false),
            ("[a-c]+\\.[0-9]{2,3}", "abc.12", true), ("[a-c]+\\.[0-9]{2,3}", "abc.1234", false),
            ("[^.]+", "a.b", false), ("\\w+-\\d?", "topic_1-", true), ("(?:x|y)z*", "yzzz", true),
            ("a{3}", "aaa", true), ("a{3}", "aa", false), ("a{2,}", "aaaaa", true), ("", "", true), ("", "a", false),
            ("t[.-]x", "t-x", true), ("colou?r", "color", true),
            // librdkafka joins several subscriptions so: anchors inside groups.
            ("(^rx-[ab]$)|(^other$)", "rx-b", true), ("(^rx-[ab]$)|(^other$)", "other", true), ("(^rx-[ab]$)|(^other$)", "rx-c", false),
            ("a^b", "ab", false), ("a$b", "ab", false),
        ]
        for (pattern, name, expected) in cases {
            #expect(try TopicPattern(pattern).matches(name) == expected, "\(pattern) ~ \(name)")
        }
    }

    @Test func refusesWhatItDoesNotSupport() {
        for pattern in ["(", "a)", "[a-", "*a", "a\\1", "(?=a)", "a{5,2}", "x{100000}", String(repeating: "a", count: 2_000)] {
            #expect(throws: TopicPattern.Invalid.self, "\(pattern)") { try TopicPattern(pattern) }
        }
    }

    /// Patterns that take a backtracking engine exponential time run in linear time here.
    @Test func pathologicalPatternsStayLinear() throws {
        let name = String(repeating: "a", count: 249)
        #expect(try TopicPattern("(a|a)*b").matches(name) == false)
        #expect(try TopicPattern("(a+)+b").matches(name) == false)
        #expect(try TopicPattern("(a*)*a*a*a*a*a*b").matches(name) == false)
        #expect(try TopicPattern("(a|aa)+").matches(name) == true)
    }
}
