@testable import ApusBroker
import ApusTestSupport
import Foundation
import KafkaProtocol
import Testing

/// Kafka's ACL model (matching, implications, deny, super users, filters, the file format) and
/// its enforcement in the handlers, without sockets.
@Suite struct AclTests {
    static func acl(_ type: AclResourceType, _ name: String, _ pattern: AclPatternType, _ principal: String, _ operation: AclOperation,
                    _ permission: AclPermission = .allow, host: String = "*") -> AclBinding {
        AclBinding(resourceType: type, resourceName: name, patternType: pattern, principal: principal, host: host, operation: operation, permission: permission)
    }
    static func acl(_ name: String, _ operation: AclOperation, _ permission: AclPermission = .allow) -> AclBinding {
        acl(.topic, name, .literal, "User:alice", operation, permission)
    }
    static func acl(_ name: String, _ pattern: AclPatternType, _ operation: AclOperation) -> AclBinding {
        acl(.topic, name, pattern, "User:alice", operation)
    }
    static func acl(_ name: String, _ principal: String, _ operation: AclOperation, _ permission: AclPermission = .allow, host: String = "*") -> AclBinding {
        acl(.topic, name, .literal, principal, operation, permission, host: host)
    }
    static func acl(_ type: AclResourceType, _ name: String, _ operation: AclOperation) -> AclBinding {
        acl(type, name, .literal, "User:alice", operation)
    }
    static func acl(_ type: AclResourceType, _ name: String, _ pattern: AclPatternType, _ operation: AclOperation) -> AclBinding {
        acl(type, name, pattern, "User:alice", operation)
    }

    func check(_ a: Authorizer, _ operation: AclOperation, _ name: String, _ type: AclResourceType = .topic,
               host: String = "10.0.0.1", superUsers: Set<String> = [], open: Bool = false) -> Bool {
        check(a, "User:alice", operation, name, type, host: host, superUsers: superUsers, open: open)
    }

    func check(_ a: Authorizer, _ principal: String, _ operation: AclOperation, _ name: String, _ type: AclResourceType = .topic,
               host: String = "10.0.0.1", superUsers: Set<String> = [], open: Bool = false) -> Bool {
        a.authorize(principal: principal, host: host, operation: operation, resourceType: type, resourceName: name,
                    superUsers: superUsers, allowEveryoneIfNoAclFound: open)
    }

    @Test func literalPrefixedAndWildcardMatching() {
        let a = Authorizer([Self.acl("orders", .write), Self.acl("logs-", .prefixed, .read), Self.acl("*", "User:bob", .describe)])
        #expect(check(a, .write, "orders"))
        #expect(!check(a, .write, "orders2"))        // literal is exact
        #expect(check(a, .read, "logs-app"))
        #expect(!check(a, .read, "log"))              // the prefix must be whole
        #expect(check(a, "User:bob", .describe, "anything"))
        #expect(!check(a, "User:bob", .write, "orders"))
        #expect(!check(a, "User:carol", .write, "orders"))
        // A resource with no ACL at all: allow.everyone.if.no.acl.found decides.
        let b = Authorizer([Self.acl("orders", .write)])
        #expect(!check(b, "User:carol", .read, "other"))
        #expect(check(b, "User:carol", .read, "other", open: true))
        #expect(!check(b, "User:carol", .read, "orders", open: true))  // orders has an ACL: not open
        #expect(check(b, "User:root", .alter, "orders", superUsers: ["User:root"]))
    }

