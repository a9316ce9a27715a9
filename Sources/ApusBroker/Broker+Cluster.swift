import KafkaProtocol
import KafkaWire
import Logging

/// Cluster mode (`cluster.metadata`): topics and their partition leaders live in the cluster's
/// metadata; a broker keeps logs for every partition of every topic (replication will use them)
/// but serves only those it leads — others get NOT_LEADER_OR_FOLLOWER, as from Kafka. RF = 1:
/// partitions are placed, not replicated yet (issue 16).
extension Broker {
    /// The cluster as this shard last saw it, or nil for a single broker.
    var cluster: ClusterState? {
        refreshClusterView() ? clusterSeen.state : nil
    }

    /// Re-reads the cluster view if it moved; false for a single broker.
    private func refreshClusterView() -> Bool {
        guard let membership = mesh.cluster else { return false }
        let version = membership.version.load(ordering: .acquiring)
        if version != clusterSeen.version { clusterSeen = (version, membership.current) }
        return true
    }

    /// Whether this broker serves `partition` of `topic`: always without a cluster. Per
    /// partition on the produce and fetch paths: it reads the cached view in place.
    func leads(_ topic: String, _ partition: Int32) -> Bool {
        guard refreshClusterView() else { return true }
        guard let leaders = clusterSeen.state.topics[topic]?.leaders, leaders.indices.contains(Int(partition)) else { return true }  // local-only (internal)
        return leaders[Int(partition)] == config.nodeId
    }

    /// The partition's leader epoch: the cluster view's (it moves with each new leader), or a
    /// single broker's one epoch.
    func currentLeaderEpoch(_ topic: String, _ partition: Int32) -> Int32 {
        guard refreshClusterView(), let epochs = clusterSeen.state.topics[topic]?.epochs, epochs.indices.contains(Int(partition)) else {
            return Broker.leaderEpoch
        }
        return epochs[Int(partition)]
    }

    /// KIP-320: a request naming the leader epoch its sender knows (-1: none) is refused when
    /// that is not the partition's epoch here — UNKNOWN_LEADER_EPOCH if newer (this broker has not
    /// seen it yet), FENCED_LEADER_EPOCH if older (the sender has not seen the new one).
    static func epochRefusal(known: Int32, current: Int32) -> ErrorCode? {
        guard known >= 0 else { return nil }
        return known > current ? .unknownLeaderEpoch : known < current ? .fencedLeaderEpoch : nil
    }

    /// Why a read of `partition` at the leader epoch its sender knows may not be served here
    /// (``epochRefusal(known:current:)``, then NOT_LEADER_OR_FOLLOWER), or nil: per partition
    /// on the fetch path, so one look at the cached view.
    func readRefusal(_ topic: String, _ partition: Int32, knownEpoch: Int32) -> ErrorCode? {
        guard refreshClusterView(), let t = clusterSeen.state.topics[topic], t.leaders.indices.contains(Int(partition)),
              t.epochs.indices.contains(Int(partition)) else {
            return Broker.epochRefusal(known: knownEpoch, current: Broker.leaderEpoch)  // a single broker, or local-only
        }
        return Broker.epochRefusal(known: knownEpoch, current: t.epochs[Int(partition)])
            ?? (t.leaders[Int(partition)] == config.nodeId ? nil : .notLeaderOrFollower)
    }

    /// A warning for a creation a client caused that failed in the cluster, through
    /// ``creationFailureLog``: the rest of the second's failures are counted into one line.
    func logCreationFailure(_ message: Logger.Message, _ metadata: Logger.Metadata) {
        let allowed = creationFailureLog.allow(nowMs: turnMs) { count, seconds in
            logger.warning("more creations failed in the cluster; not logged one by one", metadata: ["count": "\(count)", "seconds": "\(seconds)"])
        }
        if allowed { logger.warning(message, metadata: metadata) }
    }

    /// Writes new topics to the cluster's metadata (off the shard) and calls `done` with each
    /// topic's failure (TOPIC_ALREADY_EXISTS or the store's error), if any. Every broker then
    /// creates the topics' logs when its view shows them (``reconcileWithCluster()``).
    func createClusterTopics(_ specs: [TopicSpec], then done: @escaping (Broker, [String: (ErrorCode, String)]) -> Void) {
        guard let membership = mesh.cluster, let cluster else { return done(self, [:]) }
        for spec in specs { writingToCluster.insert(spec.name) }
        let planned = specs.map { spec in
            (spec.name, ClusterState.Topic(id: spec.id, replicas: spec.assignment ?? cluster.placement(spec.name, partitions: spec.partitions, replicationFactor: spec.replicationFactor),
                                           configs: spec.overrides))
        }
        let store = membership.store
        mesh.afterDiskWork(on: index, worker: membership.worker, { () -> [String: String] in
            var failures: [String: String] = [:]
            for (name, topic) in planned {
                do {
                    if topic.leaders.isEmpty { failures[name] = "fewer live brokers than replicas" } else if try !store.createTopic(name, topic) { failures[name] = "exists" }
                } catch {
                    failures[name] = "\(error)"
                }
            }
            return failures
        }, then: { broker, failures in
            for spec in specs { broker.writingToCluster.remove(spec.name) }
            var codes: [String: (ErrorCode, String)] = [:]
            for (name, failure) in failures {
                codes[name] = failure == "exists" ? (.topicAlreadyExists, "topic '\(name)' already exists") : (.kafkaStorageError, "cluster metadata: \(failure)")
            }
            for (name, topic) in planned where failures[name] == nil {
                broker.logger.info("created topic in the cluster", metadata: ["topic": "\(name)", "leaders": "\(topic.leaders)", "replicas": "\(topic.replicas)"])
            }
            done(broker, codes)
        })
    }

