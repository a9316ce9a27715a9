"""Security with real clients against a real `apus serve`: listeners, SASL (PLAIN, SCRAM-SHA-256/512)
with credentials managed through Kafka's AdminClient, and what a bad client gets."""
import os
import socket
import struct
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)

from conftest import Broker, free_port


@pytest.fixture
def sasl_broker():
    """PLAINTEXT (the admin's way in) and SASL_PLAINTEXT listeners on one broker."""
    sasl_port = free_port()
    with tempfile.TemporaryDirectory(prefix="apus-security-") as tmp:
        b = Broker(os.path.join(tmp, "data"), [
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{{port}},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"])
        b.sasl_bootstrap = f"127.0.0.1:{sasl_port}"
        try:
            yield b
        finally:
            assert b.stop() == 0, b.log()[-3000:]


def set_users(broker, users):
    """users: [(name, mechanism, password)] stored through AlterUserScramCredentials."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upserts = [UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, 4096), password.encode())
               for name, mechanism, password in users]
    for user, future in admin.alter_user_scram_credentials(upserts).items():
        future.result(timeout=10)
    return admin


def sasl_config(broker, mechanism, user, password, **extra):
    return {"bootstrap.servers": broker.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def produce_and_consume(config, topic, count=50):
    errors = []
    producer = Producer({**config, "error_cb": errors.append})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(15) == 0, errors
    consumer = Consumer({**config, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values = []
    deadline = time.time() + 20
    while len(values) < count and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            values.append(m.value().decode())
    consumer.close()
    assert values == [f"v{i}" for i in range(count)]


def authentication_error(config):
    """Produces with `config` and returns the error the client reports (it must not succeed)."""
    errors = []
    producer = Producer({**config, "error_cb": errors.append, "message.timeout.ms": 3000})
    producer.produce("denied", value=b"x")
    producer.flush(5)
    deadline = time.time() + 5
    while not errors and time.time() < deadline:
        producer.poll(0.2)
    assert errors, "the client saw no error"
    return errors[0]


def test_scram_and_plain_clients_produce_and_consume(sasl_broker):
    admin = set_users(sasl_broker, [("alice", ScramMechanism.SCRAM_SHA_512, "alice-secret"),
                                    ("alice", ScramMechanism.SCRAM_SHA_256, "alice-secret"),
                                    ("bob", ScramMechanism.SCRAM_SHA_256, "bob-secret")])
    described = {u: f.result(timeout=10) for u, f in admin.describe_user_scram_credentials(["alice", "bob"]).items()}
    alice = described["alice"]
    assert sorted(info.mechanism for info in alice.scram_credential_infos) == [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512]
    assert all(info.iterations == 4096 for info in alice.scram_credential_infos)
    produce_and_consume(sasl_config(sasl_broker, "SCRAM-SHA-512", "alice", "alice-secret"), "scram512")
    produce_and_consume(sasl_config(sasl_broker, "SCRAM-SHA-256", "bob", "bob-secret"), "scram256")
    produce_and_consume(sasl_config(sasl_broker, "PLAIN", "alice", "alice-secret"), "plain")
    # Metadata over the SASL listener advertises the SASL listener itself.
    md = Producer(sasl_config(sasl_broker, "SCRAM-SHA-512", "alice", "alice-secret")).list_topics(timeout=10)
    assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [sasl_broker.sasl_bootstrap]
    log = sasl_broker.log()
    assert "alice-secret" not in log and "bob-secret" not in log


def test_wrong_password_unknown_user_and_deleted_credential_fail(sasl_broker):
    admin = set_users(sasl_broker, [("carol", ScramMechanism.SCRAM_SHA_512, "carols-right-pw")])
    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        error = authentication_error(sasl_config(sasl_broker, mechanism, "carol", "wrong"))
        assert error.code() == KafkaError._AUTHENTICATION, error
        assert "SASL_AUTHENTICATION_FAILED" in error.str() or "nvalid credentials" in error.str(), error
    error = authentication_error(sasl_config(sasl_broker, "SCRAM-SHA-512", "nobody", "x"))
    assert error.code() == KafkaError._AUTHENTICATION, error
    # A mechanism the user has no credential for fails the same way.
    error = authentication_error(sasl_config(sasl_broker, "SCRAM-SHA-256", "carol", "carols-right-pw"))
    assert error.code() == KafkaError._AUTHENTICATION, error
    deletion = admin.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)])
    for future in deletion.values():
        future.result(timeout=10)
    error = authentication_error(sasl_config(sasl_broker, "SCRAM-SHA-512", "carol", "carols-right-pw"))
    assert error.code() == KafkaError._AUTHENTICATION, error
    # Deleting what does not exist: RESOURCE_NOT_FOUND.
    with pytest.raises(KafkaException) as raised:
        for future in admin.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)]).values():
            future.result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    log = sasl_broker.log()
    assert "carols-right-pw" not in log and "wrong" not in log


def test_credentials_survive_a_restart(sasl_broker):
    set_users(sasl_broker, [("dave", ScramMechanism.SCRAM_SHA_256, "dave-pw")])
    sasl_broker.restart()
    produce_and_consume(sasl_config(sasl_broker, "SCRAM-SHA-256", "dave", "dave-pw"), "after-restart", count=10)


def kafka_frame(api_key, version, correlation, body=b"", client_id=b"raw"):
    header = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def closed_by_peer(sock):
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, socket.timeout) as e:
        return isinstance(e, ConnectionResetError)


def test_requests_before_authentication_close_only_that_connection(sasl_broker):
    set_users(sasl_broker, [("erin", ScramMechanism.SCRAM_SHA_512, "erin-pw")])
    host, port = sasl_broker.sasl_bootstrap.split(":")
    # Metadata v1 (all topics) without authenticating: the connection is closed.
    with socket.create_connection((host, int(port))) as s:
        s.sendall(kafka_frame(3, 1, 1, struct.pack(">i", -1)))
        assert closed_by_peer(s)
    # SaslAuthenticate with no handshake: ILLEGAL_SASL_STATE (34).
    with socket.create_connection((host, int(port))) as s:
        s.sendall(kafka_frame(36, 1, 2, struct.pack(">i", 3) + b"abc"))
        s.settimeout(5)
        size = struct.unpack(">i", s.recv(4))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
        assert struct.unpack(">ih", data[:6]) == (2, 34)
    # A wrong PLAIN password: SaslAuthenticate answers SASL_AUTHENTICATION_FAILED (58), then the
    # connection closes at the next request.
    with socket.create_connection((host, int(port))) as s:
        s.sendall(kafka_frame(17, 1, 1, struct.pack(">h", 5) + b"PLAIN"))
        token = b"\x00erin\x00not-erins-pw"
        s.sendall(kafka_frame(36, 1, 2, struct.pack(">i", len(token)) + token))
        s.settimeout(5)
        answers = []
        while len(answers) < 2:
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            answers.append(s.recv(size, socket.MSG_WAITALL))
        assert struct.unpack(">ih", answers[0][:6]) == (1, 0)    # the handshake
        assert struct.unpack(">ih", answers[1][:6]) == (2, 58)   # SASL_AUTHENTICATION_FAILED
        s.sendall(kafka_frame(3, 1, 3, struct.pack(">i", -1)))
        assert closed_by_peer(s)
    # Garbage SCRAM messages: a failure answer, then the connection closes at the next request.
    for garbage in [b"", b"n,,", b"p=tls-unique,,n=erin,r=x", b"n,,n=erin,r=" + b"A" * 100000, b"\xff\xfe\x00",
                    b"n,,n=er=ZZin,r=abc"]:
        with socket.create_connection((host, int(port))) as s:
            s.sendall(kafka_frame(17, 1, 1, struct.pack(">h", 13) + b"SCRAM-SHA-512"))
            s.sendall(kafka_frame(36, 1, 2, struct.pack(">i", len(garbage)) + garbage))
            s.sendall(kafka_frame(3, 1, 3, struct.pack(">i", -1)))
            assert closed_by_peer(s)
    # Everyone else is still served.
    produce_and_consume(sasl_config(sasl_broker, "SCRAM-SHA-512", "erin", "erin-pw"), "still-served", count=5)


def test_kafka_python_authenticates_with_scram(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer
    set_users(sasl_broker, [("frank", ScramMechanism.SCRAM_SHA_256, "frank-pw")])
    common = dict(bootstrap_servers=sasl_broker.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="frank", sasl_plain_password="frank-pw")
    producer = KafkaProducer(**common)
    for i in range(20):
        producer.send("kp-scram", f"m{i}".encode())
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer("kp-scram", auto_offset_reset="earliest", consumer_timeout_ms=5000, **common)
    assert [m.value.decode() for m in consumer] == [f"m{i}" for i in range(20)]
    consumer.close()
