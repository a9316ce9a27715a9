#!/bin/bash
# Produce throughput with the metrics endpoint off, and on while scraped every second; rounds
# alternate the order (ABBA). Max rate, 2 producer connections, 1 MiB batches, acks=1,
# 4 partitions, 10 s after 1 s warm-up, each run against a fresh apus serve after settling.
set -u
bin=$1; out=$2; rounds=${ROUNDS:-6}; mkdir -p $out
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
one() {
  variant=$1; r=$2; settle
  data=/work/exp-mc; rm -rf $data; port=$((19300 + RANDOM % 300)); mport=$((19700 + RANDOM % 200))
  if [ $variant = off ]; then m="metrics.listen=off"; else m="metrics.listen=127.0.0.1:$mport"; fi
  $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set $m 2> $out/broker-$variant-$r.log & bpid=$!; sleep 1.5
  if [ $variant = on ]; then (while true; do curl -s -o /dev/null 127.0.0.1:$mport/metrics; sleep 1; done) & spid=$!; fi
  $bin perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput -1 --producers 2 \
    --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/$variant-$r.json > $out/$variant-$r.txt 2>&1
  if [ $variant = on ]; then kill $spid; wait $spid 2>/dev/null; curl -s 127.0.0.1:$mport/metrics > $out/scrape-$r.txt; fi
  kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data
  echo "round $r $variant: $(grep -E 'records sent.*99.9th' $out/$variant-$r.txt | sed 's/.*records sent, //' | cut -c1-40)"
}
for r in $(seq 1 $rounds); do
  if [ $((r % 2)) = 1 ]; then one off $r; one on $r; else one on $r; one off $r; fi
done
