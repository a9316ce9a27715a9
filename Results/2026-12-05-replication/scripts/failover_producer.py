"""Open-loop acks=all idempotent producer (confluent-kafka) for the failover timeline: sends at a
fixed rate, records each record's latency from its intended send time to its acknowledgement,
and writes one row per second of send time: sent, acknowledged, failed, p50/p99/max ms.
The acknowledged record numbers go to OUT.csv.acked. Usage: failover_producer.py BOOTSTRAP TOPIC RATE SECONDS OUT.csv"""
import csv
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, rate, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
acks = []  # (intended send time, ack time or None, error, record number)
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 1})
start = time.monotonic()
n = 0
while True:
    intended = start + n / rate
    now = time.monotonic()
    if intended - start >= seconds:
        break
    if intended > now:
        p.poll(intended - now)
        continue

    def report(err, msg, intended=intended, number=n):
        acks.append((intended - start, time.monotonic() - start if err is None else None, None if err is None else err.name(), number))
    p.produce(topic, b"%d" % n, on_delivery=report)
    p.poll(0)
    n += 1
p.flush(120)

rows = {}
for sent, acked, err, _ in acks:
    s = int(sent)
    row = rows.setdefault(s, {"sent": 0, "acked": 0, "failed": 0, "lat": []})
    row["sent"] += 1
    if err is None:
        row["acked"] += 1
        row["lat"].append((acked - sent) * 1000)
    else:
        row["failed"] += 1


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["second", "sent", "acked", "failed", "p50_ms", "p99_ms", "max_ms"])
    for s in sorted(rows):
        r = rows[s]
        w.writerow([s, r["sent"], r["acked"], r["failed"], f"{pct(r['lat'], 0.5):.1f}", f"{pct(r['lat'], 0.99):.1f}", f"{max(r['lat'], default=float('nan')):.1f}"])
errors = [e for _, _, e, _ in acks if e]
with open(out + ".acked", "w") as f:
    f.write("\n".join(str(number) for _, _, e, number in acks if e is None) + "\n")
print(f"sent {n} acknowledged {sum(1 for a in acks if a[2] is None)} failed {len(errors)} {sorted(set(errors))}")
