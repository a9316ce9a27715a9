import KafkaProtocol

/// The checks handlers make (ACLs, when `authorizer = acl`); with the authorizer off every check
/// passes after one branch.
extension Broker {
    /// The ACLs as this shard last saw them (looked at again only when the store's version moved).
    var acls: Authorizer {
        let version = mesh.security.version.load(ordering: .acquiring)
        if version != aclsSeen.version { aclsSeen = (version, mesh.security.acls) }
        return aclsSeen.acls
    }

    /// Whether the request's principal may do `operation` to the resource.
    func authorized(_ operation: AclOperation, _ type: AclResourceType, _ name: String, _ context: RequestContext) -> Bool {
        guard config.authorizer.enabled else { return true }
        return acls.authorize(principal: context.principal, host: context.session.host, operation: operation, resourceType: type,
                              resourceName: name, superUsers: config.authorizer.superUsers,
                              allowEveryoneIfNoAclFound: config.authorizer.allowEveryoneIfNoAclFound)
    }

    func authorizedTopic(_ operation: AclOperation, _ topic: String, _ context: RequestContext) -> Bool {
        authorized(operation, .topic, topic, context)
    }

    func authorizedGroup(_ operation: AclOperation, _ group: String, _ context: RequestContext) -> Bool {
        authorized(operation, .group, group, context)
    }

    /// CLUSTER_AUTHORIZATION_FAILED unless the principal may do `operation` to the cluster.
    func denyCluster(_ operation: AclOperation, _ context: RequestContext) -> ErrorCode? {
        authorized(operation, .cluster, "kafka-cluster", context) ? nil : .clusterAuthorizationFailed
    }

    /// Whether the principal may do `operation` to some resource of `type` (idempotent producers).
    func authorizedAny(_ operation: AclOperation, _ type: AclResourceType, _ context: RequestContext) -> Bool {
        guard config.authorizer.enabled else { return true }
        return acls.authorizeAny(principal: context.principal, host: context.session.host, operation: operation, resourceType: type,
                                 superUsers: config.authorizer.superUsers, allowEveryoneIfNoAclFound: config.authorizer.allowEveryoneIfNoAclFound)
    }
}
