#!/bin/bash
# A 60 M-record backlog (100-byte records, 4 partitions, about 6.6 GB) written at the maximum
# rate, then read from the start ROUNDS times with each consumer variant in turn (the
# consumer's default max.partition.fetch.bytes, 1 MiB): one or two fetches in flight, records
# walked on the receiving thread or on a thread of their own (receive.thread).
# The C pipeline ceiling (../shared/bench, append mode, 8 s) runs before the backlog and
# after the reads: the same-run yardstick.
# Usage: catchup-inflight.sh APUS CEILING OUT [ROUNDS]
bin=$1; ceiling=$2; out=$3; rounds=${4:-3}; mkdir -p $out; data=/work/exp-cu; rm -rf $data; port=$((19400 + RANDOM % 200))
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
mkdir -p $data; $ceiling 8 1048576 100 1 1 append $data/ceiling.log > $out/ceiling-before.txt 2>&1; rm -f $data/ceiling.log
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker.log & bpid=$!; sleep 1.5
$bin perf produce --bootstrap 127.0.0.1:$port --topic backlog --num-records 60000000 --record-size 100 --throughput -1 --producers 2 \
  --producer-props acks=1 batch.size=1048576 linger.ms=5 > $out/produce.txt 2>&1
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
for r in $(seq 1 $rounds); do
  for props in "receive.thread=false fetches.in.flight=1" "receive.thread=false fetches.in.flight=2" "receive.thread=true fetches.in.flight=1" "receive.thread=true fetches.in.flight=2"; do
    tag=$(echo $props | tr '= ' '--')
    $bin perf consume --bootstrap 127.0.0.1:$port --topic backlog --num-records 60000000 --consumer-props $props --json $out/consume-$r-$tag.json > $out/consume-$r-$tag.txt 2>&1
    echo "round $r $props: $(tail -1 $out/consume-$r-$tag.txt | grep -oE '[0-9.]+ GB/s|[0-9]+ fetches' | tr '\n' ' ')" | tee -a $out/runs.txt
  done
done
kill -TERM $bpid; wait $bpid; rm -rf $data
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
mkdir -p $data; $ceiling 8 1048576 100 1 1 append $data/ceiling.log > $out/ceiling-after.txt 2>&1; rm -rf $data
