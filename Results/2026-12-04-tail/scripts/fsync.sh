#!/bin/bash
# Max-rate produce, acks=all, fsync-on-ack-all, POSIX backend, 4 partitions, 1 MiB batches, 10 s; alternating with the C ceiling.
bin=$1; label=$2; out=$3; data=/work/exp-fsync-$label; rm -rf $data; mkdir -p $out
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
port=$((19950 + RANDOM % 40))
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --durability fsync-on-ack-all --io-backend posix 2> $out/$label-broker.log &
bpid=$!; sleep 2
$bin perf produce --bootstrap 127.0.0.1:$port --topic f --duration 10 --warmup 1 --record-size 100 --throughput -1 \
  --producer-props acks=all batch.size=1048576 linger.ms=5 --json $out/$label.json > $out/$label.txt 2>&1
kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data
grep -E "99th" $out/$label.txt | sed 's/.*records sent, //'
