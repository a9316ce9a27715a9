#!/bin/bash
# Usage: tail.sh <apus binary> <label> <out dir>
# 1) fresh broker (page-cache durability, 2 shards), 4 partitions
# 2) 16 s maximum-rate produce, 1 MiB batches, acks=1 (leaves ~2 GB dirty)
# 3) at once: an open-loop probe of 15 s at RATE records/s, 16 KiB batches, linger 1 ms, acks=1
# Records Dirty/Writeback before and after, the broker's stall statistics (new build) and log.
set -u
bin=$1; label=$2; out=$3; rate=${RATE:-800000}; EXTRA=""; [[ $label == new* ]] && EXTRA="--set loop.stall.stats.file=$out/$label-stalls.json"
mkdir -p $out; data=/work/exp-data-$label; rm -rf $data
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
port=$((19100 + RANDOM % 500))
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 $EXTRA 2> $out/$label-broker.log &
bpid=$!
sleep 2
$bin perf produce --bootstrap 127.0.0.1:$port --topic max --duration ${MAXDUR:-16} --record-size 100 --throughput -1 \
  --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/$label-max.json > $out/$label-max.txt 2>&1
grep -E '^(Dirty|Writeback):' /proc/meminfo | tr '\n' ' ' > $out/$label-meminfo-before-probe.txt
$bin perf produce --bootstrap 127.0.0.1:$port --topic probe --duration 15 --record-size 100 --throughput $rate \
  --producer-props acks=1 batch.size=16384 linger.ms=1 --json $out/$label-probe.json --hlog $out/$label-probe.hlog > $out/$label-probe.txt 2>&1
grep -E '^(Dirty|Writeback):' /proc/meminfo | tr '\n' ' ' > $out/$label-meminfo-after-probe.txt
sleep 1.2
kill -TERM $bpid; wait $bpid
rm -rf $data
tail -3 $out/$label-max.txt; tail -4 $out/$label-probe.txt
