#!/bin/bash
# Maximum-rate produce, two builds alternating (ABBA within each pair of rounds), with the C
# pipeline ceiling (append mode) at the start of every round. Each Apus run: a fresh
# `apus serve` (default config, metrics off), `apus perf produce` 10 s after 1 s of warm-up,
# PRODUCERS connections (2), 1 MiB batches, acks=1, linger 5 ms, 4 partitions, 100-byte records.
# Before each run: sync, then wait for Dirty + Writeback < 64 MiB. CPU idle % = share of both
# CPUs idle or in iowait during the produce run (/proc/stat). Stalls: the broker's shutdown line.
# Usage: ab.sh BIN_A BIN_B OUT [ROUNDS]
set -u
a=$1; b=$2; out=$3; rounds=${4:-6}; producers=${PRODUCERS:-2}; mkdir -p $out
ceiling=${CEILING:-/tmp/ceiling/pipeline_ceiling}
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
cpu() { awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
run() {  # name bin
  local name=$1 bin=$2 data=/work/exp-ab-data port=$((19500 + RANDOM % 300))
  settle; rm -rf $data
  $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker-$name.log & local pid=$!
  sleep 1.5
  local s=($(cpu))
  $bin perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput -1 \
    --producers $producers --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/produce-$name.json > $out/produce-$name.txt 2>&1
  local e=($(cpu))
  kill -TERM $pid; wait $pid; rm -rf $data
  local idle=$(echo "scale=1; 100*(${e[0]}-${s[0]})/(${e[1]}-${s[1]})" | bc)
  local line=$(grep -E 'records sent.*p99.9' $out/produce-$name.txt | head -1)
  local rate=$(echo "$line" | sed -E 's/.*, ([0-9.]+) records\/sec.*/\1/')
  local p999=$(echo "$line" | sed -E 's/.*p99.9 ([0-9.]+) ms.*/\1/')
  local mx=$(echo "$line" | sed -E 's/.* ([0-9.]+) ms max latency.*/\1/')
  local stalls=$(grep -oE 'stalls=[0-9]+' $out/broker-$name.log | cut -d= -f2 | paste -sd+ | bc)
  local longest=$(grep -oE 'longestMs=[0-9.]+' $out/broker-$name.log | cut -d= -f2 | sort -n | tail -1)
  echo "$name rate=$rate p99.9=$p999 max=$mx idle=$idle stalls=$stalls longest=$longest" | tee -a $out/runs.txt
}
for r in $(seq 1 $rounds); do
  settle
  $ceiling 8 1048576 100 1 1 append /work/ceiling.log > $out/ceiling-$r.txt 2>&1; rm -f /work/ceiling.log
  echo "ceiling-$r $(grep -oE '[0-9.]+ M rec/s' $out/ceiling-$r.txt | head -1)" | tee -a $out/runs.txt
  if [ $((r % 2)) = 1 ]; then run A-$r $a; run B-$r $b; else run B-$r $b; run A-$r $a; fi
done
