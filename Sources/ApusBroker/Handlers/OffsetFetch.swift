import KafkaProtocol
import KafkaWire

extension Broker {
    /// OffsetFetch v0–9 (v8: several groups at once; v9: a consumer-protocol member names itself
    /// and its epoch, checked as for commits): committed offsets (-1 where none).
    static let offsetFetch = HandlerEntry(api: .offsetFetch, versions: 0...9, onCoordinator: true) { broker, context, r throws(WireError) in
        let request = try OffsetFetchRequest.decode(from: &r, version: context.apiVersion)
        var outputs = broker.groups.handleOffsetFetch(request, version: context.apiVersion, token: broker.groupToken(context))
        if context.apiVersion >= 9, let first = outputs.first, case .offsetFetch(var response) = first.response {
            for (i, group) in request.groups.enumerated() where i < response.groups.count {
                guard let memberId = group.memberId,
                      let refusal = broker.consumerGroups.commitRefusal(groupId: group.groupId, memberId: memberId, epoch: group.memberEpoch) else { continue }
                response.groups[i].errorCode = refusal
                response.groups[i].topics = []
            }
            outputs[0].response = .offsetFetch(response)
        }
        // DESCRIBE on each group (GROUP_AUTHORIZATION_FAILED) and its coordinator here
        // (NOT_COORDINATOR…); of its topics, only those the principal may describe are shown (the
        // others: TOPIC_AUTHORIZATION_FAILED when asked for).
        if let first = outputs.first, case .offsetFetch(var response) = first.response {
            func filter(_ topics: [OffsetFetchResponse.OffsetFetchResponseTopic]) -> [OffsetFetchResponse.OffsetFetchResponseTopic] {
                guard broker.config.authorizer.enabled else { return topics }
                return topics.map { topic in
                    guard !broker.authorizedTopic(.describe, topic.name, context) else { return topic }
                    var denied = topic
                    for j in denied.partitions.indices {
                        denied.partitions[j].committedOffset = -1
                        denied.partitions[j].errorCode = ErrorCode.topicAuthorizationFailed.rawValue
                    }
                    return denied
                }
            }
            if context.apiVersion >= 8 {
                for i in response.groups.indices {
                    if let refusal = broker.groupRefusal(.describe, response.groups[i].groupId, context) {
                        response.groups[i].errorCode = refusal.rawValue
                        response.groups[i].topics = []
                    } else if broker.config.authorizer.enabled {  // the v8+ types of `filter`'s
                        response.groups[i].topics = response.groups[i].topics.map { topic in
                            guard !broker.authorizedTopic(.describe, topic.name, context) else { return topic }
                            var denied = topic
                            for j in denied.partitions.indices {
                                denied.partitions[j].committedOffset = -1
                                denied.partitions[j].errorCode = ErrorCode.topicAuthorizationFailed.rawValue
                            }
                            return denied
                        }
                    }
                }
            } else if let refusal = broker.groupRefusal(.describe, request.groupId, context) {
                response = OffsetFetchResponse(errorCode: refusal.rawValue)
            } else {
                response.topics = filter(response.topics)
            }
            outputs[0].response = .offsetFetch(response)
        }
        return broker.route(outputs, caller: context, nowMs: context.nowMs)
    }
}
