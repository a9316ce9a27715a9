"""Three real `apus serve` processes on a real etcd (cluster.metadata): topics are placed by
partition across the brokers, every broker answers Metadata for the whole cluster, and
confluent-kafka producers and a consumer group work across them; replicated partitions keep every
acknowledged record through followers dying and coming back."""
import os
import struct
import signal
import shutil
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, apus_binary, free_port


class Etcd(str):
    """A real etcd on loopback: the fixture's value is its endpoint ("127.0.0.1:port"), and it can
    be stopped and started again on the same data directory."""

    def __new__(cls, client, peer, data):
        endpoint = super().__new__(cls, f"127.0.0.1:{client}")
        endpoint.client, endpoint.peer, endpoint.data, endpoint.process = client, peer, data, None
        return endpoint

    def start(self):
        self.process = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", self.data, "--listen-client-urls", f"http://127.0.0.1:{self.client}",
             "--advertise-client-urls", f"http://127.0.0.1:{self.client}", "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}", "--initial-cluster", f"t=http://127.0.0.1:{self.peer}",
             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            if subprocess.run(["etcdctl", f"--endpoints={self}", "endpoint", "health"], capture_output=True,
                              env={**os.environ, "ETCDCTL_API": "3"}).returncode == 0:
                return
            time.sleep(0.1)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def etcd():
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed (tools/setup installs etcd-server)")
    endpoint = Etcd(free_port(), free_port(), tempfile.mkdtemp(prefix="apus-etcd-"))
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
        shutil.rmtree(endpoint.data, ignore_errors=True)


@pytest.fixture
def cluster(etcd):
    with tempfile.TemporaryDirectory(prefix="apus-cluster-") as tmp:
        brokers = [Broker(os.path.join(tmp, f"b{n}"), ["--set", f"cluster.metadata=etcd://{etcd}", "--set", f"node.id={n}"]) for n in (1, 2, 3)]
        try:
            yield brokers
        finally:
            for b in brokers:
                assert b.stop() == 0, b.log()[-3000:]


def eventually(seconds, condition):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def leaders(broker, topic):
    md = AdminClient({"bootstrap.servers": broker.bootstrap, "allow.auto.create.topics": False}).list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p.id: p.leader for p in t.partitions.values()}


