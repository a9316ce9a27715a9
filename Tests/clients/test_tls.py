"""TLS with real clients against a real `apus serve`: SSL and SASL_SSL listeners beside PLAINTEXT,
mutual TLS, certificate reload on SIGHUP, and bad input on a TLS port. Certificates are made here
with the `openssl` command."""
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from conftest import Broker, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(d):
    """A CA, a server certificate for 127.0.0.1/localhost (server.pem: chain + key) and a client
    certificate (CN=alice) signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Apus Test CA", cwd=d)
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, ext in [("server", "/CN=localhost", ["-extfile", "san.cnf"]), ("client", "/O=Apus/CN=alice", [])]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
        with open(os.path.join(d, f"{name}.pem"), "w") as out:
            out.write(open(os.path.join(d, f"{name}.crt")).read() + open(os.path.join(d, f"{name}.key")).read())
    return d


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory(prefix="apus-certs-") as d:
        yield make_certificates(d)


def start(tmp, certs, extra=()):
    ssl_port, sasl_ssl_port = free_port(), free_port()
    b = Broker(os.path.join(tmp, "data"), [
        "--set", f"listeners=PLAINTEXT://127.0.0.1:{{port}},SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_ssl_port}",
        "--set", f"ssl.keystore.location={certs}/server.pem", "--set", f"ssl.truststore.location={certs}/ca.pem", *extra])
    b.ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    b.sasl_ssl_bootstrap = f"127.0.0.1:{sasl_ssl_port}"
    return b


@pytest.fixture(params=["posix", "uring"])
def tls_broker(request, certs):
    with tempfile.TemporaryDirectory(prefix="apus-tls-") as tmp:
        b = start(tmp, certs, ["--io-backend", request.param])
        try:
            yield b
        finally:
            assert b.stop() == 0, b.log()[-3000:]


def ssl_config(bootstrap, certs, **extra):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": f"{certs}/ca.pem", **extra}


def round_trip(config, topic, count=2000, size=4096):
    """Produces `count` records of `size` bytes and consumes them back, checking every byte:
    fetches of this size are file ranges, which TLS must read and encrypt."""
    errors = []
    producer = Producer({**config, "error_cb": errors.append, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, key=str(i).encode(), value=(b"%08d" % i) * (size // 8))
    assert producer.flush(30) == 0, errors
    consumer = Consumer({**config, "group.id": "g-" + topic, "auto.offset.reset": "earliest", "fetch.max.bytes": 8 << 20})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.time() + 60
    while seen < count and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        i = int(m.key())
        assert m.value() == (b"%08d" % i) * (size // 8)
        assert i == seen
        seen += 1
    consumer.close()
    assert seen == count


def test_ssl_listener_produces_and_consumes_beside_plaintext(tls_broker, certs):
    round_trip(ssl_config(tls_broker.ssl_bootstrap, certs), "over-tls")
    # The same topic over PLAINTEXT (sendfile) reads the same bytes.
    round_trip({"bootstrap.servers": tls_broker.bootstrap}, "over-tls", count=2000)
    md = Producer(ssl_config(tls_broker.ssl_bootstrap, certs)).list_topics(timeout=10)
    assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [tls_broker.ssl_bootstrap]
    assert "fetches over TLS read file data into memory" in tls_broker.log()


def test_sasl_ssl_with_scram_and_plain(tls_broker, certs):
    admin = AdminClient({"bootstrap.servers": tls_broker.bootstrap})
    for future in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"alice-pw")]).values():
        future.result(timeout=10)
    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        config = {**ssl_config(tls_broker.sasl_ssl_bootstrap, certs), "security.protocol": "SASL_SSL",
                  "sasl.mechanism": mechanism, "sasl.username": "alice", "sasl.password": "alice-pw"}
        round_trip(config, "sasl-ssl-" + mechanism.lower(), count=200)
    errors = []
    p = Producer({**ssl_config(tls_broker.sasl_ssl_bootstrap, certs), "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                  "sasl.username": "alice", "sasl.password": "nope", "error_cb": errors.append})
    p.produce("x", b"x")
    deadline = time.time() + 10
    while not errors and time.time() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION


def kcat_round_trip(args, topic):
    lines = "".join(f"line-{i}\n" for i in range(100))
    subprocess.run(args + ["-P", "-t", topic], input=lines.encode(), check=True, timeout=30)
    out = subprocess.run(args + ["-C", "-t", topic, "-o", "beginning", "-e", "-q"], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode() == lines


def test_kcat_over_ssl_and_sasl_ssl(tls_broker, certs):
    tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs}/ca.pem"]
    kcat_round_trip(["kcat", "-b", tls_broker.ssl_bootstrap, *tls], "kcat-tls")
    admin = AdminClient({"bootstrap.servers": tls_broker.bootstrap})
    for future in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("kim", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"kim-pw")]).values():
        future.result(timeout=10)
    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        sasl = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={certs}/ca.pem", "-X", f"sasl.mechanism={mechanism}",
                "-X", "sasl.username=kim", "-X", "sasl.password=kim-pw"]
        kcat_round_trip(["kcat", "-b", tls_broker.sasl_ssl_bootstrap, *sasl], "kcat-sasl-" + mechanism.lower())


def test_mutual_tls_required(certs):
    with tempfile.TemporaryDirectory(prefix="apus-mtls-") as tmp:
        b = start(tmp, certs, ["--set", "ssl.client.auth=required", "--set", "log.level=debug"])
        try:
            with_cert = ssl_config(b.ssl_bootstrap, certs, **{"ssl.certificate.location": f"{certs}/client.crt",
                                                              "ssl.key.location": f"{certs}/client.key"})
            round_trip(with_cert, "mtls", count=100)
            kcat_round_trip(["kcat", "-b", b.ssl_bootstrap, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs}/ca.pem",
                             "-X", f"ssl.certificate.location={certs}/client.crt", "-X", f"ssl.key.location={certs}/client.key"], "kcat-mtls")
            errors = []
            p = Producer({**ssl_config(b.ssl_bootstrap, certs), "error_cb": errors.append})
            p.produce("mtls", b"x")
            deadline = time.time() + 10
            while not errors and time.time() < deadline:
                p.poll(0.2)
            assert errors, "a client without a certificate must be refused"
            assert "TLS handshake failed" in b.log()
            assert "User:CN=alice,O=Apus" in b.log()  # the principal the certificate proves
        finally:
            assert b.stop() == 0, b.log()[-3000:]


def server_certificate_serial(bootstrap, certs):
    host, port = bootstrap.split(":")
    context = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    with socket.create_connection((host, int(port))) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


def test_sighup_reloads_the_certificate_without_dropping_connections(certs):
    with tempfile.TemporaryDirectory(prefix="apus-reload-") as tmp:
        own = os.path.join(tmp, "certs")
        os.makedirs(own)
        for f in ["ca.pem", "ca.key", "server.pem", "san.cnf", "server.csr"]:
            subprocess.run(["cp", f"{certs}/{f}", own], check=True)
        b = start(tmp, own)
        try:
            before = server_certificate_serial(b.ssl_bootstrap, own)
            producer = Producer(ssl_config(b.ssl_bootstrap, own))
            producer.produce("reload", b"before")
            assert producer.flush(10) == 0
            # A new server certificate from the same CA, then SIGHUP.
            openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "server2.crt", "-days", "2", "-extfile", "san.cnf", cwd=own)
            key = open(f"{certs}/server.key").read()
            with open(os.path.join(own, "server.pem"), "w") as f:
                f.write(open(os.path.join(own, "server2.crt")).read() + key)
            b.process.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while "TLS certificate reloaded" not in b.log() and time.time() < deadline:
                time.sleep(0.05)
            assert "TLS certificate reloaded" in b.log()
            assert server_certificate_serial(b.ssl_bootstrap, own) != before
            producer.produce("reload", b"after")  # the established connection still works
            assert producer.flush(10) == 0
            # A broken file: the reload fails with a log line and the current certificate stays.
            with open(os.path.join(own, "server.pem"), "w") as f:
                f.write("not a certificate")
            b.process.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while "reload failed" not in b.log() and time.time() < deadline:
                time.sleep(0.05)
            assert "reload failed" in b.log()
            server_certificate_serial(b.ssl_bootstrap, own)
        finally:
            assert b.stop() == 0, b.log()[-3000:]


def test_bad_input_on_a_tls_port_closes_only_that_connection(tls_broker, certs):
    """Garbage on the TLS and SASL_SSL ports while a real client produces over TLS: every record
    of the client is acknowledged, the broker keeps running, and the log stays within its limit."""
    host, port = tls_broker.ssl_bootstrap.split(":")
    producer = Producer(ssl_config(tls_broker.ssl_bootstrap, certs, **{"linger.ms": 1}))
    delivered = []
    stop = threading.Event()

    def produce_steadily():
        i = 0
        while not stop.is_set():
            producer.produce("steady", value=b"%d" % i, on_delivery=lambda err, msg: delivered.append(err))
            producer.poll(0)
            i += 1
            time.sleep(0.002)
        producer.flush(20)

    steady = threading.Thread(target=produce_steadily)
    steady.start()
    api_versions = struct.pack(">ihhih", 10, 18, 0, 1, 0)  # a plaintext Kafka request
    client_hello_start = bytes.fromhex("16030100c4010000c00303") + os.urandom(20)  # truncated
    inputs = [api_versions, client_hello_start, os.urandom(5000), b"\x16\x03\x01\xff\xff" + os.urandom(100), b""]
    sasl_host, sasl_port = tls_broker.sasl_ssl_bootstrap.split(":")
    for data, (h, p) in [(d, hp) for d in inputs * 4 for hp in [(host, port), (sasl_host, sasl_port)]]:
        with socket.create_connection((h, int(p))) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    stop.set()
    steady.join(timeout=30)
    assert delivered and all(err is None for err in delivered), [e for e in delivered if e is not None][:3]
    # A new client still gets through, and the broker logged no more than its rate limit.
    round_trip(ssl_config(tls_broker.ssl_bootstrap, certs), "after-garbage", count=50)
    assert tls_broker.process.poll() is None
    assert tls_broker.log().count("closing connection") <= 10 * 20


def test_each_listener_can_have_its_own_certificate(certs):
    """listener.name.<l>.ssl.*: an INTERNAL listener with a certificate of its own beside the
    EXTERNAL one's; clients of each see their listener's certificate and both work."""
    with tempfile.TemporaryDirectory(prefix="apus-per-listener-") as tmp:
        own = os.path.join(tmp, "certs")
        os.makedirs(own)
        for f in ["ca.pem", "ca.key", "san.cnf", "server.csr", "server.key"]:
            subprocess.run(["cp", f"{certs}/{f}", own], check=True)
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "internal.crt", "-days", "2", "-extfile", "san.cnf", cwd=own)
        with open(os.path.join(own, "internal.pem"), "w") as f:
            f.write(open(os.path.join(own, "internal.crt")).read() + open(os.path.join(own, "server.key")).read())
        external, internal = free_port(), free_port()
        b = Broker(os.path.join(tmp, "data"), [
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{{port}},EXTERNAL://127.0.0.1:{external},INTERNAL://127.0.0.1:{internal}",
            "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SSL,INTERNAL:SSL",
            "--set", f"ssl.keystore.location={certs}/server.pem",
            "--set", f"listener.name.internal.ssl.keystore.location={own}/internal.pem"])
        try:
            assert server_certificate_serial(f"127.0.0.1:{external}", certs) != server_certificate_serial(f"127.0.0.1:{internal}", certs)
            round_trip(ssl_config(f"127.0.0.1:{external}", certs), "via-external", count=20)
            round_trip(ssl_config(f"127.0.0.1:{internal}", certs), "via-internal", count=20)
        finally:
            assert b.stop() == 0, b.log()[-3000:]
