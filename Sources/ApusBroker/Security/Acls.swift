/// Kafka's ACL model (KIP-290 prefixed patterns included), with Kafka's numbers for every enum so
/// that CreateAcls / DescribeAcls / DeleteAcls carry them as they are.
public enum AclResourceType: Int8, Sendable, CaseIterable {
    case unknown = 0, any = 1, topic = 2, group = 3, cluster = 4, transactionalId = 5, delegationToken = 6, user = 7
    public var kafkaName: String {
        ["UNKNOWN", "ANY", "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN", "USER"][Int(rawValue)]
    }
}

public enum AclPatternType: Int8, Sendable, CaseIterable {
    case unknown = 0, any = 1, match = 2, literal = 3, prefixed = 4
    public var kafkaName: String { ["UNKNOWN", "ANY", "MATCH", "LITERAL", "PREFIXED"][Int(rawValue)] }
}

public enum AclOperation: Int8, Sendable, CaseIterable {
    case unknown = 0, any = 1, all = 2, read = 3, write = 4, create = 5, delete = 6, alter = 7, describe = 8
    case clusterAction = 9, describeConfigs = 10, alterConfigs = 11, idempotentWrite = 12, createTokens = 13, describeTokens = 14
    public var kafkaName: String {
        ["UNKNOWN", "ANY", "ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS",
         "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "CREATE_TOKENS", "DESCRIBE_TOKENS"][Int(rawValue)]
    }

    /// The operations whose ALLOW also allows this one (Kafka: READ, WRITE, DELETE and ALTER
    /// imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS). Implication never applies to DENY.
    var allowedBy: [AclOperation] {
        switch self {
        case .describe: [.describe, .read, .write, .delete, .alter, .all]
        case .describeConfigs: [.describeConfigs, .alterConfigs, .all]
        default: [self, .all]
        }
    }
}

public enum AclPermission: Int8, Sendable, CaseIterable {
    case unknown = 0, any = 1, deny = 2, allow = 3
    public var kafkaName: String { ["UNKNOWN", "ANY", "DENY", "ALLOW"][Int(rawValue)] }
}

extension CaseIterable where Self: RawRepresentable, Self.RawValue == Int8 {
    /// The case named `name` in Kafka's spelling, case-insensitive, `-` for `_` accepted.
    public static func named(_ name: String, _ kafkaName: (Self) -> String) -> Self? {
        let wanted = name.uppercased().replacingDashes
        return allCases.first { kafkaName($0) == wanted }
    }
}

extension String {
    var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) to which
/// resources (type, name, literal or prefix).
public struct AclBinding: Hashable, Sendable {
    public var resourceType: AclResourceType
    public var resourceName: String
    public var patternType: AclPatternType
    public var principal: String
    public var host: String
    public var operation: AclOperation
    public var permission: AclPermission

    public init(resourceType: AclResourceType, resourceName: String, patternType: AclPatternType, principal: String, host: String,
                operation: AclOperation, permission: AclPermission) {
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission
    }

    /// Why CreateAcls refuses it (Kafka answers INVALID_REQUEST), or nil.
    public var validationError: String? {
        if resourceType == .unknown || resourceType == .any { return "invalid resource type" }
        if patternType != .literal && patternType != .prefixed { return "invalid pattern type: an ACL is LITERAL or PREFIXED" }
        if operation == .unknown || operation == .any { return "invalid operation" }
        if permission == .unknown || permission == .any { return "invalid permission type" }
        if resourceName.isEmpty { return "the resource name is empty" }
        if resourceType == .cluster && resourceName != "kafka-cluster" { return "the cluster resource is named kafka-cluster" }
        guard let colon = principal.firstIndex(of: ":"), colon != principal.startIndex, principal.index(after: colon) != principal.endIndex else {
            return "the principal must be Type:name, such as User:alice"
        }
        if host.isEmpty { return "the host is empty (* for any)" }
        return nil
    }

    /// Whether this ACL speaks about the resource `name` of its type (Kafka's matching: the same
    /// literal name, the literal wildcard `*`, or a prefix of the name).
    func covers(_ name: String) -> Bool {
        switch patternType {
        case .literal: resourceName == name || resourceName == "*"
        case .prefixed: name.hasPrefix(resourceName)
        default: false
        }
    }

