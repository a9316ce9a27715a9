#!/bin/bash
# One 50 % tail probe (as ../2026-12-06-probe-turns/scripts/probe.sh: standalone broker with
# defaults, 16 s maximum-rate preload with 1 MiB batches, then 1 + 15 s open-loop at RATE with
# 16 KiB batches; the first second not counted, as the sweeps' warmup), its latency in 100 ms intervals, a system-wide CPU profile (perf, 997 Hz,
# kernel and user stacks; PERF=0: none) and /proc/meminfo, /proc/vmstat and /proc/stat every
# 100 ms during the probe. PRE: the preload's seconds (16); EXTRA: more `apus serve` options.
#   BIN=.build/release/apus RATE=2400000 OUT=/tmp/cpu-1 scripts/capture.sh
set -u
BIN=${BIN:-.build/release/apus}
RATE=${RATE:-2400000}
OUT=${OUT:-/tmp/apus-cpu}
EXTRA=${EXTRA:-}
PRE=${PRE:-16}
PERF=${PERF:-1}
D=$OUT/data
rm -rf $OUT; mkdir -p $D
$BIN serve --data-dir $D --listen 127.0.0.1:19092 --log-level info $EXTRA > $OUT/broker.log 2>&1 &
BPID=$!
sleep 2
$BIN perf produce --bootstrap 127.0.0.1:19092 --topic pre --partitions 4 --duration $PRE --producer-props batch.size=1048576 linger.ms=5 acks=1 --producers 2 > $OUT/pre.txt 2>&1
# The shards publish their statistics once a second: wait for a copy without the preload's
# last second. (Added after this bundle's runs: their broker-during-probe.txt counts may hold
# up to a second of the preload's requests.)
sleep 1.1
curl -s 127.0.0.1:9644/metrics > $OUT/metrics0.txt
python3 $(dirname $0)/sample_sys.py 18 > $OUT/sys.txt &
SPID=$!
PPID2=0
if [ "$PERF" = 1 ]; then perf record -k CLOCK_MONOTONIC -a -g -F 997 -o $OUT/perf.data -- sleep 17 > $OUT/perf-record.txt 2>&1 & PPID2=$!; fi
echo "probe start $(python3 -c "import time; print(time.monotonic())")" > $OUT/times.txt
$BIN perf produce --bootstrap 127.0.0.1:19092 --topic probe --partitions 4 --duration 16 --warmup 1 --throughput $RATE --producer-props batch.size=16384 linger.ms=1 acks=1 send.waits=buffer-memory --print-metrics --reporting-interval 100 --json $OUT/probe.json > $OUT/probe.txt 2>&1
echo "probe end $(python3 -c "import time; print(time.monotonic())")" >> $OUT/times.txt
curl -s 127.0.0.1:9644/metrics > $OUT/metrics.txt
kill $SPID 2>/dev/null
while [ $PPID2 != 0 ] && kill -0 $PPID2 2>/dev/null; do sleep 0.5; done
kill -TERM $BPID; sleep 3
rm -rf $D
