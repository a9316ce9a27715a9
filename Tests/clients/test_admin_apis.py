"""Kafka's admin APIs and per-topic configuration with confluent-kafka's AdminClient (and its
consumer and producer) against a real `apus serve`: each API with its error paths."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic)

from test_confluent_kafka import produce


def admin_for(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(admin, *topics):
    for topic, future in admin.create_topics(list(topics), operation_timeout=10).items():
        future.result(timeout=20)


def error_of(future):
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=20)
    return raised.value.args[0].code()


def describe(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=20)


def incremental(admin, topic, *changes):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for name, value, op in changes])
    return admin.incremental_alter_configs([resource])[resource]


def low_watermark(bootstrap, topic, partition=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[0]
    finally:
        consumer.close()


def test_topic_configs_are_set_described_altered_and_kept_across_a_restart(single_broker):
    admin = admin_for(single_broker)
    create(admin, NewTopic("configured", 2, 1, config={"retention.ms": "86400000", "max.message.bytes": "200000"}))
    configs = describe(admin, "configured")
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    # Refusals: unknown key, compaction, a bad value; nothing changes.
    for key, value in [("no.such.config", "1"), ("cleanup.policy", "compact"), ("retention.ms", "soon")]:
        assert error_of(incremental(admin, "configured", (key, value, AlterConfigOpType.SET))) == KafkaError.INVALID_CONFIG
    assert error_of(incremental(admin, "nope", ("retention.ms", "1", AlterConfigOpType.SET))) == KafkaError.UNKNOWN_TOPIC_OR_PART
    incremental(admin, "configured", ("segment.ms", "3600000", AlterConfigOpType.SET),
                ("max.message.bytes", None, AlterConfigOpType.DELETE)).result(timeout=20)
    single_broker.restart()
    configs = describe(admin_for(single_broker), "configured")
    assert configs["segment.ms"].value == "3600000" and configs["retention.ms"].value == "86400000"
    assert configs["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    with pytest.raises(KafkaException) as bad:
        create(admin_for(single_broker), NewTopic("compacted", 1, 1, config={"cleanup.policy": "compact"}))
    assert bad.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_per_topic_retention_deletes_only_that_topics_old_segments(single_broker):
    admin = admin_for(single_broker)
    small = {"segment.bytes": str(1 << 20)}
    create(admin, NewTopic("expiring", 1, 1, config=small), NewTopic("kept", 1, 1, config=small))
    hour_ago = int(time.time() * 1000) - 3_600_000
    for topic in ["expiring", "kept"]:
        producer = Producer({"bootstrap.servers": single_broker.bootstrap, "linger.ms": 5})
        for i in range(300):
            producer.produce(topic, value=b"v" * 10_000, timestamp=hour_ago)
        assert producer.flush(30) == 0
    incremental(admin, "expiring", ("retention.ms", "60000", AlterConfigOpType.SET)).result(timeout=20)
    deadline = time.time() + 20  # maintenance runs every 5 s
    while low_watermark(single_broker.bootstrap, "expiring") == 0 and time.time() < deadline:
        time.sleep(0.5)
    assert low_watermark(single_broker.bootstrap, "expiring") > 0
    assert low_watermark(single_broker.bootstrap, "kept") == 0
    single_broker.restart()
    assert low_watermark(single_broker.bootstrap, "expiring") > 0
    assert low_watermark(single_broker.bootstrap, "kept") == 0
    assert describe(admin_for(single_broker), "expiring")["retention.ms"].value == "60000"


def test_topic_level_rules_apply_to_produce(single_broker):
    admin = admin_for(single_broker)
    create(admin, NewTopic("stamped", 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
           NewTopic("strict", 1, 1, config={"min.insync.replicas": "2", "max.message.bytes": "2000"}))
    before = int(time.time() * 1000)
    produce(single_broker.bootstrap, "stamped", [(None, b"a")], **{"message.timeout.ms": 10000})
    consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "stamped", "auto.offset.reset": "earliest"})
    consumer.subscribe(["stamped"])
    msg = None
    deadline = time.time() + 20
    while msg is None and time.time() < deadline:
        msg = consumer.poll(0.5)
    consumer.close()
    kind, stamp = msg.timestamp()
    assert kind == 2 and stamp >= before - 1000, "LogAppendTime: the broker's time"
    def outcome(acks, value):
        errors = []
        producer = Producer({"bootstrap.servers": single_broker.bootstrap, "acks": acks, "message.timeout.ms": 3000, "retries": 0})
        producer.produce("strict", value=value, on_delivery=lambda err, m: errors.append(err))
        producer.flush(20)
        return errors[0].code() if errors[0] is not None else None
    # One replica is in sync: acks=all cannot meet min.insync.replicas=2; acks=1 can.
    assert outcome("all", b"x") == KafkaError.NOT_ENOUGH_REPLICAS
    assert outcome("1", b"x") is None
    assert outcome("1", b"y" * 5000) == KafkaError.MSG_SIZE_TOO_LARGE


def test_create_partitions_and_their_errors(single_broker):
    admin = admin_for(single_broker)
    create(admin, NewTopic("growing", 1, 1))
    admin.create_partitions([NewPartitions("growing", 3)])["growing"].result(timeout=20)
    assert len(admin.list_topics(timeout=10).topics["growing"].partitions) == 3
    produce(single_broker.bootstrap, "growing", [(None, b"in-2")], **{"partitioner": "random"})
    producer = Producer({"bootstrap.servers": single_broker.bootstrap})
    producer.produce("growing", value=b"p2", partition=2)
    assert producer.flush(20) == 0
    assert error_of(admin.create_partitions([NewPartitions("growing", 2)])["growing"]) == KafkaError.INVALID_PARTITIONS
    assert error_of(admin.create_partitions([NewPartitions("growing", 3)])["growing"]) == KafkaError.INVALID_PARTITIONS
    assert error_of(admin.create_partitions([NewPartitions("absent", 3)])["absent"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    single_broker.restart()
    assert len(admin_for(single_broker).list_topics(timeout=10).topics["growing"].partitions) == 3


def test_delete_records_moves_the_log_start(single_broker):
    admin = admin_for(single_broker)
    create(admin, NewTopic("trimmed", 1, 1))
    produce(single_broker.bootstrap, "trimmed", [(None, f"r{i}".encode()) for i in range(10)])
    deleted = admin.delete_records([TopicPartition("trimmed", 0, 6)])
    assert list(deleted.values())[0].result(timeout=20).low_watermark == 6
    assert low_watermark(single_broker.bootstrap, "trimmed") == 6
    past = admin.delete_records([TopicPartition("trimmed", 0, 99)])
    assert error_of(list(past.values())[0]) == KafkaError.OFFSET_OUT_OF_RANGE
    # A consumer positioned below the start is told so (and with reset=earliest starts at 6).
    consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "trim", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("trimmed", 0, 2)])
    values = []
    deadline = time.time() + 20
    while len(values) < 4 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            values.append(msg.value())
    consumer.close()
    assert values == [b"r6", b"r7", b"r8", b"r9"]
    single_broker.restart()
    assert low_watermark(single_broker.bootstrap, "trimmed") == 6


def test_describe_cluster_and_manual_assignment(single_broker):
    admin = admin_for(single_broker)
    cluster = admin.describe_cluster().result(timeout=20)
    assert cluster.cluster_id and len(cluster.nodes) == 1
    node = cluster.nodes[0].id
    assert cluster.controller.id == node and cluster.nodes[0].port == single_broker.port
    create(admin, NewTopic("manual", 2, replica_assignment=[[node], [node]]))
    assert len(admin.list_topics(timeout=10).topics["manual"].partitions) == 2
    with pytest.raises(KafkaException) as bad:
        create(admin, NewTopic("elsewhere", 1, replica_assignment=[[node + 7]]))
    assert bad.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT


def test_offsets_for_times_finds_the_record_inside_a_batch(single_broker):
    create(admin_for(single_broker), NewTopic("timed", 1, 1))
    producer = Producer({"bootstrap.servers": single_broker.bootstrap, "linger.ms": 100})
    for i, stamp in enumerate([1_000_000, 2_000_000, 3_000_000]):
        producer.produce("timed", value=f"t{i}".encode(), timestamp=stamp)
    assert producer.flush(20) == 0  # one batch: the lookup must look inside it
    consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "times"})
    found = [consumer.offsets_for_times([TopicPartition("timed", 0, stamp)], timeout=10)[0].offset
             for stamp in [1_500_000, 2_000_000, 2_500_000, 4_000_000]]
    consumer.close()
    assert found == [1, 1, 2, -1]


def test_commit_to_an_unknown_topic_is_refused(single_broker):
    create(admin_for(single_broker), NewTopic("known", 1, 1))
    consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "committer", "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as refused:
            consumer.commit(offsets=[TopicPartition("unknown-topic", 0, 5)], asynchronous=False)
        assert refused.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        committed = consumer.commit(offsets=[TopicPartition("known", 0, 0)], asynchronous=False)
        assert committed[0].error is None
    finally:
        consumer.close()


def test_delete_consumer_groups(single_broker):
    admin = admin_for(single_broker)
    create(admin, NewTopic("grouped", 1, 1))
    produce(single_broker.bootstrap, "grouped", [(None, b"a"), (None, b"b")])
    members = {}
    for group in ["finished", "active"]:
        consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe(["grouped"])
        msg = None
        deadline = time.time() + 20
        while (msg is None or msg.error()) and time.time() < deadline:
            msg = consumer.poll(0.5)
        consumer.commit(message=msg, asynchronous=False)
        members[group] = consumer
    members.pop("finished").close()
    try:
        results = admin.delete_consumer_groups(["finished", "active", "never-was"], request_timeout=20)
        results["finished"].result(timeout=20)
        assert error_of(results["active"]) == KafkaError.NON_EMPTY_GROUP
        assert error_of(results["never-was"]) == KafkaError.GROUP_ID_NOT_FOUND
    finally:
        members.pop("active").close()
    single_broker.restart()
    admin = admin_for(single_broker)  # kept alive until the future completes
    listed = admin.list_consumer_groups(request_timeout=20).result(timeout=20)
    assert {g.group_id for g in listed.valid} == {"active"}, f"the deletion was persisted: {listed.valid} {listed.errors}"


def test_static_member_restarts_without_a_rebalance(single_broker):
    create(admin_for(single_broker), NewTopic("static", 4, 1))
    events = {"a": [], "b": []}

    def member(name):
        consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "static-group",
                             "group.instance.id": f"instance-{name}", "session.timeout.ms": 10000,
                             "auto.offset.reset": "earliest", "partition.assignment.strategy": "range"})
        consumer.subscribe(["static"], on_assign=lambda c, ps: events[name].append(("assign", sorted(p.partition for p in ps))),
                           on_revoke=lambda c, ps: events[name].append(("revoke", sorted(p.partition for p in ps))))
        return consumer

    def poll_until(consumers, done, timeout=30):
        deadline = time.time() + timeout
        while not done() and time.time() < deadline:
            for c in consumers:
                c.poll(0.1)

    a, b = member("a"), member("b")
    poll_until([a, b], lambda: any(e[0] == "assign" and len(e[1]) == 2 for e in events["a"])
               and any(e[0] == "assign" and len(e[1]) == 2 for e in events["b"]))
    b_partitions = [e for e in events["b"] if e[0] == "assign"][-1][1]
    b.close()  # a static member leaves no LeaveGroup behind
    events["a"].clear()
    b = member("b")
    events["b"].clear()
    poll_until([a, b], lambda: any(e[0] == "assign" for e in events["b"]))
    poll_until([a, b], lambda: False, timeout=3)  # would a rebalance reach a?
    try:
        assert [e for e in events["b"] if e[0] == "assign"][0][1] == b_partitions, "b gets its partitions back"
        assert not any(e[0] == "revoke" for e in events["a"]), f"a was not disturbed: {events['a']}"
    finally:
        a.close()
        b.close()


def test_kafka_python_admin_log_dirs_producers_and_offset_delete(single_broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KpNewTopic
    from kafka.structs import OffsetAndMetadata
    from kafka.structs import TopicPartition as KpTopicPartition

    admin = KafkaAdminClient(bootstrap_servers=single_broker.bootstrap)
    try:
        admin.create_topics([KpNewTopic("kp-admin", 2, 1)])
        producer = KafkaProducer(bootstrap_servers=single_broker.bootstrap, enable_idempotence=True)
        for _ in range(5):
            producer.send("kp-admin", b"x", partition=1)
        producer.flush()
        producer.close()

        dirs = admin.describe_log_dirs()[0]["log_dirs"][0]
        assert dirs["log_dir"] == single_broker.data_dir
        sizes = {p["partition_index"]: p["partition_size"] for t in dirs["topics"] if t["name"] == "kp-admin" for p in t["partitions"]}
        assert sizes[0] == 0 and sizes[1] > 0

        states = admin.describe_producers([KpTopicPartition("kp-admin", 1)])
        active = list(states.values())[0].active_producers
        assert len(active) == 1 and active[0].last_sequence == 4

        consumer = KafkaConsumer(bootstrap_servers=single_broker.bootstrap, group_id="kp-offsets", enable_auto_commit=False)
        consumer.commit({KpTopicPartition("kp-admin", 0): OffsetAndMetadata(1, "", -1),
                         KpTopicPartition("kp-admin", 1): OffsetAndMetadata(2, "", -1)})
        consumer.close()
        admin.delete_group_offsets("kp-offsets", [KpTopicPartition("kp-admin", 0)])
        left = admin.list_group_offsets("kp-offsets")["kp-offsets"]
        assert {tp.partition: om.offset for tp, om in left.items()} == {1: 2}
    finally:
        admin.close()


def test_consumer_group_protocol_consumes_every_record_once(single_broker):
    """KIP-848 (group.protocol=consumer): members join and leave, the broker assigns and moves
    partitions, and every record is consumed exactly once."""
    single_broker.restart_with(["--set", "group.consumer.heartbeat.interval.ms=300"])
    admin = admin_for(single_broker)
    create(admin, NewTopic("kip848", 6, 1))
    produce(single_broker.bootstrap, "kip848", [(None, f"a{i}".encode()) for i in range(300)], **{"partitioner": "random"})
    seen = []

    def member(name):
        consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "kip848-group", "group.protocol": "consumer",
                             "client.id": name, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(["kip848"])
        return consumer

    def consume(consumers, until, timeout=60):
        deadline = time.time() + timeout
        while len(seen) < until and time.time() < deadline:
            for c in consumers:
                msg = c.poll(0.05)
                if msg is not None and not msg.error():
                    seen.append(msg.value())
                    c.commit(message=msg, asynchronous=False)

    c1 = member("c1")
    consume([c1], 100)
    c2, c3 = member("c2"), member("c3")
    consume([c1, c2, c3], 200)
    described = admin.describe_consumer_groups(["kip848-group"])["kip848-group"].result(timeout=20)
    assert len(described.members) == 3
    c1.close()
    produce(single_broker.bootstrap, "kip848", [(None, f"b{i}".encode()) for i in range(100)], **{"partitioner": "random"})
    consume([c2, c3], 400)
    c2.close()
    c3.close()
    assert len(seen) == 400 and len(set(seen)) == 400, f"{len(seen)} consumed, {len(set(seen))} distinct"


def test_cooperative_group_settles_after_a_subscribed_topic_is_deleted(single_broker):
    """librdkafka's 0113_cooperative_rebalance: two cooperative-sticky members subscribed to two
    topics; one topic is deleted; the group settles on the other topic's partitions."""
    admin = admin_for(single_broker)
    create(admin, NewTopic("coop-kept", 2, 1), NewTopic("coop-gone", 2, 1))
    members = []
    for name in ["c1", "c2"]:
        consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "coop", "client.id": name,
                             "partition.assignment.strategy": "cooperative-sticky", "auto.offset.reset": "earliest",
                             "topic.metadata.refresh.interval.ms": 1000})
        consumer.subscribe(["coop-kept", "coop-gone"])
        members.append(consumer)

    def assigned():
        return sorted((tp.topic, tp.partition) for c in members for tp in c.assignment())

    def poll_until(done, timeout=30):
        deadline = time.time() + timeout
        while not done() and time.time() < deadline:
            for c in members:
                c.poll(0.1)

    poll_until(lambda: len(assigned()) == 4 and all(c.assignment() for c in members))
    assert len(assigned()) == 4
    for future in admin.delete_topics(["coop-gone"]).values():
        future.result(timeout=20)
    poll_until(lambda: assigned() == [("coop-kept", 0), ("coop-kept", 1)] and all(c.assignment() for c in members))
    try:
        assert assigned() == [("coop-kept", 0), ("coop-kept", 1)]
        assert all(c.assignment() for c in members), "each member keeps one partition"
    finally:
        for c in members:
            c.close()