def test_topics_spread_across_brokers_and_clients_follow_the_leaders(cluster):
    one, two, three = cluster
    # Every broker lists all three, at their own addresses.
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in cluster))
    md = AdminClient({"bootstrap.servers": two.bootstrap}).list_topics(timeout=5)
    assert sorted(f"{b.host}:{b.port}" for b in md.brokers.values()) == sorted(b.bootstrap for b in cluster)

    admin = AdminClient({"bootstrap.servers": one.bootstrap})
    for f in admin.create_topics([NewTopic("spread", 6, 1)]).values():
        f.result(timeout=10)
    # All brokers agree on the leaders, which cover the three brokers two partitions each.
    # (One answer per broker: an admin client may ask any broker it knows, and one whose view
    # has not caught up yet does not list the topic.)
    assert eventually(10, lambda: all(len(leaders(b, "spread") or {}) == 6 for b in cluster))
    views = [leaders(b, "spread") for b in cluster]
    assert views[0] == views[1] == views[2]
    assert sorted(views[0].values()) == [1, 1, 2, 2, 3, 3]
    # Creating it again: TOPIC_ALREADY_EXISTS, from any broker.
    admin3 = AdminClient({"bootstrap.servers": three.bootstrap})
    with pytest.raises(KafkaException) as raised:
        for f in admin3.create_topics([NewTopic("spread", 6, 1)]).values():
            f.result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    errors = []
    producer = Producer({"bootstrap.servers": two.bootstrap, "enable.idempotence": True, "error_cb": errors.append})
    for i in range(600):
        producer.produce("spread", key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(30) == 0, errors

    consumer = Consumer({"bootstrap.servers": three.bootstrap, "group.id": "across", "auto.offset.reset": "earliest"})
    consumer.subscribe(["spread"])
    seen = []
    deadline = time.time() + 40
    while len(seen) < 600 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert sorted(seen) == sorted(b"v%d" % i for i in range(600))
    assert "created topic in the cluster" in one.log()

    # Auto-creation through Metadata places a new topic too.
    p = Producer({"bootstrap.servers": three.bootstrap})
    p.produce("auto-made", b"x")
    assert p.flush(20) == 0
    assert eventually(10, lambda: leaders(one, "auto-made") is not None)

    # A configuration set through one broker is what every broker describes.
    from confluent_kafka.admin import ConfigResource
    resource = ConfigResource("topic", "spread", set_config={"retention.ms": "3600000"})
    admin2 = AdminClient({"bootstrap.servers": two.bootstrap})
    for f in admin2.alter_configs([resource]).values():
        f.result(timeout=10)

    def retention(b):
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        configs = list(admin.describe_configs([ConfigResource("topic", "spread")]).values())[0].result(timeout=10)
        return configs["retention.ms"].value
    assert eventually(10, lambda: all(retention(b) == "3600000" for b in cluster))

    # Deleting through any broker removes it everywhere.
    for f in admin3.delete_topics(["spread"]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: all(leaders(b, "spread") is None for b in cluster))
    assert eventually(10, lambda: all("deleted topic" in b.log() for b in cluster))


@pytest.fixture
def replicated(etcd):
    """Three brokers that drop a follower from the in-sync replicas after 2 s without catching up,
    and give leadership back to a preferred replica 2 s after it is in sync again."""
    with tempfile.TemporaryDirectory(prefix="apus-cluster-") as tmp:
        brokers = [Broker(os.path.join(tmp, f"b{n}"), ["--set", f"cluster.metadata=etcd://{etcd}", "--set", f"node.id={n}",
                                                       "--set", "replica.lag.time.max.ms=2000",
                                                       "--set", "leader.imbalance.check.interval.seconds=2"]) for n in (1, 2, 3)]
        try:
            yield brokers
        finally:
            for b in brokers:
                assert b.stop() == 0, b.log()[-3000:]


def partition_state(broker, topic, attempts=10):
    """(leader, replicas, in-sync replicas) of partition 0, asked again while the metadata
    answers without it for a moment (a topic being created, a leader being elected)."""
    for _ in range(attempts):
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and 0 in t.partitions:
            p = t.partitions[0]
            return p.leader, sorted(p.replicas), sorted(p.isrs)
        time.sleep(0.1)
    return None


def produce(bootstrap, values, **config):
    """Produces `values` with acks=all; returns (acknowledged values, error codes of the others)."""
    acked, errors = [], []

    def report(err, msg):
        if err is None:
            acked.append(msg.value())
        else:
            errors.append(err.code())
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    for v in values:
        p.produce("rep", v, on_delivery=report)
    p.flush(60)
    return acked, errors


def read_all(bootstrap):
    from confluent_kafka import TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    c.assign([TopicPartition("rep", 0, OFFSET_BEGINNING)])
    seen, idle = [], time.time()
    while time.time() - idle < 3:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
            idle = time.time()
    c.close()
    return seen


def segment(broker):
    with open(os.path.join(broker.data_dir, "rep-0", "00000000000000000000.log"), "rb") as f:
        return f.read()


class BackgroundProducer:
    """An idempotent acks=all producer sending numbered records ("0", "1", …) from a thread until
    stopped; `report(err, msg)` gets every delivery. With `keyed`, keys spread records over the
    partitions."""

    def __init__(self, bootstrap, topic, report, keyed=False, interval=0.002, **config):
        import threading
        self.topic, self.report, self.keyed, self.interval = topic, report, keyed, interval
        self.config = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **config}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        p = Producer(self.config)
        n = 0
        while not self.stopping.is_set():
            p.produce(self.topic, b"%d" % n, key=(b"%d" % (n % 97)) if self.keyed else None, on_delivery=self.report)
            p.poll(0)
            n += 1
            time.sleep(self.interval)
        self.unflushed = p.flush(120)

    def stop(self, timeout=180):
        """Stops sending, waits for every record's delivery report; True if all were reported."""
        self.stopping.set()
        self.thread.join(timeout)
        return not self.thread.is_alive() and self.unflushed == 0


