"""kafka-python (pure Python client) against apus serve."""
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer


def test_produce_and_consume(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    for i in range(300):
        producer.send("kp", key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", b"x")])
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer("kp", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, group_id=None)
    got = [(m.offset, m.key, m.value, m.headers) for m in consumer]
    consumer.close()
    assert [o for o, *_ in got] == list(range(300))
    assert [v for _, _, v, _ in got] == [f"v{i}".encode() for i in range(300)]
    assert all(h == [("h", b"x")] for *_, h in got)


def test_group_consumes_every_record_once(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(200):
        producer.send("kpg", value=f"g{i}".encode())
    producer.flush(30)
    producer.close()
    group = f"kp-{uuid.uuid4()}"
    consumers = [KafkaConsumer("kpg", bootstrap_servers=broker.bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=True,
                               session_timeout_ms=6000, heartbeat_interval_ms=500) for _ in range(2)]
    seen = []
    deadline = time.time() + 60
    while len(seen) < 200 and time.time() < deadline:
        for c in consumers:
            for records in c.poll(timeout_ms=200).values():
                seen += [r.value for r in records]
    for c in consumers:
        c.close()
    assert sorted(seen) == sorted(f"g{i}".encode() for i in range(200))