def test_consumer_group_protocol_regex_subscription(single_broker):
    """KIP-848 v1: a subscription by regular expression is resolved by the broker."""
    single_broker.restart_with(["--set", "group.consumer.heartbeat.interval.ms=300"])
    create(admin_for(single_broker), NewTopic("rx-a", 1, 1), NewTopic("rx-b", 1, 1), NewTopic("rx-not", 1, 1))
    for topic in ("rx-a", "rx-b", "rx-not"):
        produce(single_broker.bootstrap, topic, [(None, topic.encode())])
    consumer = Consumer({"bootstrap.servers": single_broker.bootstrap, "group.id": "rx", "group.protocol": "consumer",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["^rx-[ab]$"])
    got = set()
    deadline = time.time() + 30
    while len(got) < 2 and time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.add(msg.value())
    consumer.poll(1)
    consumer.close()
    assert got == {b"rx-a", b"rx-b"}


def test_legacy_alter_configs_replaces_the_topic_configuration(single_broker):
    """AlterConfigs (the non-incremental API): the keys given become the whole set."""
    admin = admin_for(single_broker)
    create(admin, NewTopic("legacy-alter", 1, 1, config={"retention.ms": "3600000"}))
    resource = ConfigResource(ConfigResource.Type.TOPIC, "legacy-alter", set_config={"segment.ms": "600000"})
    admin.alter_configs([resource])[resource].result(timeout=20)
    configs = describe(admin, "legacy-alter")
    assert configs["segment.ms"].value == "600000" and configs["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value, "keys left out return to the broker's value"
    broker_resource = ConfigResource(ConfigResource.Type.BROKER, "1", set_config={"log.retention.ms": "1"})
    assert error_of(admin.alter_configs([broker_resource])[broker_resource]) == KafkaError.INVALID_REQUEST
