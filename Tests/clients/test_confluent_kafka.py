"""confluent-kafka (a recent librdkafka) against apus serve."""
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def produce(bootstrap, topic, messages, **config):
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, headers=[("h", b"1")],
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []


def consume_all(bootstrap, topic, count, group=None, timeout=30):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"g-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    while len(out) < count and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        out.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()))
    consumer.close()
    return out


def test_acks_0_1_all_round_trip(broker):
    for acks in ("0", "1", "all"):
        topic = f"acks-{acks}"
        messages = [(f"k{i}".encode(), f"v{i}-{acks}".encode()) for i in range(200)]
        produce(broker.bootstrap, topic, messages, acks=acks)
        got = consume_all(broker.bootstrap, topic, 200)
        assert [(k, v) for _, _, k, v, _ in got] == messages
        assert [o for _, o, _, _, _ in got] == list(range(200))
        assert all(h == [("h", b"1")] for *_, h in got)


def test_idempotent_producer_writes_each_record_once(broker):
    messages = [(None, f"idem-{i}".encode()) for i in range(2000)]
    produce(broker.bootstrap, "idem", messages, **{"enable.idempotence": True, "acks": "all",
                                                   "max.in.flight.requests.per.connection": 5})
    got = consume_all(broker.bootstrap, "idem", 2000)
    assert [v for _, _, _, v, _ in got] == [v for _, v in messages]


def test_admin_creates_and_deletes_topics(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic("admin-a", 3, 1), NewTopic("admin-b", 1, 1)])
    for f in futures.values():
        f.result(10)
    bad = admin.create_topics([NewTopic("admin-c", 1, 3)])["admin-c"]
    try:
        bad.result(10)
        raise AssertionError("replication factor 3 must be refused")
    except Exception as e:
        assert "REPLICATION_FACTOR" in str(e).upper()
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics["admin-a"].partitions) == 3
    for f in admin.delete_topics(["admin-a"]).values():
        f.result(10)
    assert "admin-a" not in admin.list_topics(timeout=10).topics


class GroupMember(threading.Thread):
    def __init__(self, bootstrap, topic, group, sink, name):
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self.topic, self.sink, self.name = topic, sink, name
        self.stopping = threading.Event()
        self.assigned = set()

    def run(self):
        self.consumer.subscribe([self.topic], on_assign=lambda c, ps: self.assigned.update(p.partition for p in ps),
                                on_revoke=lambda c, ps: self.assigned.difference_update(p.partition for p in ps))
        while not self.stopping.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            self.sink.append((self.name, msg.partition(), msg.offset(), msg.value()))
            self.consumer.commit(message=msg, asynchronous=False)
        self.consumer.close()


def wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_consumer_group_exactly_once_rebalance_and_resume_after_restart(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("grouped", 6, 1)]).values():
        f.result(10)
    produce(broker.bootstrap, "grouped", [(f"k{i}".encode(), f"v{i}".encode()) for i in range(600)])
    sink = []
    members = [GroupMember(broker.bootstrap, "grouped", "g1", sink, f"m{i}") for i in range(3)]
    for m in members:
        m.start()
    assert wait_for(lambda: len(sink) >= 600), f"consumed {len(sink)} of 600\n{broker.log()[-3000:]}"
    assert sorted(v for *_, v in sink) == sorted(f"v{i}".encode() for i in range(600)), "every record exactly once"
    # The first member may take every partition before the others join; the rebalance their
    # joins trigger must then spread the six partitions two by two.
    assert wait_for(lambda: all(len(m.assigned) == 2 for m in members), 30), [m.assigned for m in members]
    assert sorted(p for m in members for p in m.assigned) == list(range(6))

    # A member leaves: the other two take over its partitions.
    members[0].stopping.set()
    members[0].join(10)
    assert wait_for(lambda: sorted(p for m in members[1:] for p in m.assigned) == list(range(6)), 30)
    produce(broker.bootstrap, "grouped", [(f"k{i}".encode(), f"w{i}".encode()) for i in range(300)])
    assert wait_for(lambda: len(sink) >= 900), f"consumed {len(sink)} of 900"
    assert sorted(v for *_, v in sink[600:]) == sorted(f"w{i}".encode() for i in range(300))
    for m in members[1:]:
        m.stopping.set()
        m.join(10)

    # Committed offsets survive a broker restart: a new member resumes after them.
    assert broker.restart() == 0, broker.log()[-2000:]
    produce(broker.bootstrap, "grouped", [(None, f"x{i}".encode()) for i in range(60)])
    later = []
    resumed = GroupMember(broker.bootstrap, "grouped", "g1", later, "m-after")
    resumed.start()
    assert wait_for(lambda: len(later) >= 60)
    time.sleep(1)
    resumed.stopping.set()
    resumed.join(10)
    assert sorted(v for *_, v in later) == sorted(f"x{i}".encode() for i in range(60)), "resumed from committed offsets"


def test_acks_all_survives_sigkill_under_fsync_on_ack_all(broker):
    broker.extra_args = ["--durability", "fsync-on-ack-all"]
    broker.restart()
    acked = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2})

    def delivered(err, msg):
        if err is None:
            acked.append(msg.value())

    for i in range(3000):
        producer.produce("durable", value=f"d{i}".encode(), on_delivery=delivered)
        producer.poll(0)
        if i == 2000:
            producer.flush(30)
            broker.stop(9)  # SIGKILL mid-stream
            break
    producer.flush(5)
    broker.start()
    got = consume_all(broker.bootstrap, "durable", len(acked))
    values = [value for _, _, _, value, _ in got]
    assert set(acked) <= set(values), f"{len(set(acked) - set(values))} acknowledged records lost"