    func applies(to principal: String, host: String) -> Bool {
        (self.principal == principal || self.principal == "User:*") && (self.host == host || self.host == "*")
    }
}

/// What DescribeAcls and DeleteAcls select: nil names match anything, ANY enums match anything,
/// pattern MATCH selects the ACLs that apply to the named resource.
public struct AclBindingFilter: Sendable {
    public var resourceType: AclResourceType
    public var resourceName: String?
    public var patternType: AclPatternType
    public var principal: String?
    public var host: String?
    public var operation: AclOperation
    public var permission: AclPermission

    public init(resourceType: AclResourceType = .any, resourceName: String? = nil, patternType: AclPatternType = .any,
                principal: String? = nil, host: String? = nil, operation: AclOperation = .any, permission: AclPermission = .any) {
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission
    }

    /// Why the filter cannot select anything sensible (DeleteAcls: INVALID_REQUEST), or nil.
    public var validationError: String? {
        if resourceType == .unknown { return "unknown resource type" }
        if patternType == .unknown { return "unknown pattern type" }
        if operation == .unknown { return "unknown operation" }
        if permission == .unknown { return "unknown permission type" }
        return nil
    }

    public func matches(_ b: AclBinding) -> Bool {
        guard resourceType == .any || resourceType == b.resourceType,
              operation == .any || operation == b.operation,
              permission == .any || permission == b.permission,
              principal == nil || principal == b.principal,
              host == nil || host == b.host
        else { return false }
        switch patternType {
        case .any: return resourceName == nil || resourceName == b.resourceName
        case .match: return resourceName.map { b.covers($0) } ?? true
        case .literal, .prefixed: return patternType == b.patternType && (resourceName == nil || resourceName == b.resourceName)
        case .unknown: return false
        }
    }
}

/// The ACLs in force and Kafka's decision procedure. Checking a resource costs two dictionary
/// lookups (its literal name and `*`) plus a walk over the prefixed ACLs of its type.
public struct Authorizer: Sendable, Equatable {
    public private(set) var bindings: Set<AclBinding> = []
    private var literal: [LiteralKey: [AclBinding]] = [:]
    private var prefixed: [AclResourceType: [AclBinding]] = [:]

    private struct LiteralKey: Hashable { var type: AclResourceType; var name: String }

    public init(_ bindings: [AclBinding] = []) {
        for b in bindings { add(b) }
    }

    public static func == (a: Self, b: Self) -> Bool { a.bindings == b.bindings }

    /// Adds an ACL (already present: nothing changes).
    public mutating func add(_ b: AclBinding) {
        guard bindings.insert(b).inserted else { return }
        if b.patternType == .prefixed { prefixed[b.resourceType, default: []].append(b) } else { literal[LiteralKey(type: b.resourceType, name: b.resourceName), default: []].append(b) }
    }

    /// Removes the ACLs `filter` selects and returns them.
    public mutating func remove(matching filter: AclBindingFilter) -> [AclBinding] {
        let gone = bindings.filter { filter.matches($0) }
        guard !gone.isEmpty else { return [] }
        self = Authorizer(Array(bindings.subtracting(gone)))
        return gone.sorted(by: Self.order)
    }

    public func bindings(matching filter: AclBindingFilter) -> [AclBinding] {
        bindings.filter { filter.matches($0) }.sorted(by: Self.order)
    }

    static func order(_ a: AclBinding, _ b: AclBinding) -> Bool {
        let x = (a.resourceType.rawValue, a.resourceName, a.patternType.rawValue, a.principal), y = (b.resourceType.rawValue, b.resourceName, b.patternType.rawValue, b.principal)
        if x != y { return x < y }
        return (a.host, a.operation.rawValue, a.permission.rawValue) < (b.host, b.operation.rawValue, b.permission.rawValue)
    }

    /// Every ACL that speaks about resource `name` of `type`, whoever it is for.
    private func applicable(_ type: AclResourceType, _ name: String) -> [AclBinding] {
        var found = literal[LiteralKey(type: type, name: name)] ?? []
        if name != "*" { found += literal[LiteralKey(type: type, name: "*")] ?? [] }
        for b in prefixed[type] ?? [] where name.hasPrefix(b.resourceName) { found.append(b) }
        return found
    }

