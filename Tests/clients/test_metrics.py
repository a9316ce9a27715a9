"""The metrics endpoint as Prometheus reads it, after real client traffic (confluent-kafka)."""
import urllib.error
import urllib.request

from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from test_confluent_kafka import produce


def get(broker, path, accept=None):
    request = urllib.request.Request(f"http://127.0.0.1:{broker.metrics_port}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of a text exposition, parsed by Prometheus's own client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape_until(broker, predicate, timeout=10):
    """Shards publish their statistics once a second: scrape until `predicate` holds."""
    import time
    deadline = time.time() + timeout
    while True:
        status, content_type, text = get(broker, "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        found = samples(text)
        if predicate(found) or time.time() > deadline:
            return found
        time.sleep(0.3)


def test_metrics_show_traffic_offsets_and_group_lag(broker):
    produce(broker.bootstrap, "metered", [(None, f"m{i}".encode()) for i in range(100)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "metered-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["metered"])
    seen = []
    while len(seen) < 60:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.append(msg)
    consumer.commit(message=seen[59], asynchronous=False)

    lag = ("apus_consumer_group_lag", frozenset({"group": "metered-group", "topic": "metered", "partition": "0"}.items()))
    found = scrape_until(broker, lambda s: s.get(lag) == 40)
    consumer.close()
    assert found[lag] == 40, "log end 100 − committed 60"
    assert found[("apus_consumer_group_committed_offset", lag[1])] == 60
    assert found[("apus_topic_messages_in_total", frozenset({"topic": "metered"}.items()))] == 100
    assert found[("apus_log_end_offset", frozenset({"topic": "metered", "partition": "0"}.items()))] == 100
    assert found[("apus_log_start_offset", frozenset({"topic": "metered", "partition": "0"}.items()))] == 0
    assert found[("apus_topic_bytes_out_total", frozenset({"topic": "metered"}.items()))] > 0
    assert found[("apus_requests_total", frozenset({"request": "Produce"}.items()))] >= 1
    assert found[("apus_requests_total", frozenset({"request": "OffsetCommit"}.items()))] >= 1
    produce_count = ("apus_request_duration_seconds_count", frozenset({"request": "Produce"}.items()))
    assert found[produce_count] >= 1
    assert found[("apus_request_duration_seconds_bucket", frozenset({"request": "Produce", "le": "+Inf"}.items()))] == found[produce_count]
    for part in ("queue", "handler", "wait", "send"):
        assert found[(f"apus_request_{part}_seconds_count", frozenset({"request": "Produce"}.items()))] >= 1, part
    assert sum(v for (name, _), v in found.items() if name == "apus_connections_accepted_total") >= 2
    assert found[("apus_shard_disk_waits_total", frozenset())] == 0
    assert found[("apus_ready", frozenset())] == 1
    assert found[("process_open_fds", frozenset())] > 0


def test_openmetrics_and_health(broker):
    status, content_type, text = get(broker, "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
    names = {f.name for f in openmetrics_families(text)}
    assert {"apus_requests", "apus_request_duration_seconds", "process_cpu_seconds"} <= names
    assert get(broker, "/health/live")[0] == 200
    assert scrape_until(broker, lambda s: s.get(("apus_ready", frozenset())) == 1)[("apus_ready", frozenset())] == 1
    assert get(broker, "/health/ready")[0] == 200
    assert get(broker, "/nothing-here")[0] == 404
