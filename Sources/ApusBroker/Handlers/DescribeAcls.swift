import KafkaProtocol
import KafkaWire

extension Broker {
    /// DescribeAcls v0–3: the ACLs a filter selects, grouped by resource; needs DESCRIBE on the
    /// cluster.
    static let describeAcls = HandlerEntry(api: .describeAcls, versions: 0...3, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try DescribeAclsRequest.decode(from: &r, version: context.apiVersion)
        var response = DescribeAclsResponse(errorMessage: nil)
        if let (code, message) = broker.aclApiRefusal(.describe, context) {
            response.errorCode = code.rawValue
            response.errorMessage = message
            return broker.respond(response, context)
        }
        let filter = aclFilter(type: request.resourceTypeFilter, name: request.resourceNameFilter, pattern: request.patternTypeFilter,
                               principal: request.principalFilter, host: request.hostFilter, operation: request.operation,
                               permission: request.permissionType)
        if let why = filter.validationError {
            response.errorCode = ErrorCode.invalidRequest.rawValue
            response.errorMessage = why
            return broker.respond(response, context)
        }
        for b in broker.aclsInEffect.bindings(matching: filter) {
            let description = DescribeAclsResponse.AclDescription(principal: b.principal, host: b.host, operation: b.operation.rawValue,
                                                                  permissionType: b.permission.rawValue)
            if let last = response.resources.indices.last, response.resources[last].resourceType == b.resourceType.rawValue,
               response.resources[last].resourceName == b.resourceName, response.resources[last].patternType == b.patternType.rawValue {
                response.resources[last].acls.append(description)
            } else {
                response.resources.append(.init(resourceType: b.resourceType.rawValue, resourceName: b.resourceName,
                                                patternType: b.patternType.rawValue, acls: [description]))
            }
        }
        return broker.respond(response, context)
    }
}
