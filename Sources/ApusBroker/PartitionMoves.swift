import KafkaProtocol

/// Leader elections and partition reassignments asked for by an operator (ElectLeaders,
/// AlterPartitionReassignments), as changes to a topic's record in the cluster's metadata:
/// pure, so that the handlers' decisions are tested without etcd. The controller completes a
/// reassignment once the replicas it adds are in sync (ApusCluster's `ClusterAgent`).
extension ClusterState.Topic {
    /// Elects a leader for partition `p`: its preferred replica (the first) if that is live and in
    /// sync, or with `unclean` — only when the leader is not live — the first live in-sync
    /// replica, else the first live replica (which may have lost acknowledged records; the
    /// in-sync replicas become it alone). The epoch rises. Returns nil when the leader changed,
    /// else why not.
    mutating func elect(_ p: Int, unclean: Bool, live: Set<Int32>) -> ErrorCode? {
        if unclean {
            guard !live.contains(leaders[p]) else { return .electionNotNeeded }
            let inSync = isr[p].filter(live.contains)
            guard let next = replicas[p].first(where: inSync.contains) ?? replicas[p].first(where: live.contains) else {
                return .eligibleLeadersNotAvailable
            }
            isr[p] = inSync.contains(next) ? inSync : [next]
            leaders[p] = next
        } else {
            guard let preferred = replicas[p].first, leaders[p] != preferred else { return .electionNotNeeded }
            guard live.contains(preferred), isr[p].contains(preferred) else { return .preferredLeaderNotAvailable }
            leaders[p] = preferred
        }
        epochs[p] += 1
        return nil
    }

    /// Starts moving partition `p` to the replicas `target` (the first one its preferred leader),
    /// or with nil cancels the move under way. As in Kafka, until the replicas added are in sync
    /// `replicas` holds the target followed by the replicas being removed; the leader and the
    /// in-sync replicas stay. Returns nil when done, else the error and why.
    mutating func reassign(_ p: Int, to target: [Int32]?, live: Set<Int32>) -> (ErrorCode, String)? {
        let original = replicas[p].filter { !adding[p].contains($0) }
        guard let target else {
            guard !adding[p].isEmpty || !removing[p].isEmpty else {
                return (.noReassignmentInProgress, "no reassignment of this partition is in progress")
            }
            if !original.contains(leaders[p]) {
                guard let next = original.first(where: { isr[p].contains($0) && live.contains($0) }) else {
                    return (.invalidReplicaAssignment, "no original replica is in sync to lead again")
                }
                leaders[p] = next
                epochs[p] += 1
            }
            replicas[p] = original
            isr[p] = isr[p].filter(original.contains)
            adding[p] = []
            removing[p] = []
            return nil
        }
        guard !target.isEmpty, Set(target).count == target.count else {
            return (.invalidReplicaAssignment, "the replicas must be distinct and at least one")
        }
        if let unknown = target.first(where: { !live.contains($0) }) {
            return (.invalidReplicaAssignment, "broker \(unknown) is not a live broker")
        }
        adding[p] = target.filter { !original.contains($0) }
        removing[p] = original.filter { !target.contains($0) }
        replicas[p] = target + removing[p]
        return nil
    }
}