    @Test func impliedOperationsDenyAndAll() {
        let a = Authorizer([Self.acl("t", .read), Self.acl("c", .alterConfigs), Self.acl("x", .all), Self.acl("x", .write, .deny),
                            Self.acl("y", .all, .deny), Self.acl("y", .read)])
        #expect(check(a, .describe, "t"))             // READ implies DESCRIBE
        #expect(!check(a, .write, "t"))
        #expect(check(a, .describeConfigs, "c"))      // ALTER_CONFIGS implies DESCRIBE_CONFIGS
        #expect(!check(a, .alter, "c"))
        #expect(check(a, .read, "x") && !check(a, .write, "x"))   // DENY wins over ALL
        #expect(!check(a, .read, "y"))                // DENY ALL wins over an ALLOW
        // DENY of READ does not deny DESCRIBE (implication applies to ALLOW only).
        let b = Authorizer([Self.acl("z", .write), Self.acl("z", .read, .deny)])
        #expect(check(b, .describe, "z"))
        // Principal wildcard and host.
        let c = Authorizer([Self.acl("h", "User:*", .read), Self.acl("h", "User:alice", .read, .deny, host: "10.0.0.9")])
        #expect(check(c, "User:zed", .read, "h"))
        #expect(check(c, .read, "h", host: "10.0.0.1"))
        #expect(!check(c, .read, "h", host: "10.0.0.9"))
    }

    /// Kafka's authorizeByResourceType: some ALLOW for the type that no DENY cancels.
    @Test func anyResourceOfAType() {
        func any(_ a: Authorizer, open: Bool = false) -> Bool {
            a.authorizeAny(principal: "User:alice", host: "10.0.0.1", operation: .write, resourceType: .topic, superUsers: [], allowEveryoneIfNoAclFound: open)
        }
        #expect(!any(Authorizer()) && any(Authorizer(), open: true))
        #expect(any(Authorizer([Self.acl("t", .write)])))
        #expect(!any(Authorizer([Self.acl("t", .write), Self.acl("t", .write, .deny)])))
        #expect(!any(Authorizer([Self.acl("logs-1", .write), Self.acl("logs-", .prefixed, .write).denying])))
        #expect(!any(Authorizer([Self.acl("logs-a", .prefixed, .write), Self.acl("logs-", .prefixed, .write).denying])))
        #expect(any(Authorizer([Self.acl("logs-", .prefixed, .write), Self.acl("logs-a", .write, .deny)])))  // a literal DENY leaves the prefix
        #expect(!any(Authorizer([Self.acl("t", .write), Self.acl("*", .write, .deny)])))
    }

    @Test func filtersValidationAndRemoval() {
        var a = Authorizer([Self.acl("orders", .write), Self.acl("ord", .prefixed, .read), Self.acl(.group, "g", .read), Self.acl("*", "User:bob", .read)])
        #expect(a.bindings(matching: AclBindingFilter()).count == 4)
        #expect(a.bindings(matching: AclBindingFilter(resourceType: .topic, resourceName: "orders", patternType: .match)).count == 3)
        #expect(a.bindings(matching: AclBindingFilter(resourceType: .topic, resourceName: "orders", patternType: .literal)).count == 1)
        #expect(a.bindings(matching: AclBindingFilter(principal: "User:bob")).map(\.resourceName) == ["*"])
        let removed = a.remove(matching: AclBindingFilter(resourceType: .topic, patternType: .prefixed))
        #expect(removed == [Self.acl("ord", .prefixed, .read)])
        #expect(a.bindings.count == 3 && !check(a, .read, "ord-x"))
        #expect(Self.acl(.cluster, "not-kafka", .alter).validationError != nil)
        #expect(Self.acl("t", .any).validationError != nil)
        #expect(Self.acl("t", .match, .read).validationError != nil)
        #expect(AclBinding(resourceType: .topic, resourceName: "t", patternType: .literal, principal: "alice", host: "*", operation: .read, permission: .allow).validationError != nil)
        #expect(Self.acl(.cluster, "kafka-cluster", .alter).validationError == nil)
    }

