#!/bin/bash
# Max-rate produce, old (session start d588085) vs new (12ea017), alternating; metrics off.
out=$1; rounds=$2; mkdir -p $out
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
one() {
  v=$1; r=$2; settle; data=/work/exp-ab; rm -rf $data; port=$((19300 + RANDOM % 300))
  /tmp/apus-$v serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker-$v-$r.log & bpid=$!; sleep 1.5
  /tmp/apus-new perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput -1 --producers 2 \
    --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/$v-$r.json > $out/$v-$r.txt 2>&1
  kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data
  echo "round $r $v: $(python3 -c "import json;print(round(json.load(open('$out/$v-$r.json'))['run']['produced']['recordsPerSecond']/1e6,2))") M/s"
}
for r in $(seq ${START:-1} $rounds); do
  if [ $((r % 2)) = 1 ]; then one old $r; one new $r; else one new $r; one old $r; fi
done
