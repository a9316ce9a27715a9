import KafkaProtocol
import KafkaWire

extension Broker {
    /// IncrementalAlterConfigs v0–1 (on shard 0): changes the keys named and keeps the rest.
    /// SET (0) overrides a key, DELETE (1) returns it to the broker's value, APPEND (2) and
    /// SUBTRACT (3) add or remove items of a list-valued key (`cleanup.policy`).
    static let incrementalAlterConfigs = HandlerEntry(api: .incrementalAlterConfigs, versions: 0...1, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try IncrementalAlterConfigsRequest.decode(from: &r, version: context.apiVersion)
        let config = broker.config
        let alterations = request.resources.map { resource in
            ConfigAlteration(resourceType: resource.resourceType, resourceName: resource.resourceName, changes: resource.configs.count) { current in
                var overrides = current
                var seen: Set<String> = []
                for change in resource.configs {
                    guard seen.insert(change.name).inserted else {
                        return .failure(.init(.invalidRequest, "\(change.name) is changed twice"))
                    }
                    switch change.configOperation {
                    case 0:
                        guard let value = change.value else { return .failure(.init(.invalidRequest, "null value to set for \(change.name)")) }
                        overrides[change.name] = value
                    case 1:
                        overrides[change.name] = nil
                    case 2, 3:
                        guard let key = TopicConfig.byName[change.name], key.type == ConfigEntry.list else {
                            return .failure(.init(.invalidConfig, "\(change.name) is not a list: it can only be set or deleted"))
                        }
                        var items = (overrides[change.name] ?? key.brokerValue(config)).split(separator: ",").map { $0.trimmingSpaces() }
                        let given = (change.value ?? "").split(separator: ",").map { $0.trimmingSpaces() }
                        if change.configOperation == 2 {
                            items += given.filter { !items.contains($0) }
                        } else {
                            items.removeAll { given.contains($0) }
                        }
                        overrides[change.name] = items.joined(separator: ",")
                    default:
                        return .failure(.init(.invalidRequest, "unknown config operation \(change.configOperation)"))
                    }
                }
                return .success(overrides)
            }
        }
        return broker.alter(alterations, validateOnly: request.validateOnly, context) { results in
            IncrementalAlterConfigsResponse(responses: results.map {
                .init(errorCode: $0.error.rawValue, errorMessage: $0.message, resourceType: $0.resourceType, resourceName: $0.resourceName)
            })
        }
    }
}
