#!/bin/bash
# One tail probe on a standalone broker (every setting at its default): 16 s of maximum-rate
# produce with 1 MiB batches (2 producers), then 15 s open-loop at RATE with 16 KiB batches,
# the generator queueing like Kafka's clients. The broker's metrics are scraped right before
# and after the probe, so that their difference is the probe's alone.
#   BIN=.build/release/apus RATE=2400000 OUT=/tmp/probe-1 scripts/probe.sh
#   python3 scripts/broker_diff.py $OUT/metrics0.txt $OUT/metrics.txt
set -u
BIN=${BIN:-.build/release/apus}
RATE=${RATE:-2400000}
OUT=${OUT:-/tmp/apus-probe}
D=$OUT/data
rm -rf $OUT; mkdir -p $D
$BIN serve --data-dir $D --listen 127.0.0.1:19092 --log-level info > $OUT/broker.log 2>&1 &
BPID=$!
sleep 2
$BIN perf produce --bootstrap 127.0.0.1:19092 --topic pre --partitions 4 --duration 16 --producer-props batch.size=1048576 linger.ms=5 acks=1 --producers 2 > $OUT/pre.txt 2>&1
curl -s 127.0.0.1:9644/metrics > $OUT/metrics0.txt
$BIN perf produce --bootstrap 127.0.0.1:19092 --topic probe --partitions 4 --duration 15 --throughput $RATE --producer-props batch.size=16384 linger.ms=1 acks=1 send.waits=buffer-memory --print-metrics > $OUT/probe.txt 2>&1
curl -s 127.0.0.1:9644/metrics > $OUT/metrics.txt
kill -TERM $BPID; sleep 3
rm -rf $D