    @Test func theFileRoundTripsAndSkipsGarbage() {
        let a = Authorizer([Self.acl("with\ttab and spaces", .write), Self.acl(.group, "g-", .prefixed, "User:CN=alice,O=Apus", .read, .deny, host: "10.1.2.3"),
                            Self.acl(.cluster, "kafka-cluster", .alterConfigs)])
        var bytes = a.encoded()
        let (decoded, bad) = Authorizer.decode(bytes)
        #expect(decoded == a && bad == 0)
        bytes += Array("TOPIC\tnot base64!\tLITERAL\n\u{0}\u{1}garbage\n".utf8)
        let (again, skipped) = Authorizer.decode(bytes)
        #expect(again == a && skipped == 2)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var mutated = a.encoded()
            for _ in 0..<3 { mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            let (some, _) = Authorizer.decode(mutated)
            #expect(some.bindings.count <= 3)
        }
    }

    // MARK: Enforcement in the handlers

    func harness() throws -> BrokerHarness {
        var config = BrokerConfig()
        config.authorizer.enabled = true
        config.authorizer.superUsers = ["User:admin"]
        return try BrokerHarness(config: config)
    }

    var admin: ClientSession { ClientSession(principal: "User:admin") }
    var alice: ClientSession { ClientSession(host: "10.0.0.1", principal: "User:alice") }
    var bob: ClientSession { ClientSession(host: "10.0.0.2", principal: "User:bob") }

