"""Real Kafka clients (confluent-kafka, kafka-python) against a real `apus serve` on 127.0.0.1."""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def apus_binary():
    path = os.environ.get("APUS_BIN", os.path.join(ROOT, ".build", "debug", "apus"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} not found: run `swift build` first (or set APUS_BIN)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One `apus serve` process; restartable on the same data directory and port."""

    # Every broker started by the running test: a failed test's report carries their logs.
    started = []

    def __init__(self, data_dir, extra_args=()):
        Broker.started.append(self)
        self.data_dir = data_dir
        self.port = free_port()
        self.metrics_port = free_port()
        self.extra_args = list(extra_args)
        self.process = None
        self.log_path = data_dir + ".log"
        self.start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        # Ready once this process has logged that it listens: right after a SIGKILL the previous
        # process's listener can still accept for a moment (its io_uring teardown holds it).
        started = self.log().count("] listening") if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [apus_binary(), "serve", "--data-dir", self.data_dir, "--listen", self.bootstrap,
             "--set", "group.initial.rebalance.delay.ms=0",
             "--set", f"metrics.listen=127.0.0.1:{self.metrics_port}",
             # "{port}" in an argument is this broker's (first listener's) port.
             *[a.replace("{port}", str(self.port)) for a in self.extra_args]],
            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("apus serve exited:\n" + self.log())
            if self.log().count("] listening") <= started:
                time.sleep(0.02)
                continue
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("apus serve did not listen:\n" + self.log())

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        return self.process.returncode

    def restart_with(self, extra_args, sig=signal.SIGTERM):
        """Restarts with more command-line arguments."""
        self.stop(sig)
        self.extra_args += list(extra_args)
        self.start()

    def restart(self, sig=signal.SIGTERM):
        code = self.stop(sig)
        self.start()
        return code

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


@pytest.fixture(autouse=True)
def _brokers_of_this_test():
    Broker.started.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the tail of each of its brokers' logs (read before the
    fixtures' teardown removes their directories)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for b in Broker.started:
            try:
                report.sections.append((f"apus log {os.path.basename(b.log_path)} (port {b.port})", b.log()[-6000:]))
            except OSError as e:
                report.sections.append((f"apus log {b.log_path}", f"unreadable: {e}"))


@pytest.fixture(params=["posix", "uring"])
def broker(request):
    """A broker whose appends and network I/O use epoll + POSIX calls, or io_uring."""
    with tempfile.TemporaryDirectory(prefix="apus-clients-") as tmp:
        b = Broker(os.path.join(tmp, "data"), ["--io-backend", request.param])
        try:
            yield b
        finally:
            code = b.stop(signal.SIGTERM)
            assert code == 0, "apus serve did not stop cleanly:\n" + b.log()[-3000:]


@pytest.fixture
def single_broker():
    """One broker with the default I/O backend, for tests of logic that does not depend on it."""
    with tempfile.TemporaryDirectory(prefix="apus-clients-") as tmp:
        b = Broker(os.path.join(tmp, "data"))
        try:
            yield b
        finally:
            code = b.stop(signal.SIGTERM)
            assert code == 0, "apus serve did not stop cleanly:\n" + b.log()[-3000:]
