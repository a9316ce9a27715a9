#!/bin/bash
# End-to-end (produce + consume, `apus perf e2e`) on a single broker, two builds alternating
# (ABBA), to see that the replication changes to the fetch path (reads bounded by the high
# watermark, parked fetches re-arming their wake-up) cost a single broker nothing. Each run: a
# fresh `apus serve`, 10 s after 1 s of warm-up, 2 producer connections, 1 MiB batches, acks=1,
# 4 partitions, 100-byte records; sync and wait for Dirty + Writeback < 64 MiB before each.
# Usage: e2e-ab.sh BIN_A BIN_B OUT [ROUNDS]
set -u
a=$1; b=$2; out=$3; rounds=${4:-2}; mkdir -p $out
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
run() {  # name bin
  local name=$1 bin=$2 data=/work/exp-e2e-data port=$((19800 + RANDOM % 100))
  settle; rm -rf $data
  $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker-$name.log & local pid=$!
  sleep 1.5
  $bin perf e2e --bootstrap 127.0.0.1:$port --topic e --duration 10 --warmup 1 --record-size 100 --throughput -1 \
    --producers 2 --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/e2e-$name.json > $out/e2e-$name.txt 2>&1
  kill -TERM $pid; wait $pid; rm -rf $data
  echo "$name $(grep -iE 'consumed' $out/e2e-$name.txt | tail -1)" | tee -a $out/runs.txt
}
for r in $(seq 1 $rounds); do
  if [ $((r % 2)) = 1 ]; then run A-$r $a; run B-$r $b; else run B-$r $b; run A-$r $a; fi
done
