#!/bin/bash
# Same-run ratios against the C pipeline ceiling (append mode), alternating, ROUNDS rounds (3),
# PRODUCERS producer connections (1), BROKER_ARGS added to apus serve's arguments:
# ceiling 8 s; apus perf produce 10 s max rate (1 MiB batches, acks=1, 4 partitions);
# apus perf e2e 10 s max rate (same); each against a fresh apus serve (default config).
set -u
bin=$1; out=$2; rounds=${ROUNDS:-3}; producers=${PRODUCERS:-1}; broker_args=${BROKER_ARGS:-}; mkdir -p $out
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
idle() { awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
start() { data=/work/exp-ratio-data; rm -rf $data; port=$((19300 + RANDOM % 300)); $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 $broker_args 2> $out/broker-$1.log & bpid=$!; sleep 1.5; }
stop() { kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf /work/exp-ratio-data; }
for r in $(seq 1 $rounds); do
  settle
  /tmp/ceiling/pipeline_ceiling 8 1048576 100 1 1 append /work/ceiling.log > $out/ceiling-$r.txt 2>&1; rm -f /work/ceiling.log
  echo "round $r ceiling: $(grep -iE 'records/s|rec/s' $out/ceiling-$r.txt | head -1)"
  settle; start produce-$r
  a=($(idle))
  $bin perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput -1 \
    --producers $producers --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/produce-$r.json > $out/produce-$r.txt 2>&1
  b=($(idle)); stop
  echo "round $r produce: $(grep -E 'records sent.*99.9th' $out/produce-$r.txt | sed 's/.*records sent, //') idle% $(echo "scale=1; 100*(${b[0]}-${a[0]})/(${b[1]}-${a[1]})" | bc)"
  settle; start e2e-$r
  $bin perf e2e --bootstrap 127.0.0.1:$port --topic e --duration 10 --warmup 1 --record-size 100 --throughput -1 \
    --producers $producers --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/e2e-$r.json > $out/e2e-$r.txt 2>&1
  stop
  echo "round $r e2e: $(grep -iE 'consumed|e2e' $out/e2e-$r.txt | tail -2 | tr '\n' ' ')"
done