def restart_after_lease(broker):
    """Starts a SIGKILLed broker again once etcd has let its registration go (its lease's TTL)."""
    deadline = time.time() + 30
    while True:
        try:
            broker.start()
            return
        except RuntimeError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def test_replicated_partition_keeps_acknowledged_records_as_followers_die_and_return(replicated, etcd):
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    admin = AdminClient({"bootstrap.servers": replicated[0].bootstrap})
    for f in admin.create_topics([NewTopic("rep", 1, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: (partition_state(replicated[0], "rep") or (0, [], []))[2] == [1, 2, 3])
    leader_id, replicas, _ = partition_state(replicated[0], "rep")
    assert replicas == [1, 2, 3]
    leader = replicated[leader_id - 1]
    first, second = [b for b in replicated if b is not leader]

    # acks=all with every replica in sync: all acknowledged, and the followers' logs become the
    # leader's, byte for byte.
    acked, errors = produce(leader.bootstrap, [b"a%d" % i for i in range(2000)], **{"enable.idempotence": True})
    assert len(acked) == 2000 and not errors
    # A manual assignment names live brokers, the first leads.
    for f in admin.create_topics([NewTopic("assigned", num_partitions=1, replica_assignment=[[2, 1, 3]])]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: partition_state(replicated[0], "assigned") == (2, [1, 2, 3], [1, 2, 3]))
    assert eventually(15, lambda: segment(first) == segment(leader) and segment(second) == segment(leader))

    # One follower dies: after the lag time it leaves the in-sync replicas and acks=all goes on
    # with min.insync.replicas = 2.
    second.stop(signal.SIGKILL)
    more, errors = produce(leader.bootstrap, [b"b%d" % i for i in range(500)], **{"enable.idempotence": True})
    assert len(more) == 500 and not errors
    acked += more
    assert "shrinking the in-sync replicas" in leader.log()
    # The leader's metrics say so: an under-replicated partition, a shrink, the dead follower's lag.
    import urllib.request

    def metric(line_start):
        body = urllib.request.urlopen(f"http://127.0.0.1:{leader.metrics_port}/metrics", timeout=5).read().decode()
        return [l for l in body.splitlines() if l.startswith(line_start)]
    assert eventually(5, lambda: metric("apus_under_replicated_partitions 1"))
    assert eventually(5, lambda: any(float(l.split()[-1]) >= 1 for l in metric("apus_isr_shrinks_total")))
    dead = int(os.path.basename(second.data_dir)[1:])
    assert eventually(5, lambda: metric(f'apus_replica_lag_records{{topic="rep",partition="0",replica="{dead}"}}'))
    status = subprocess.run([apus_binary(), "cluster", "status", "--etcd", f"etcd://{etcd}", "--json"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    import json
    rep = [p for p in json.loads(status.stdout)["partitions"] if p["topic"] == "rep"][0]
    assert rep["underReplicated"] and sorted(rep["isr"]) == sorted([leader_id, int(os.path.basename(first.data_dir)[1:])])

    # Both followers dead: acks=all is refused with NOT_ENOUGH_REPLICAS (19) once the in-sync
    # replicas are down to the leader (a request caught in the shrink gets 20, after its append).
    first.stop(signal.SIGKILL)
    codes = []
    assert eventually(20, lambda: codes.extend(produce(leader.bootstrap, [b"c"], retries=0, **{"message.timeout.ms": 8000})[1]) or 19 in codes)
    _, errors = produce(leader.bootstrap, [b"refused"], retries=0)
    assert errors == [KafkaError.NOT_ENOUGH_REPLICAS]

    # A follower comes back: it catches up from its log end, rejoins, and acks=all works again.
    restart_after_lease(first)
    assert eventually(20, lambda: os.path.exists(os.path.join(first.data_dir, "rep-0")) and segment(first) == segment(leader)), first.log()[-4000:]
    assert eventually(20, lambda: "expanding the in-sync replicas" in leader.log())
    later, errors = produce(leader.bootstrap, [b"d%d" % i for i in range(200)], **{"enable.idempotence": True})
    assert len(later) == 200 and not errors
    acked += later

    # Every acknowledged record is there exactly once (refused ones may be there too: appended,
    # never acknowledged).
    seen = read_all(leader.bootstrap)
    assert len(seen) == len(set(seen))
    assert set(acked) <= set(seen)
    restart_after_lease(second)
    assert eventually(20, lambda: segment(second) == segment(leader))


def test_a_paused_follower_leaves_the_in_sync_replicas_and_returns(replicated):
    """SIGSTOP of a follower (shorter than its lease, so it stays registered): after the lag time
    (2 s here) the leader drops it from the in-sync replicas and acks=all goes on with
    min.insync.replicas = 2; after SIGCONT it catches up and is in sync again."""
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    admin = AdminClient({"bootstrap.servers": replicated[0].bootstrap})
    for f in admin.create_topics([NewTopic("rep", 1, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: (partition_state(replicated[0], "rep") or (0, [], []))[2] == [1, 2, 3])
    leader_id = partition_state(replicated[0], "rep")[0]
    leader = replicated[leader_id - 1]
    paused = [b for b in replicated if b is not leader][0]
    acked, errors = produce(leader.bootstrap, [b"a%d" % i for i in range(200)], **{"enable.idempotence": True})
    assert len(acked) == 200 and not errors

    paused.process.send_signal(signal.SIGSTOP)
    started = time.time()
    try:
        more, errors = produce(leader.bootstrap, [b"b%d" % i for i in range(300)], **{"enable.idempotence": True})
        waited = time.time() - started
        in_sync = partition_state(leader, "rep")[2]
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert len(more) == 300 and not errors, errors[:3]
    assert s_id(paused) not in in_sync and len(in_sync) == 2, in_sync
    assert "shrinking the in-sync replicas" in leader.log()
    assert eventually(20, lambda: partition_state(leader, "rep")[2] == [1, 2, 3])
    assert eventually(20, lambda: segment(paused) == segment(leader))
    print(f"acks=all waited {waited:.1f} s for the paused follower to leave the in-sync replicas")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_leader_killed_or_stopped_fails_over_and_rejoins_without_losing_or_duplicating_acknowledged_records(replicated, sig):
    """SIGKILL: the controller elects a new leader once the dead leader's lease expires
    (broker.session.timeout.ms, 6 s).
    SIGTERM: a controlled shutdown hands leadership off before the broker stops."""
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    admin = AdminClient({"bootstrap.servers": replicated[0].bootstrap})
    for f in admin.create_topics([NewTopic("rep", 1, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: (partition_state(replicated[0], "rep") or (0, [], []))[2] == [1, 2, 3])
    old_id = partition_state(replicated[0], "rep")[0]
    old = replicated[old_id - 1]
    survivors = [b for b in replicated if b is not old]

    # An idempotent acks=all producer keeps sending numbered records through the failover.
    acked, failed = [], []

    def report(err, msg):
        (acked if err is None else failed).append(int(msg.value()) if err is None else err)
    producer = BackgroundProducer(",".join(b.bootstrap for b in replicated), "rep", report, **{"linger.ms": 5})
    assert eventually(10, lambda: len(acked) > 500)

    old.stop(sig)
    killed = time.time()
    assert eventually(20, lambda: (partition_state(survivors[0], "rep") or (None,))[0] in (s_id(survivors[0]), s_id(survivors[1])))
    failover = time.time() - killed
    new_id = partition_state(survivors[0], "rep")[0]
    new = replicated[new_id - 1]
    if sig == signal.SIGKILL:
        assert "elected a partition leader" in "".join(b.log() for b in survivors)
        assert failover < 15, f"a crashed leader's partition took {failover:.1f} s to move (6 s lease)"
    else:
        assert "handed off partition leadership before stopping" in old.log()
        assert failover < 3, f"a controlled shutdown took {failover:.1f} s to move the leader"
    count = len(acked)
    assert eventually(30, lambda: len(acked) > count + 500), f"no acknowledgements after the failover ({failover:.1f} s): {failed[:3]}"

    # The old leader comes back as a follower: cuts its log to its high watermark, catches up
    # from the new leader and rejoins the in-sync replicas.
    restart_after_lease(old)
    assert producer.stop()
    assert not failed, failed[:5]
    assert eventually(30, lambda: segment(old) == segment(new)), old.log()[-3000:]
    assert eventually(20, lambda: (partition_state(new, "rep") or (0, [], []))[2] == [1, 2, 3])
    # The old leader is the partition's preferred replica: in sync again, it leads again.
    assert eventually(20, lambda: (partition_state(new, "rep") or (0,))[0] == old_id)
    assert eventually(20, lambda: segment(old) == segment(new))

    # Every acknowledged record exactly once, in the order produced.
    seen = [int(v) for v in read_all(new.bootstrap)]
    assert len(seen) == len(set(seen)), "duplicates"
    assert set(acked) <= set(seen), f"lost {len(set(acked) - set(seen))} acknowledged records"
    assert seen == sorted(seen)
    print(f"failover: new leader {new_id} seen {failover:.1f} s after the {signal.Signals(sig).name}; {len(acked)} acknowledged")


def s_id(broker):
    return int(os.path.basename(broker.data_dir)[1:])


def test_randomized_faults_lose_and_duplicate_no_acknowledged_record(replicated, etcd):
    """A seeded, bounded run of faults — SIGKILL and restart, SIGSTOP and SIGCONT, SIGTERM and
    restart of a random broker, or a restart of etcd, one at a time — under idempotent acks=all producers on three RF=3
    partitions; then a checker over the whole history: every acknowledged record is read back
    exactly once, in the order produced within its partition."""
    import random
    import threading
    from confluent_kafka import TopicPartition, OFFSET_BEGINNING
    seed = int(os.environ.get("APUS_FAULT_SEED", "1205"))
    seconds = float(os.environ.get("APUS_FAULT_SECONDS", "45"))
    rng = random.Random(seed)
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    admin = AdminClient({"bootstrap.servers": replicated[0].bootstrap})
    for f in admin.create_topics([NewTopic("chaos", 3, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: all((partition_state(replicated[0], "chaos") or (0, [], []))[2] == [1, 2, 3] for _ in [0]))

    acked, failed = {}, []  # partition -> [record numbers acknowledged]
    lock = threading.Lock()

    def report(err, msg):
        with lock:
            if err is None:
                acked.setdefault(msg.partition(), []).append(int(msg.value()))
            else:
                failed.append(err.name())
    producer = BackgroundProducer(",".join(b.bootstrap for b in replicated), "chaos", report, keyed=True, interval=0.001,
                                  **{"linger.ms": 2, "message.timeout.ms": 120000})

    faults = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(rng.uniform(1, 4))
        victim = rng.choice(replicated)
        kind = rng.choice(["kill", "pause", "term", "etcd"])
        faults.append("restart etcd" if kind == "etcd" else f"{kind} b{s_id(victim)}")
        if kind == "etcd":
            etcd.stop()
            time.sleep(rng.uniform(0.5, 3))
            etcd.start()
        elif kind == "pause":
            victim.process.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(1, 9))  # past the lease (6 s) or not
            victim.process.send_signal(signal.SIGCONT)
        else:
            victim.stop(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            time.sleep(rng.uniform(0.5, 4))
            restart_after_lease(victim)
        # One fault at a time: wait until every partition is led and has two in sync again.
        assert eventually(40, lambda: all(len(isr) >= 2 for isr in in_sync_sets(replicated[0]))), faults
    assert producer.stop()
    assert not failed, (failed[:5], faults)

    total = sum(len(v) for v in acked.values())
    c = Consumer({"bootstrap.servers": ",".join(b.bootstrap for b in replicated), "group.id": "checker", "enable.auto.commit": False})
    c.assign([TopicPartition("chaos", p, OFFSET_BEGINNING) for p in range(3)])
    seen, idle = {}, time.time()
    while time.time() - idle < 5:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.setdefault(m.partition(), []).append(int(m.value()))
            idle = time.time()
    c.close()
    for p, values in acked.items():
        got = seen.get(p, [])
        assert len(got) == len(set(got)), f"partition {p}: duplicates ({faults})"
        assert got == sorted(got), f"partition {p}: out of order ({faults})"
        missing = set(values) - set(got)
        assert not missing, f"partition {p}: {len(missing)} acknowledged records lost ({faults})"
    # No replica diverged (KIP-101): once all are in sync, the three logs hold the same bytes.
    assert eventually(60, lambda: all(len(isr) == 3 for isr in in_sync_sets(replicated[0]))), faults
    for p in range(3):
        assert eventually(30, lambda: len({log_bytes(b, "chaos", p) for b in replicated}) == 1), \
            f"partition {p}: replicas differ ({faults}): {divergence([log_bytes(b, 'chaos', p) for b in replicated])}"
    print(f"seed {seed}: {len(faults)} faults {faults}; {total} acknowledged, all read back once and in order; replicas identical")


def log_bytes(broker, topic, partition):
    """A replica's log as one byte string: its segment files in order (segments roll on each
    broker by itself, so their boundaries may differ; their contents may not)."""
    directory = os.path.join(broker.data_dir, f"{topic}-{partition}")
    names = sorted((n for n in os.listdir(directory) if n.endswith(".log") and n[:-4].isdigit()), key=lambda n: int(n[:-4]))
    data = b""
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            data += f.read()
    return data


def batches(log):
    """(base offset, last offset, leader epoch, length) of each record batch in a log's bytes."""
    out, at = [], 0
    while at + 61 <= len(log):
        base, length, epoch = struct.unpack_from(">qii", log, at)
        delta = struct.unpack_from(">i", log, at + 23)[0]
        out.append((base, base + delta, epoch, length))
        at += 12 + length
    return out


def divergence(logs):
    """Where replicas' logs part: each one's size and batch count, and the first batch at which
    they differ as (base offset, last offset, leader epoch, length) per replica."""
    parsed = [batches(log) for log in logs]
    sizes = [f"{len(log)} bytes, {len(b)} batches" for log, b in zip(logs, parsed)]
    for i in range(max(len(b) for b in parsed)):
        here = [b[i] if i < len(b) else None for b in parsed]
        if len(set(here)) > 1:
            return f"{sizes}; first difference at batch {i}: {here}"
    return f"{sizes}; same batch headers, different bytes"


def in_sync_sets(broker):
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics("chaos", timeout=5)
    t = md.topics.get("chaos")
    if t is None or t.error is not None or len(t.partitions) != 3:
        return [[]]
    return [p.isrs if p.leader >= 0 else [] for p in t.partitions.values()]


def commit_until_done(consumer, received, seconds=60):
    """A synchronous commit of the consumer's positions, retried while the group's coordinator
    moves (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a rebalance under way); records the
    polls between tries return go to `received`."""
    deadline = time.time() + seconds
    while True:
        try:
            consumer.commit(asynchronous=False)
            return
        except KafkaException as e:
            if e.args[0].code() == KafkaError._NO_OFFSET:
                return  # nothing consumed since the last commit
            if time.time() > deadline:
                raise
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                received(m)


def test_a_group_keeps_its_committed_offsets_when_its_coordinator_is_killed(replicated):
    """Groups live with their __consumer_offsets partition (RF 3): the coordinator is SIGKILLed
    while a member consumes and commits; the group continues at the partition's new leader, and
    a consumer started afterwards resumes exactly where the group's last commit left it."""
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    bootstrap = ",".join(b.bootstrap for b in replicated)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("work", 2, 3)]).values():
        f.result(timeout=10)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(2000):
        p.produce("work", b"%d" % i, key=b"%d" % (i % 31))
    assert p.flush(30) == 0

    group = {"bootstrap.servers": bootstrap, "group.id": "workers", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    first = Consumer(group)
    first.subscribe(["work"])
    seen = set()

    def keep(m):
        seen.add(int(m.value()))

    def consume(consumer, until, seconds=60):
        deadline = time.time() + seconds
        while not until() and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                keep(m)
                if len(seen) % 100 == 0:
                    commit_until_done(consumer, keep)
    consume(first, lambda: len(seen) >= 600)
    commit_until_done(first, keep)
    assert len(seen) >= 600
    described = admin.describe_consumer_groups(["workers"])["workers"].result(timeout=10)
    coordinator = replicated[described.coordinator.id - 1]
    offsets_partition = [b for b in replicated if "coordinating the groups of an offsets partition" in b.log()]
    assert coordinator in offsets_partition

    coordinator.stop(signal.SIGKILL)
    killed = time.time()
    consume(first, lambda: len(seen) >= 2000, seconds=90)
    assert len(seen) == 2000, f"the group read {len(seen)} of 2000 after its coordinator died"
    commit_until_done(first, keep)
    moved = time.time() - killed
    new = admin.describe_consumer_groups(["workers"])["workers"].result(timeout=10).coordinator.id
    assert new != s_id(coordinator)
    first.close()

    # A new member starts where the group's commits are: only what is produced now.
    for i in range(2000, 2100):
        p.produce("work", b"%d" % i, key=b"%d" % (i % 31))
    assert p.flush(30) == 0
    second = Consumer(group)
    second.subscribe(["work"])
    later = []
    deadline = time.time() + 60
    while len(later) < 100 and time.time() < deadline:
        m = second.poll(0.5)
        if m is not None and m.error() is None:
            later.append(int(m.value()))
    while True:  # nothing more arrives: no record before the commit is read again
        m = second.poll(2)
        if m is None:
            break
        if m.error() is None:
            later.append(int(m.value()))
    second.close()
    assert sorted(later) == list(range(2000, 2100)), f"{len(later)} records, first {sorted(later)[:5]}"
    restart_after_lease(coordinator)
    print(f"coordinator {s_id(coordinator)} killed; the group committed at broker {new} {moved:.1f} s later")


def test_a_partition_moves_to_other_brokers_and_its_preferred_leader_is_elected(replicated):
    """AlterPartitionReassignments (kafka-python, as kafka-reassign-partitions does it) moves a
    one-replica partition onto the two other brokers: they catch up, the controller completes the
    move and the leader changes, with every record still there. ElectLeaders (confluent-kafka)
    gives a partition back to its preferred replica."""
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from confluent_kafka import TopicPartition
    from confluent_kafka import ElectionType
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    bootstrap = ",".join(b.bootstrap for b in replicated)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("rep", 1, 1)]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: partition_state(replicated[0], "rep") is not None)
    old = partition_state(replicated[0], "rep")[0]
    # Idempotent: leadership moves during the test (the reassignment, then the preferred leader
    # every 2 s), and a plain producer's retry after a lost answer may append a batch twice.
    acked, errors = produce(bootstrap, [b"%d" % i for i in range(500)], **{"enable.idempotence": True})
    assert len(acked) == 500, errors[:3]
    target = [n for n in (1, 2, 3) if n != old]
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert kadmin.alter_partition_reassignments({KTP("rep", 0): target}) == {KTP("rep", 0): None}
        assert eventually(30, lambda: partition_state(replicated[0], "rep")[:2] == (target[0], sorted(target))), partition_state(replicated[0], "rep")
        assert eventually(10, lambda: partition_state(replicated[0], "rep")[2] == sorted(target))
        assert kadmin.list_partition_reassignments() == {}
    finally:
        kadmin.close()
    assert "completed a partition reassignment" in "".join(b.log() for b in replicated)
    acked, errors = produce(bootstrap, [b"%d" % i for i in range(500, 600)], **{"enable.idempotence": True})
    assert len(acked) == 100, errors[:3]
    assert [int(v) for v in read_all(replicated[target[0] - 1].bootstrap)] == list(range(600))
    assert eventually(20, lambda: segment(replicated[target[1] - 1]) == segment(replicated[target[0] - 1]))

    # Leadership away from the preferred replica (a controlled shutdown hands it off), then back
    # by ElectLeaders once the preferred one is in sync again (the controller's own return is
    # 2 s in this fixture: it may come first, then the election is not needed).
    preferred = replicated[target[0] - 1]
    preferred.stop(signal.SIGTERM)
    assert eventually(10, lambda: (partition_state(replicated[target[1] - 1], "rep") or (0,))[0] == target[1])
    restart_after_lease(preferred)
    assert eventually(20, lambda: (partition_state(preferred, "rep") or (0, [], []))[2] == sorted(target))
    results = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("rep", 0)]).result(timeout=10)
    error = results[TopicPartition("rep", 0)]
    assert error is None or error.args[0].code() == KafkaError.ELECTION_NOT_NEEDED, error
    assert eventually(10, lambda: partition_state(preferred, "rep")[0] == target[0])


def test_etcd_restarted_under_load_data_flows_and_metadata_changes_wait(replicated, etcd):
    """etcd stops for a few seconds under an acks=all producer: records keep being acknowledged
    (the partition's replicas and ISR do not change), a topic creation fails cleanly meanwhile,
    and works again once etcd is back."""
    assert eventually(10, lambda: all(len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).brokers) == 3 for b in replicated))
    admin = AdminClient({"bootstrap.servers": replicated[0].bootstrap})
    for f in admin.create_topics([NewTopic("steady", 1, 3, config={"min.insync.replicas": "2"})]).values():
        f.result(timeout=10)
    assert eventually(10, lambda: (partition_state(replicated[0], "steady") or (0, [], []))[2] == [1, 2, 3])
    acked, failed = [], []
    producer = BackgroundProducer(replicated[0].bootstrap, "steady", lambda err, msg: (acked if err is None else failed).append(err or msg.value()),
                                  **{"linger.ms": 2})
    try:
        assert eventually(10, lambda: len(acked) > 200)
        etcd.stop()
        during = len(acked)
        assert eventually(4, lambda: len(acked) > during + 500), "acknowledgements stopped with etcd"
        with pytest.raises(KafkaException):
            for f in admin.create_topics([NewTopic("while-down", 1, 3)]).values():
                f.result(timeout=15)
        etcd.start()
        admin2 = AdminClient({"bootstrap.servers": replicated[1].bootstrap})
        for f in admin2.create_topics([NewTopic("after", 1, 3)]).values():
            f.result(timeout=20)
        after = len(acked)
        assert eventually(10, lambda: len(acked) > after + 500)
    finally:
        assert producer.stop()
    assert not failed, failed[:5]
    assert eventually(15, lambda: (partition_state(replicated[0], "after") or (0, [], []))[2] == [1, 2, 3])
