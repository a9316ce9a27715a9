import KafkaProtocol
import KafkaWire

extension Broker {
    /// CreateAcls v0–3: needs ALTER on the cluster; each ACL is checked as Kafka checks it
    /// (INVALID_REQUEST with the reason) and the valid ones are stored together. Without the
    /// authorizer: SECURITY_DISABLED, as Kafka answers.
    static let createAcls = HandlerEntry(api: .createAcls, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try CreateAclsRequest.decode(from: &r, version: context.apiVersion)
        let refusal = broker.aclApiRefusal(.alter, context)
        var results: [CreateAclsResponse.AclCreationResult] = []
        var acls = broker.aclsInEffect
        for c in request.creations {
            if let (code, message) = refusal {
                results.append(.init(errorCode: code.rawValue, errorMessage: message))
                continue
            }
            let binding = AclBinding(
                resourceType: AclResourceType(rawValue: c.resourceType) ?? .unknown, resourceName: c.resourceName,
                patternType: AclPatternType(rawValue: c.resourcePatternType) ?? .unknown, principal: c.principal, host: c.host,
                operation: AclOperation(rawValue: c.operation) ?? .unknown, permission: AclPermission(rawValue: c.permissionType) ?? .unknown)
            if let why = binding.validationError {
                results.append(.init(errorCode: ErrorCode.invalidRequest.rawValue, errorMessage: why))
                continue
            }
            acls.add(binding)
            results.append(.init(errorCode: 0, errorMessage: nil))
        }
        guard acls != broker.aclsInEffect else { return broker.respond(CreateAclsResponse(results: results), context) }
        broker.storeAcls(acls, context) { storageError in
            CreateAclsResponse(results: results.map { result in
                guard let storageError, result.errorCode == 0 else { return result }
                return .init(errorCode: ErrorCode.kafkaStorageError.rawValue, errorMessage: storageError)
            })
        }
        return .pending
    }
}

extension Broker {
    /// The ACLs as the latest change left them (shard 0: one still being written counts), else as stored.
    var aclsInEffect: Authorizer { pendingAcls ?? mesh.security.acls }

    /// Why an ACL API is refused: SECURITY_DISABLED without the authorizer, or the cluster
    /// permission it needs.
    func aclApiRefusal(_ operation: AclOperation, _ context: RequestContext) -> (ErrorCode, String)? {
        guard config.authorizer.enabled else { return (.securityDisabled, "no authorizer is configured (authorizer = acl)") }
        if let denied = denyCluster(operation, context) { return (denied, "needs \(operation.kafkaName) on the cluster") }
        return nil
    }

    /// Has the disk worker write `acls` (the whole set, atomically), then publishes them to every
    /// shard and answers with `response(storage error or nil)`.
    func storeAcls<R: KafkaResponse>(_ acls: Authorizer, _ context: RequestContext, response: @escaping (String?) -> R) {
        pendingAcls = acls
        storeSecurityFile(SecurityStore.aclsFile, acls.encoded()) { broker, failure in
            if broker.pendingAcls == acls { broker.pendingAcls = nil }  // else a later change is being written
            if let failure {
                broker.logger.error("could not store ACLs", metadata: ["error": "\(failure)"])
            } else {
                broker.mesh.security.publish(acls)
                broker.logger.info("ACLs changed", metadata: ["acls": "\(acls.bindings.count)", "principal": "\(context.principal)"])
            }
            broker.answerLater(broker.frame(response(failure), context), context)
        }
    }

    static func aclFilter(type: Int8, name: String?, pattern: Int8, principal: String?, host: String?, operation: Int8, permission: Int8) -> AclBindingFilter {
        AclBindingFilter(resourceType: AclResourceType(rawValue: type) ?? .unknown, resourceName: name,
                         patternType: AclPatternType(rawValue: pattern) ?? .unknown, principal: principal, host: host,
                         operation: AclOperation(rawValue: operation) ?? .unknown, permission: AclPermission(rawValue: permission) ?? .unknown)
    }
}
