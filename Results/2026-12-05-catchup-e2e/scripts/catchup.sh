#!/bin/bash
# A page-cached backlog (30 M records of 100 bytes, 4 partitions) consumed from the start, 3 times.
bin=$1; out=$2; mkdir -p $out; data=/work/exp-cu; rm -rf $data; port=$((19400 + RANDOM % 200))
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker.log & bpid=$!; sleep 1.5
$bin perf produce --bootstrap 127.0.0.1:$port --topic backlog --num-records 30000000 --record-size 100 --throughput -1 --producers 2 \
  --producer-props acks=1 batch.size=1048576 linger.ms=5 > $out/produce.txt 2>&1
for r in 1 2 3; do
  $bin perf consume --bootstrap 127.0.0.1:$port --topic backlog --num-records 30000000 > $out/consume-$r.txt 2>&1
  echo "consume $r: $(grep -iE 'consumed in|GB/s' $out/consume-$r.txt | tail -1)"
done
kill -TERM $bpid; wait $bpid; rm -rf $data
