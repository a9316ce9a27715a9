#!/usr/bin/env bash
# Produce A/B on the broker's hot path: the previous session's binary (3f95b68, one loop)
# against this one with cpus=1 and cpus=2; the load generator is always this one's.
# 100-byte records, 1 MiB batches, acks=1, 4 partitions, page-cache, 10 s, one producer.
set -uo pipefail
NEW=${NEW:-/work/main/.build/release/apus}
OLD=${OLD:-/tmp/cu/apus-final}
PORT=19600
start() { rm -rf /tmp/pab/data; $1 serve --data-dir /tmp/pab/data --listen 127.0.0.1:$PORT --num-partitions 4 $2 > /tmp/pab/serve.log 2>&1 & echo $! > /tmp/pab/pid; for i in $(seq 1 200); do (echo -n > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done; sleep 0.5; }
stop() { kill -TERM $(cat /tmp/pab/pid); while kill -0 $(cat /tmp/pab/pid) 2>/dev/null; do sleep 0.1; done; }
for round in 1 2 3; do
  for variant in old new1 new2; do
    case $variant in old) start $OLD "";; new1) start $NEW "--set cpus=1";; new2) start $NEW "--set cpus=2";; esac
    read t1 s1 < <(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat)
    line=$($NEW perf produce --bootstrap 127.0.0.1:$PORT --topic ab --duration 10 --record-size 100 --throughput -1 \
        --producer-props acks=1 batch.size=1048576 linger.ms=5 2>&1 | grep -E "records sent" | tail -1)
    read t2 s2 < <(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat)
    echo "round $round $variant (steal $(( (s2-s1)*100/(t2-t1) ))%): $line"
    stop
  done
done
