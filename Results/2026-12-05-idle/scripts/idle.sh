#!/bin/bash
# Usage: idle.sh <apus binary> <label> <out dir> <idle connections> <io.backend>
set -u
bin=$1; label=$2; out=$3; n=$4; backend=$5
mkdir -p $out; data=/work/exp-idle-$label; rm -rf $data
ulimit -n 65536
port=$((19700 + RANDOM % 200))
$bin serve --data-dir $data --listen 127.0.0.1:$port --io-backend $backend --set metrics.listen=off 2> $out/$label-broker.log &
bpid=$!
sleep 2
if [ $n -gt 0 ]; then
  python3 /tmp/exp/idle.py 127.0.0.1 $port $n > $out/$label-idle.txt 2>&1 &
  ipid=$!
  for i in $(seq 1 120); do grep -q "idle connections open" $out/$label-idle.txt && break; sleep 0.5; done
fi
$bin perf produce --bootstrap 127.0.0.1:$port --topic idle --duration 15 --warmup 2 --record-size 100 --throughput 5000 \
  --producer-props acks=all batch.size=16384 linger.ms=0 --json $out/$label.json > $out/$label.txt 2>&1
[ $n -gt 0 ] && kill $ipid
kill -TERM $bpid; wait $bpid 2>/dev/null
rm -rf $data
grep -E "p99" $out/$label.txt | tail -2
