import KafkaProtocol
import KafkaWire

extension Broker {
    /// DeleteAcls v0–3: removes what each filter selects and reports it per filter; needs ALTER
    /// on the cluster.
    static let deleteAcls = HandlerEntry(api: .deleteAcls, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DeleteAclsRequest.decode(from: &r, version: context.apiVersion)
        let refusal = broker.aclApiRefusal(.alter, context)
        var acls = broker.aclsInEffect
        var results: [DeleteAclsResponse.DeleteAclsFilterResult] = []
        for f in request.filters {
            if let (code, message) = refusal {
                results.append(.init(errorCode: code.rawValue, errorMessage: message))
                continue
            }
            let filter = aclFilter(type: f.resourceTypeFilter, name: f.resourceNameFilter, pattern: f.patternTypeFilter,
                                   principal: f.principalFilter, host: f.hostFilter, operation: f.operation, permission: f.permissionType)
            if let why = filter.validationError {
                results.append(.init(errorCode: ErrorCode.invalidRequest.rawValue, errorMessage: why))
                continue
            }
            let removed = acls.remove(matching: filter)
            results.append(.init(errorCode: 0, errorMessage: nil, matchingAcls: removed.map { b in
                .init(errorCode: 0, errorMessage: nil, resourceType: b.resourceType.rawValue, resourceName: b.resourceName,
                      patternType: b.patternType.rawValue, principal: b.principal, host: b.host, operation: b.operation.rawValue,
                      permissionType: b.permission.rawValue)
            }))
        }
        guard acls != broker.aclsInEffect else { return broker.respond(DeleteAclsResponse(filterResults: results), context) }
        broker.storeAcls(acls, context) { storageError in
            DeleteAclsResponse(filterResults: results.map { result in
                guard let storageError, result.errorCode == 0 else { return result }
                return .init(errorCode: ErrorCode.kafkaStorageError.rawValue, errorMessage: storageError)
            })
        }
        return .pending
    }
}
