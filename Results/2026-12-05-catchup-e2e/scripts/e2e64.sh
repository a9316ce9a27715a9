#!/bin/bash
# apus perf e2e with 64 KiB batches, linger 0: at the maximum rate, then twice at half of it.
bin=$1; out=$2; mkdir -p $out
run() { data=/work/exp-e2e; rm -rf $data; port=$((19500 + RANDOM % 200)); sync
  $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off 2> $out/broker-$1.log & bpid=$!; sleep 1.5
  $bin perf e2e --bootstrap 127.0.0.1:$port --topic e --duration 10 --warmup 1 --record-size 100 --throughput $2 \
    --producer-props acks=1 batch.size=65536 linger.ms=0 > $out/e2e-$1.txt 2>&1
  kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data; grep -E "e2e latency" $out/e2e-$1.txt | tail -1; }
echo "max: $(run max -1)"
rate=$(grep -oE '[0-9.]+ records/sec produced' $out/e2e-max.txt | tail -1 | cut -d' ' -f1)
half=$(python3 -c "print(int(float('$rate')/2))")
echo "half ($half): $(run half1 $half)"
echo "half ($half): $(run half2 $half)"
