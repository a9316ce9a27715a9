"""Group and topic administration: confluent-kafka's AdminClient (ListGroups, DescribeGroups)
and the `apus topic|group|broker` commands, against a group of a real consumer."""
import json
import subprocess
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from conftest import apus_binary
from test_confluent_kafka import produce


def apus(*args):
    done = subprocess.run([apus_binary(), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def stable_group_with_commits(bootstrap, topic, group, produced, committed):
    """A consumer in `group` that read `committed` of `produced` records and committed them;
    returned still running, so the group stays Stable with it as its member."""
    produce(bootstrap, topic, [(None, f"r{i}".encode()) for i in range(produced)])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "admin-test",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + 30
    while len(seen) < committed and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen.append(msg)
    consumer.commit(message=seen[committed - 1], asynchronous=False)
    return consumer


def test_admin_client_lists_and_describes_groups(broker):
    consumer = stable_group_with_commits(broker.bootstrap, "admin-groups", "described", 30, 20)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups().result(10)
        assert "described" in {g.group_id for g in listed.valid}
        description = admin.describe_consumer_groups(["described"])["described"].result(10)
        assert description.group_id == "described"
        assert str(description.state).endswith("STABLE")
        assert len(description.members) == 1
        member = description.members[0]
        assert member.client_id == "admin-test"
        assert [(tp.topic, tp.partition) for tp in member.assignment.topic_partitions] == [("admin-groups", 0)]
        from confluent_kafka.admin import ConfigResource, ConfigSource
        configs = admin.describe_configs([ConfigResource("topic", "admin-groups")])
        entries = list(configs.values())[0].result(10)
        assert entries["retention.ms"].value == "604800000" and entries["cleanup.policy"].value == "delete"
        assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
        broker_configs = list(admin.describe_configs([ConfigResource("broker", "1")]).values())[0].result(10)
        assert broker_configs["num.partitions"].value == "1"
        unknown = admin.describe_consumer_groups(["nobody"])["nobody"].result(10)
        assert str(unknown.state).endswith("DEAD") and unknown.members == []
    finally:
        consumer.close()


def test_apus_admin_commands(broker):
    consumer = stable_group_with_commits(broker.bootstrap, "admin-cli", "cli-group", 30, 20)
    try:
        b = ["--bootstrap", broker.bootstrap]
        assert "cli-group" in [g["groupId"] for g in json.loads(apus("group", "list", *b, "--json"))]
        info = json.loads(apus("group", "describe", "cli-group", *b, "--json"))
        assert info["state"] == "Stable" and info["protocolType"] == "consumer"
        assert [m["assignment"] for m in info["members"]] == [{"admin-cli": [0]}]
        assert info["offsets"] == [{"topic": "admin-cli", "partition": 0, "committed": 20, "endOffset": 30, "lag": 10,
                                    "memberId": info["members"][0]["memberId"]}]
        table = apus("group", "describe", "cli-group", *b)
        assert "cli-group  admin-cli  0          20         30   10" in table

        apus("topic", "create", "made-by-cli", "--partitions", "3", "--config", "retention.ms=3600000", *b)
        apus("topic", "alter", "made-by-cli", "--set", "segment.ms=600000", "--delete", "retention.ms", "--partitions", "4", *b)
        altered = {c["name"]: c for c in json.loads(apus("topic", "describe", "made-by-cli", "--configs", *b, "--json"))[0]["configs"]}
        assert altered["segment.ms"]["value"] == "600000" and altered["segment.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
        assert altered["retention.ms"]["source"] == "DEFAULT_CONFIG"
        refused = subprocess.run([apus_binary(), "topic", "alter", "made-by-cli", "--set", "cleanup.policy=compact", *b],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "INVALID_CONFIG" in refused.stderr
        assert "made-by-cli" in json.loads(apus("topic", "list", *b, "--json"))
        described = json.loads(apus("topic", "describe", "admin-cli", "made-by-cli", *b, "--json"))
        assert [(t["name"], len(t["partitions"])) for t in described] == [("admin-cli", 1), ("made-by-cli", 4)]
        assert described[0]["partitions"][0]["endOffset"] == 30 and described[0]["partitions"][0]["startOffset"] == 0
        with_configs = json.loads(apus("topic", "describe", "admin-cli", "--configs", *b, "--json"))
        by_name = {c["name"]: c for c in with_configs[0]["configs"]}
        assert by_name["retention.ms"]["value"] == "604800000" and by_name["retention.ms"]["source"] == "DEFAULT_CONFIG"
        assert "CONFIG" in apus("topic", "describe", "admin-cli", "--configs", *b)
        apus("topic", "delete", "made-by-cli", *b)
        assert "made-by-cli" not in json.loads(apus("topic", "list", *b, "--json"))

        status = json.loads(apus("broker", "status", *b, "--json"))
        assert len(status["brokers"]) == 1 and status["brokers"][0]["port"] == broker.port
    finally:
        consumer.close()


def test_apus_group_reset_offsets_and_delete(broker):
    consumer = stable_group_with_commits(broker.bootstrap, "admin-reset", "resettable", 30, 20)
    b = ["--bootstrap", broker.bootstrap]
    try:
        refused = subprocess.run([apus_binary(), "group", "reset-offsets", "resettable", "--topic", "admin-reset", "--to-earliest",
                                  "--execute", *b], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "UNKNOWN_MEMBER_ID" in refused.stderr, "an active group's offsets are not moved"
        busy = subprocess.run([apus_binary(), "group", "delete", "resettable", *b], capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and "NON_EMPTY_GROUP" in busy.stderr
    finally:
        consumer.close()
    plan = json.loads(apus("group", "reset-offsets", "resettable", "--topic", "admin-reset", "--to-offset", "5", *b, "--json"))
    assert plan == [{"topic": "admin-reset", "partition": 0, "offset": 5}]
    assert json.loads(apus("group", "describe", "resettable", *b, "--json"))["offsets"][0]["committed"] == 20, "a dry run"
    apus("group", "reset-offsets", "resettable", "--topic", "admin-reset", "--to-earliest", "--execute", *b)
    assert json.loads(apus("group", "describe", "resettable", *b, "--json"))["offsets"][0]["committed"] == 0
    apus("group", "reset-offsets", "resettable", "--topic", "admin-reset", "--to-latest", "--execute", *b)
    assert json.loads(apus("group", "describe", "resettable", *b, "--json"))["offsets"][0]["committed"] == 30
    apus("group", "delete", "resettable", *b)
    assert "resettable" not in [g["groupId"] for g in json.loads(apus("group", "list", *b, "--json"))]