    func addAcls(_ h: BrokerHarness, _ acls: [AclBinding]) throws {
        let response = try #require(try h.call(CreateAclsRequest(creations: acls.map {
            .init(resourceType: $0.resourceType.rawValue, resourceName: $0.resourceName, resourcePatternType: $0.patternType.rawValue,
                  principal: $0.principal, host: $0.host, operation: $0.operation.rawValue, permissionType: $0.permission.rawValue)
        }), version: 3, session: admin))
        #expect(response.results.allSatisfy { $0.errorCode == 0 })
    }

    @Test func produceFetchAndMetadataAreChecked() throws {
        let h = try harness()
        defer { h.remove() }
        _ = try h.call(CreateTopicsRequest(topics: [.init(name: "orders", numPartitions: 1, replicationFactor: 1), .init(name: "secret", numPartitions: 1, replicationFactor: 1)]),
                       version: 4, session: admin)
        try addAcls(h, [Self.acl("orders", .write), Self.acl("orders", .read)])
        let ok = try #require(try h.call(produceRequest(topic: "orders", batch: makeBatch(values: ["a"])), version: 9, session: alice))
        #expect(ok.responses[0].partitionResponses[0].errorCode == 0)
        let denied = try #require(try h.call(produceRequest(topic: "orders", batch: makeBatch(values: ["a"])), version: 9, session: bob))
        #expect(denied.responses[0].partitionResponses[0].errorCode == ErrorCode.topicAuthorizationFailed.rawValue)
        let fetch = FetchRequest(replicaId: -1, maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, isolationLevel: 0,
                                 topics: [.init(topic: "orders", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])])
        #expect(try h.call(fetch, version: 11, session: alice)?.responses[0].partitions[0].errorCode == 0)
        #expect(try h.call(fetch, version: 11, session: bob)?.responses[0].partitions[0].errorCode == ErrorCode.topicAuthorizationFailed.rawValue)
        // A follower's fetch (a replica id) reads past the high watermark: it needs CLUSTER_ACTION.
        var replicaFetch = fetch
        replicaFetch.replicaId = 2
        #expect(try h.call(replicaFetch, version: 11, session: alice)?.responses[0].partitions[0].errorCode == ErrorCode.clusterAuthorizationFailed.rawValue)
        #expect(try h.call(replicaFetch, version: 11, session: admin)?.responses[0].partitions[0].errorCode == 0)
        // Metadata: every topic → only those described; a named one refused → 29, not created.
        #expect(try h.call(MetadataRequest(topics: nil), version: 9, session: alice)?.topics.map(\.name) == ["orders"])
        #expect(try h.call(MetadataRequest(topics: nil), version: 9, session: admin)?.topics.map(\.name) == ["orders", "secret"])
        let named = try #require(try h.call(MetadataRequest(topics: [.init(name: "secret"), .init(name: "newtopic")], allowAutoTopicCreation: true),
                                            version: 9, session: alice))
        #expect(named.topics.map(\.errorCode) == [ErrorCode.topicAuthorizationFailed.rawValue, ErrorCode.topicAuthorizationFailed.rawValue])
        #expect(try h.call(MetadataRequest(topics: nil), version: 9, session: admin)?.topics.count == 2)
        // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
        #expect(try h.call(InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 60_000), version: 4, session: alice)?.errorCode == 0)
        #expect(try h.call(InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 60_000), version: 4, session: bob)?.errorCode
            == ErrorCode.clusterAuthorizationFailed.rawValue)
        // Topic administration.
        #expect(try h.call(DeleteTopicsRequest(topicNames: ["orders"], timeoutMs: 1000), version: 5, session: alice)?.responses[0].errorCode
            == ErrorCode.topicAuthorizationFailed.rawValue)
        #expect(try h.call(CreateTopicsRequest(topics: [.init(name: "mine", numPartitions: 1, replicationFactor: 1)]), version: 4, session: alice)?
            .topics[0].errorCode == ErrorCode.topicAuthorizationFailed.rawValue)
        let configs = try #require(try h.call(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "orders", configurationKeys: nil),
                                                                                 .init(resourceType: 4, resourceName: "1", configurationKeys: nil)]),
                                              version: 4, session: alice))
        #expect(configs.results.map(\.errorCode) == [ErrorCode.topicAuthorizationFailed.rawValue, ErrorCode.clusterAuthorizationFailed.rawValue])
    }

    @Test func groupsAreChecked() throws {
        let h = try harness()
        defer { h.remove() }
        try addAcls(h, [Self.acl(.group, "app-", .prefixed, .read)])
        let find = { (group: String, session: ClientSession) in try h.call(FindCoordinatorRequest(key: group, keyType: 0), version: 3, session: session)?.errorCode }
        #expect(try find("app-1", alice) == 0)  // READ implies DESCRIBE
        #expect(try find("other", alice) == ErrorCode.groupAuthorizationFailed.rawValue)
        let join = JoinGroupRequest(groupId: "other", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, memberId: "", protocolType: "consumer",
                                    protocols: [.init(name: "range", metadata: [])])
        #expect(try h.call(join, version: 5, session: alice)?.errorCode == ErrorCode.groupAuthorizationFailed.rawValue)
        let commit = OffsetCommitRequest(groupId: "other", generationIdOrMemberEpoch: -1, memberId: "",
                                         topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 1)])])
        #expect(try h.call(commit, version: 7, session: alice)?.topics[0].partitions[0].errorCode == ErrorCode.groupAuthorizationFailed.rawValue)
        #expect(try h.call(ListGroupsRequest(), version: 4, session: alice)?.errorCode == 0)
        // ACL APIs need cluster permissions; without the authorizer they answer SECURITY_DISABLED.
        #expect(try h.call(DescribeAclsRequest(resourceTypeFilter: 1, resourceNameFilter: nil, patternTypeFilter: 1, principalFilter: nil,
                                               hostFilter: nil, operation: 1, permissionType: 1), version: 3, session: alice)?.errorCode
            == ErrorCode.clusterAuthorizationFailed.rawValue)
        let open = try BrokerHarness()
        defer { open.remove() }
        #expect(try open.call(DescribeAclsRequest(resourceTypeFilter: 1, resourceNameFilter: nil, patternTypeFilter: 1, principalFilter: nil,
                                                  hostFilter: nil, operation: 1, permissionType: 1), version: 3)?.errorCode == ErrorCode.securityDisabled.rawValue)
    }
}

extension AclBinding {
    var denying: AclBinding {
        var copy = self
        copy.permission = .deny
        return copy
    }
}