    /// Kafka's decision: a super user may do anything; with no ACL at all on the resource the
    /// answer is `allowEveryoneIfNoAclFound`; otherwise a matching DENY (of the operation or ALL)
    /// refuses, and a matching ALLOW of the operation, of ALL, or of an operation implying it
    /// (see ``AclOperation/allowedBy``) permits; nothing matching refuses.
    public func authorize(principal: String, host: String, operation: AclOperation, resourceType: AclResourceType, resourceName: String,
                          superUsers: Set<String>, allowEveryoneIfNoAclFound: Bool) -> Bool {
        if superUsers.contains(principal) { return true }
        let acls = applicable(resourceType, resourceName)
        if acls.isEmpty { return allowEveryoneIfNoAclFound }
        let mine = acls.filter { $0.applies(to: principal, host: host) }
        if mine.contains(where: { $0.permission == .deny && ($0.operation == operation || $0.operation == .all) }) { return false }
        let allowing = operation.allowedBy
        return mine.contains { $0.permission == .allow && allowing.contains($0.operation) }
    }

    /// Whether `principal` may do `operation` to at least one resource of `type` (Kafka's
    /// authorizeByResourceType, used for idempotent producers without IDEMPOTENT_WRITE): some ALLOW
    /// for it that no DENY of the whole type (a literal `*`, or the empty prefix) cancels.
    public func authorizeAny(principal: String, host: String, operation: AclOperation, resourceType: AclResourceType,
                             superUsers: Set<String>, allowEveryoneIfNoAclFound: Bool) -> Bool {
        if superUsers.contains(principal) { return true }
        let ofType = bindings.filter { $0.resourceType == resourceType }
        if ofType.isEmpty { return allowEveryoneIfNoAclFound }
        let mine = ofType.filter { $0.applies(to: principal, host: host) && ($0.operation == operation || $0.operation == .all) }
        if mine.contains(where: { $0.permission == .deny && ($0.resourceName == "*" && $0.patternType == .literal || $0.resourceName.isEmpty && $0.patternType == .prefixed) }) {
            return false
        }
        let denies = mine.filter { $0.permission == .deny }
        // Kafka's rule: a literal ALLOW is cancelled by a DENY of the same name or by a prefixed
        // DENY covering it; a prefixed ALLOW only by a prefixed DENY covering its prefix.
        func cancels(_ deny: AclBinding, _ allow: AclBinding) -> Bool {
            switch (deny.patternType, allow.patternType) {
            case (.literal, .literal): deny.resourceName == allow.resourceName
            case (.prefixed, _): allow.resourceName.hasPrefix(deny.resourceName)
            default: false
            }
        }
        return mine.contains { allow in allow.permission == .allow && !denies.contains { cancels($0, allow) } }
    }

    // MARK: On disk: one ACL per line, tab-separated; names, principals and hosts in base64.

    public func encoded() -> [UInt8] {
        var text = ""
        for b in bindings.sorted(by: Self.order) {
            text += [b.resourceType.kafkaName, base64Encode(Array(b.resourceName.utf8)), b.patternType.kafkaName,
                     base64Encode(Array(b.principal.utf8)), base64Encode(Array(b.host.utf8)), b.operation.kafkaName, b.permission.kafkaName]
                .joined(separator: "\t") + "\n"
        }
        return Array(text.utf8)
    }

    /// The ACLs in `bytes`, and how many lines did not parse (skipped, reported by the caller).
    public static func decode(_ bytes: [UInt8]) -> (Authorizer, malformed: Int) {
        var result = Authorizer()
        var malformed = 0
        func text(_ field: Substring) -> String? { base64Decode(field).flatMap { String(validating: $0, as: UTF8.self) } }
        for line in bytes.split(separator: 0x0A) {
            let f = String(decoding: line, as: UTF8.self).split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 7, let type = AclResourceType.named(String(f[0]), \.kafkaName), let name = text(f[1]),
                  let pattern = AclPatternType.named(String(f[2]), \.kafkaName), let principal = text(f[3]), let host = text(f[4]),
                  let operation = AclOperation.named(String(f[5]), \.kafkaName), let permission = AclPermission.named(String(f[6]), \.kafkaName)
            else {
                malformed += 1
                continue
            }
            let binding = AclBinding(resourceType: type, resourceName: name, patternType: pattern, principal: principal, host: host,
                                     operation: operation, permission: permission)
            guard binding.validationError == nil else {
                malformed += 1
                continue
            }
            result.add(binding)
        }
        return (result, malformed)
    }
}
