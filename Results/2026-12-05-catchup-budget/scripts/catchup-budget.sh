#!/bin/bash
# ../2026-12-05-catchup-e2e/scripts/catchup-fetch-size.sh with the broker's page.cache.max.bytes
# given: a 60 M-record backlog (about 6.6 GB on disk) written, then read three times with the
# consumer's default fetch size (1 MiB per partition) and with 8 MiB, alternating.
# Usage: catchup-budget.sh APUS OUT BUDGET   (BUDGET: auto, 0, or bytes)
bin=$1; out=$2; budget=$3; mkdir -p $out; data=/work/exp-cu; rm -rf $data; port=$((19400 + RANDOM % 200))
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off --set page.cache.max.bytes=$budget 2> $out/broker.log & bpid=$!; sleep 1.5
$bin perf produce --bootstrap 127.0.0.1:$port --topic backlog --num-records 60000000 --record-size 100 --throughput -1 --producers 2 \
  --producer-props acks=1 batch.size=1048576 linger.ms=5 > $out/produce.txt 2>&1
for r in 1 2 3; do
  for props in "max.partition.fetch.bytes=1048576" "max.partition.fetch.bytes=8388608 fetch.max.bytes=52428800"; do
    tag=$(echo $props | cut -d= -f2 | cut -d' ' -f1)
    $bin perf consume --bootstrap 127.0.0.1:$port --topic backlog --num-records 60000000 --consumer-props $props > $out/consume-$r-$tag.txt 2>&1
    echo "budget $budget round $r partition fetch $tag: $(grep -oE 'consumed in [0-9.]+ s|[0-9.]+ GB/s' $out/consume-$r-$tag.txt | tr '\n' ' ')" | tee -a $out/../runs.txt
  done
done
kill -TERM $bpid; wait $bpid; rm -rf $data
