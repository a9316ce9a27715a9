#!/usr/bin/env bash
# A leader killed (SIGNAL=KILL, the default) or stopped (SIGNAL=TERM: a controlled shutdown that
# hands leadership off first) under an open-loop acks=all idempotent producer (RATE records/s), then
# restarted: the per-second latency timeline, the acknowledged records read back, the cluster's
# view. Topic "fo": 1 partition, replicas 1,2,3 (broker 1 leads), min.insync.replicas=2.
# Usage: failover.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cluster.sh"
OUT=${1:?out dir}; RATE=${RATE:-2000}; KILL_AT=${KILL_AT:-10}; RESTART_AT=${RESTART_AT:-25}; RUN=${RUN:-40}
mkdir -p "$OUT"
trap stop_cluster EXIT
start_cluster
python3 - <<PY
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": "127.0.0.1:${PORT[1]}"})
for f in a.create_topics([NewTopic("fo", num_partitions=1, replica_assignment=[[1, 2, 3]], config={"min.insync.replicas": "2"})]).values(): f.result(timeout=20)
PY
sleep 1
python3 "$here/failover_producer.py" "127.0.0.1:${PORT[2]},127.0.0.1:${PORT[3]},127.0.0.1:${PORT[1]}" fo "$RATE" "$RUN" "$OUT/timeline.csv" > "$OUT/producer.txt" &
producer=$!
sleep "$KILL_AT"; kill_broker 1; echo "broker 1 got SIG${SIGNAL:-KILL} at second $KILL_AT" > "$OUT/killed-at"
"$APUS" cluster status --etcd "etcd://127.0.0.1:$ETCD_PORT" > "$OUT/status-after-kill.txt" || true
sleep $((RESTART_AT - KILL_AT)); start_broker 1
wait $producer
sleep 3
"$APUS" cluster status --etcd "etcd://127.0.0.1:$ETCD_PORT" > "$OUT/status-end.txt"
for n in 1 2 3; do grep -E "elected|in-sync|truncated|waiting for that lease" "$WORK/b$n.log" | sed "s/^/b$n: /" >> "$OUT/broker-events.txt" || true; done
python3 - "$OUT" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
out = sys.argv[1]
c = Consumer({"bootstrap.servers": "127.0.0.1:19092", "group.id": "check", "enable.auto.commit": False})
c.assign([TopicPartition("fo", 0, OFFSET_BEGINNING)])
seen, empty = [], 0
while empty < 6:
    m = c.poll(0.5)
    if m is None: empty += 1; continue
    if m.error() is None: seen.append(int(m.value())); empty = 0
c.close()
acked = {int(line) for line in open(out + "/timeline.csv.acked") if line.strip()}
lost = acked - set(seen)
open(out + "/readback.txt", "w").write(f"acknowledged {len(acked)}; read back {len(seen)} records, distinct {len(set(seen))}, "
                                       f"in order {seen == sorted(seen)}; acknowledged but missing {len(lost)}\n")
import os
os.remove(out + "/timeline.csv.acked")  # large; the check above is what it was kept for
PY
