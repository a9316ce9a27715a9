"""Kafka's ACLs with real clients against a real `apus serve` (authorizer = acl): confluent-kafka's
AdminClient manages them, SCRAM users are allowed and denied topics and groups with Kafka's
error codes, Metadata hides what a user may not describe, and the ACLs survive a restart."""
import json
import os
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from conftest import Broker, apus_binary, free_port


@pytest.fixture
def acl_broker():
    """A loopback PLAINTEXT listener for the operator (its anonymous principal is a super user)
    and a SASL_PLAINTEXT listener for the users."""
    sasl_port = free_port()
    with tempfile.TemporaryDirectory(prefix="apus-acl-") as tmp:
        b = Broker(os.path.join(tmp, "data"), [
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{{port}},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
            "--set", "authorizer=acl", "--set", "super.users=User:ANONYMOUS;User:admin"])
        b.sasl_bootstrap = f"127.0.0.1:{sasl_port}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.alter_user_scram_credentials([
                UserScramCredentialUpsertion(u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), f"{u}-pw".encode())
                for u in ["alice", "bob"]]).values():
            f.result(timeout=10)
        for f in admin.create_topics([NewTopic("orders", 2), NewTopic("payments", 1), NewTopic("bob-logs", 1)]).values():
            f.result(timeout=10)
        b.admin = admin
        try:
            yield b
        finally:
            assert b.stop() == 0, b.log()[-3000:]


def user(broker, name, **extra):
    return {"bootstrap.servers": broker.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": name, "sasl.password": f"{name}-pw", **extra}


def allow(resource_type, name, principal, operation, pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW):
    return AclBinding(resource_type, name, pattern, principal, "*", operation, permission)


def create(admin, bindings):
    for f in admin.create_acls(bindings).values():
        f.result(timeout=10)


def delivery_errors(config, topic, count=5):
    """Produces `count` records; returns the delivery errors (None for each success)."""
    results = []
    p = Producer({**config, "message.timeout.ms": 5000, "retries": 0})
    for i in range(count):
        p.produce(topic, value=b"v%d" % i, on_delivery=lambda err, msg: results.append(err))
    p.flush(10)
    return results


def test_topic_and_group_acls_allow_one_user_and_deny_another(acl_broker):
    admin = acl_broker.admin
    create(admin, [allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.WRITE),
                   allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.READ),
                   allow(ResourceType.GROUP, "alice-", "User:alice", AclOperation.READ, ResourcePatternType.PREFIXED),
                   allow(ResourceType.TOPIC, "bob-", "User:bob", AclOperation.ALL, ResourcePatternType.PREFIXED),
                   allow(ResourceType.GROUP, "bob-", "User:bob", AclOperation.READ, ResourcePatternType.PREFIXED)])
    assert delivery_errors(user(acl_broker, "alice"), "orders") == [None] * 5
    errors = delivery_errors(user(acl_broker, "bob"), "orders")
    assert errors and all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors
    assert delivery_errors(user(acl_broker, "bob"), "bob-logs") == [None] * 5

    # alice reads orders in a group she may use; another group is refused (30).
    c = Consumer(user(acl_broker, "alice", **{"group.id": "alice-readers", "auto.offset.reset": "earliest"}))
    c.subscribe(["orders"])
    got = []
    deadline = time.time() + 20
    while len(got) < 5 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert sorted(got) == [b"v%d" % i for i in range(5)]
    c = Consumer(user(acl_broker, "alice", **{"group.id": "other-group", "auto.offset.reset": "earliest"}))
    c.subscribe(["orders"])
    error = None
    deadline = time.time() + 15
    while error is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is not None:
            error = m.error()
    c.close()
    assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error

    # Metadata shows each user only what it may describe (WRITE and READ imply DESCRIBE).
    assert set(Producer(user(acl_broker, "alice")).list_topics(timeout=10).topics) == {"orders"}
    assert set(Producer(user(acl_broker, "bob")).list_topics(timeout=10).topics) == {"bob-logs"}


def test_deny_wins_and_acls_survive_a_restart(acl_broker):
    admin = acl_broker.admin
    create(admin, [allow(ResourceType.TOPIC, "*", "User:alice", AclOperation.WRITE),
                   allow(ResourceType.TOPIC, "payments", "User:alice", AclOperation.WRITE, permission=AclPermissionType.DENY)])
    assert delivery_errors(user(acl_broker, "alice"), "orders") == [None] * 5
    assert all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in delivery_errors(user(acl_broker, "alice"), "payments"))
    described = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                                     AclOperation.ANY, AclPermissionType.ANY)).result(timeout=10)
    assert len(described) == 2
    acl_broker.restart()
    assert delivery_errors(user(acl_broker, "alice"), "orders") == [None] * 5
    assert all(e is not None for e in delivery_errors(user(acl_broker, "alice"), "payments"))
    # Deleting the DENY opens payments.
    deleted = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, "payments", ResourcePatternType.LITERAL, "User:alice", None,
                                                  AclOperation.ANY, AclPermissionType.DENY)])
    for f in deleted.values():
        assert len(f.result(timeout=10)) == 1
    assert delivery_errors(user(acl_broker, "alice"), "payments") == [None] * 5


def test_acl_apis_need_the_cluster_permission_and_valid_bindings(acl_broker):
    # alice (no cluster ACL) may not create ACLs: CLUSTER_AUTHORIZATION_FAILED.
    alice_admin = AdminClient(user(acl_broker, "alice"))
    with pytest.raises(KafkaException) as raised:
        for f in alice_admin.create_acls([allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.ALL)]).values():
            f.result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # An invalid binding (the cluster resource has one name): INVALID_REQUEST.
    with pytest.raises(KafkaException) as raised:
        create(acl_broker.admin, [allow(ResourceType.BROKER, "not-the-cluster", "User:alice", AclOperation.ALTER)])
    assert raised.value.args[0].code() == KafkaError.INVALID_REQUEST


def test_apus_acl_command(acl_broker):
    run = lambda *args: subprocess.run([apus_binary(), "acl", *args, "--bootstrap", acl_broker.bootstrap, "--json"],
                                       capture_output=True, text=True, check=True).stdout
    added = json.loads(run("add", "--principal", "User:bob", "--resource-type", "group", "--resource", "bob-",
                           "--pattern", "prefixed", "--operation", "read", "--operation", "describe"))
    assert [(r["operation"], r["pattern"]) for r in added] == [("READ", "PREFIXED"), ("DESCRIBE", "PREFIXED")]
    listed = json.loads(run("list", "--principal", "User:bob"))
    assert {(r["resource"], r["operation"], r["permission"]) for r in listed} == {("bob-", "READ", "ALLOW"), ("bob-", "DESCRIBE", "ALLOW")}
    removed = json.loads(run("remove", "--principal", "User:bob", "--operation", "describe"))
    assert [r["operation"] for r in removed] == ["DESCRIBE"]
    assert [r["operation"] for r in json.loads(run("list"))] == ["READ"]
