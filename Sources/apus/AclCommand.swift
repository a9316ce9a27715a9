import ApusBroker
import ApusClient
import ArgumentParser

/// `apus acl`: Kafka ACLs through CreateAcls / DescribeAcls / DeleteAcls, so it manages any
/// Kafka-compatible cluster's ACLs (as `kafka-acls.sh` does).
struct AclCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "ACLs: list, add, remove (the broker needs authorizer = acl).",
        subcommands: [List.self, Add.self, Remove.self]
    )

    /// The resource and principal options shared by the subcommands.
    struct Selection: ParsableArguments {
        @Option(help: "topic, group, cluster or transactional-id.") var resourceType: String?
        @Option(help: "The resource's name (a topic, a group; kafka-cluster for the cluster; * for every one).") var resource: String?
        @Option(help: "literal or prefixed (list and remove also take any and match).") var pattern: String?
        @Option(help: "The principal, such as User:alice (User:* for everyone).") var principal: String?
        @Option(help: "The client address the ACL applies to (* for any).") var host: String?
        @Option(help: "read, write, create, delete, alter, describe, describe-configs, alter-configs, idempotent-write, cluster-action or all (repeatable).")
        var operation: [String] = []
        @Flag(help: "A DENY rule (default ALLOW).") var deny = false

        func code<T: CaseIterable & RawRepresentable>(_ text: String?, _ type: T.Type, default fallback: T, _ name: (T) -> String) throws -> Int8
        where T.RawValue == Int8 {
            guard let text else { return fallback.rawValue }
            guard let value = T.named(text, name) else {
                throw ValidationError("unknown value \(text): one of \(T.allCases.map(name).joined(separator: ", ").lowercased())")
            }
            return value.rawValue
        }

        func acls(forFilter: Bool) throws -> [KafkaAdmin.Acl] {
            let any = forFilter
            let type = try code(resourceType, AclResourceType.self, default: any ? .any : .topic, \.kafkaName)
            let pattern = try code(pattern, AclPatternType.self, default: any ? .any : .literal, \.kafkaName)
            let permission: Int8 = forFilter && !deny ? AclPermission.any.rawValue : (deny ? AclPermission.deny : .allow).rawValue
            let operations = operation.isEmpty ? [any ? "any" : "all"] : operation
            return try operations.map { op in
                KafkaAdmin.Acl(resourceType: type, resourceName: resource ?? (type == AclResourceType.cluster.rawValue ? "kafka-cluster" : ""),
                               patternType: pattern, principal: principal ?? "", host: host ?? "*",
                               operation: try code(op, AclOperation.self, default: .all, \.kafkaName), permission: permission)
            }
        }
    }

    struct Row: Encodable { var resourceType, resource, pattern, principal, host, operation, permission: String }

    static func rows(_ acls: [KafkaAdmin.Acl]) -> [Row] {
        acls.map {
            Row(resourceType: AclResourceType(rawValue: $0.resourceType)?.kafkaName ?? "\($0.resourceType)", resource: $0.resourceName,
                pattern: AclPatternType(rawValue: $0.patternType)?.kafkaName ?? "\($0.patternType)", principal: $0.principal, host: $0.host,
                operation: AclOperation(rawValue: $0.operation)?.kafkaName ?? "\($0.operation)",
                permission: AclPermission(rawValue: $0.permission)?.kafkaName ?? "\($0.permission)")
        }
    }

    static func table(_ rows: [Row]) -> String {
        AdminOptions.columns([["TYPE", "RESOURCE", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]]
            + rows.map { [$0.resourceType, $0.resource, $0.pattern, $0.principal, $0.host, $0.operation, $0.permission] })
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "ACLs matching the options (none: every ACL).")
        @OptionGroup var options: AdminOptions
        @OptionGroup var selection: Selection

        func run() throws {
            let admin = try options.admin()
            var found: [KafkaAdmin.Acl] = []
            for filter in try selection.acls(forFilter: true) {
                found += try admin.describeAcls(filter, anyName: selection.resource == nil, anyPrincipal: selection.principal == nil, anyHost: selection.host == nil)
            }
            let rows = AclCommand.rows(found)
            try options.output(rows) { AclCommand.table(rows) }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add ACLs: --principal, --resource-type, --resource and one --operation or more.")
        @OptionGroup var options: AdminOptions
        @OptionGroup var selection: Selection

        func validate() throws {
            guard selection.principal != nil, selection.resource != nil || selection.resourceType == "cluster" else {
                throw ValidationError("add needs --principal and --resource")
            }
        }

        func run() throws {
            let acls = try selection.acls(forFilter: false)
            try options.admin().createAcls(acls)
            let rows = AclCommand.rows(acls)
            try options.output(rows) { "added:\n" + AclCommand.table(rows) }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the ACLs matching the options.")
        @OptionGroup var options: AdminOptions
        @OptionGroup var selection: Selection

        func run() throws {
            let admin = try options.admin()
            var removed: [KafkaAdmin.Acl] = []
            for filter in try selection.acls(forFilter: true) {
                removed += try admin.deleteAcls(filter, anyName: selection.resource == nil, anyPrincipal: selection.principal == nil, anyHost: selection.host == nil)
            }
            let rows = AclCommand.rows(removed)
            try options.output(rows) { "removed:\n" + AclCommand.table(rows) }
        }
    }
}
