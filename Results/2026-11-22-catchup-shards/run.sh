#!/usr/bin/env bash
# Server A/B on the same page-cached backlog: the previous session's binary (3f95b68) against
# this one with cpus=1 and cpus=2; the consumer is always this session's binary.
set -uo pipefail
NEW=/work/main/.build/release/apus
OLD=/tmp/cu/apus-final
DIR=/tmp/cu/data
PORT=19500
start() { $1 serve --data-dir $DIR --listen 127.0.0.1:$PORT --num-partitions 4 $2 > /tmp/cu/serve-ab5.log 2>&1 & echo $! > /tmp/cu/pid; for i in $(seq 1 200); do (echo -n > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done; sleep 0.5; }
stop() { kill -TERM $(cat /tmp/cu/pid); while kill -0 $(cat /tmp/cu/pid) 2>/dev/null; do sleep 0.1; done; }
for round in 1 2 3; do
  for variant in old new1 new2; do
    case $variant in old) start $OLD "";; new1) start $NEW "--set cpus=1";; new2) start $NEW "--set cpus=2";; esac
    line=$($NEW perf consume --bootstrap 127.0.0.1:$PORT --topic backlog60 --num-records 60000000 2>&1 | grep "records consumed in")
    steal=$(awk '/^cpu /{print $9}' /proc/stat)
    echo "round $round $variant: $line" | tee -a /tmp/cu/ab5.txt
    stop
  done
done
