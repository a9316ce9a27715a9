"""A real Prometheus (Debian's) scraping a real `apus serve` under client traffic: promtool
accepts the exposition, and PromQL through Prometheus's HTTP API sees what the test produced
and committed."""
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

from conftest import free_port
from test_admin import stable_group_with_commits
from test_confluent_kafka import produce


def wait_for(check, timeout=45, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last})")


def test_promtool_and_prometheus_read_the_endpoint(broker, tmp_path):
    consumer = stable_group_with_commits(broker.bootstrap, "prom", "prom-group", 500, 300)
    try:
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10).read()
        lint = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: apus
    static_configs:
      - targets: ["127.0.0.1:{broker.metrics_port}"]
""")
        server = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
        try:
            def query(q):
                url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                body = json.loads(urllib.request.urlopen(url, timeout=5).read())
                assert body["status"] == "success", body
                return [float(r["value"][1]) for r in body["data"]["result"]]

            wait_for(lambda: query('up{job="apus"}') == [1.0], what="Prometheus scraping apus")
            wait_for(lambda: query('apus_topic_messages_in_total{topic="prom"}') == [500.0], what="500 records in")
            lag = 'apus_consumer_group_lag{group="prom-group",topic="prom",partition="0"}'
            wait_for(lambda: query(lag) == [200.0], what="lag 200")
            assert query(lag) == [200.0]
            assert query('apus_consumer_group_committed_offset{group="prom-group"}') == [300.0]
            assert query('apus_log_end_offset{topic="prom"}') == [500.0]
            # A rate needs two samples that differ: 250 more records after the first scrapes.
            produce(broker.bootstrap, "prom", [(None, b"more")] * 250)
            wait_for(lambda: query('apus_topic_messages_in_total{topic="prom"}') == [750.0], what="750 records in")
            increase = query('sum(increase(apus_topic_messages_in_total{topic="prom"}[1m]))')
            assert len(increase) == 1 and 0 < increase[0] <= 750 * 1.5, increase
            assert query('sum(apus_request_duration_seconds_count{request="Produce"})')[0] >= 1
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        consumer.close()