    /// Removes topics from the cluster's metadata (off the shard); `done` gets the names that
    /// were not there. Every broker deletes their logs when its view no longer shows them.
    func deleteClusterTopics(_ names: [String], then done: @escaping (Broker, Set<String>, String?) -> Void) {
        guard let membership = mesh.cluster else { return done(self, [], nil) }
        let store = membership.store
        mesh.afterDiskWork(on: index, worker: membership.worker, { () -> (Set<String>, String?) in
            var missing = Set<String>()
            do {
                for name in names where try !store.deleteTopic(name) { missing.insert(name) }
                return (missing, nil)
            } catch {
                return (missing, "\(error)")
            }
        }, then: { broker, outcome in done(broker, outcome.0, outcome.1) })
    }

    /// What became of one topic's change to its record (``updateClusterTopics(_:_:then:)``).
    enum TopicUpdate<Outcome: Sendable>: Sendable {
        case missing
        case failed(String)
        /// The outcome of the change as written (or as decided, when it changed nothing).
        case done(Outcome)
    }

    /// Changes topics' records in the cluster's metadata (off the shard, a compare-and-swap per
    /// topic): `change` edits a topic and returns whether to write it and what it decided (from the
    /// attempt that was written, when another change came first); `done` gets each topic's result.
    func updateClusterTopics<Outcome: Sendable>(
        _ names: [String], _ change: @escaping @Sendable (String, inout ClusterState.Topic) -> (write: Bool, outcome: Outcome),
        then done: @escaping (Broker, [String: TopicUpdate<Outcome>]) -> Void
    ) {
        guard let membership = mesh.cluster else { return done(self, [:]) }
        let store = membership.store
        mesh.afterDiskWork(on: index, worker: membership.worker, { () -> [String: TopicUpdate<Outcome>] in
            var results: [String: TopicUpdate<Outcome>] = [:]
            for name in names {
                var decided: Outcome?
                do {
                    let written = try store.updateTopic(name) { topic in
                        let (write, outcome) = change(name, &topic)
                        decided = outcome
                        return write
                    }
                    results[name] = written == nil ? .missing : decided.map { .done($0) } ?? .missing
                } catch {
                    results[name] = .failed("\(error)")
                }
            }
            return results
        }, then: done)
    }

    /// Writes topics' new configuration overrides to their records (off the shard); `done` gets
    /// each topic that could not be changed, with why.
    func updateClusterTopicConfigs(_ changes: [(name: String, overrides: [String: String])], then done: @escaping (Broker, [String: String]) -> Void) {
        let wanted = Dictionary(changes.map { ($0.name, $0.overrides) }, uniquingKeysWith: { _, last in last })
        updateClusterTopics(Array(wanted.keys)) { name, topic in
            topic.configs = wanted[name] ?? topic.configs
            return (true, ())
        } then: { broker, results in
            done(broker, results.compactMapValues { result in
                switch result {
                case .done: nil
                case .missing: "the topic is gone"
                case .failed(let why): why
                }
            })
        }
    }

    /// Brings this broker's logs in line with the cluster (shard 0, after every change): topics
    /// the cluster has and this broker lacks are created (all partitions), topics it no longer
    /// has are deleted here.
    public func reconcileWithCluster() {
        guard index == 0, let cluster else { return }
        refreshTopics()
        let missing = cluster.topics.filter { topics[$0.key] == nil && !creating.contains($0.key) && !deleting.contains($0.key) }
        if !missing.isEmpty {
            createTopics(missing.map { TopicSpec(name: $0.key, partitions: Int32($0.value.leaders.count), overrides: $0.value.configs, id: $0.value.id) }) { _, _ in }
        }
        // Only a topic seen in the cluster and gone since is deleted here: a topic this broker had
        // before it joined (or a view that lost topics) never costs its data.
        let gone = topics.keys.filter { clusterTopicsSeen.contains($0) && cluster.topics[$0] == nil && !deleting.contains($0) && !creating.contains($0) }
        if !gone.isEmpty { deleteTopicsLocally(gone) { _, _ in } }
        for name in topics.keys where cluster.topics[name] == nil && !clusterTopicsSeen.contains(name) && !name.hasPrefix("__") && !warnedLocalOnly.contains(name) {
            warnedLocalOnly.insert(name)
            logger.warning("a local topic is not in the cluster's metadata: kept, but not listed by Metadata", metadata: ["topic": "\(name)"])
        }
        // Configuration changed through another broker: apply it here too.
        let altered = cluster.topics.compactMap { name, topic -> (name: String, overrides: [String: String])? in
            guard let local = topics[name], local.overrides != topic.configs, !reconfiguring.contains(name) else { return nil }
            return (name, topic.configs)
        }
        if !altered.isEmpty {
            reconfiguring.formUnion(altered.map(\.name))
            reconfigureTopics(altered) { broker, _ in broker.reconfiguring.subtract(altered.map(\.name)) }
        }
        clusterTopicsSeen.formUnion(cluster.topics.keys)
        clusterTopicsSeen.subtract(gone)
    }
}
