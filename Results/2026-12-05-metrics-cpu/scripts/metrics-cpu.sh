#!/bin/bash
# Broker CPU per record with the metrics endpoint off, and on while scraped every second, at a
# fixed offered rate (so both variants do the same work): 1 M records/s, 100-byte records,
# 16 KiB batches (about 6,000 produce requests a second), acks=1, 4 partitions, 2 producer
# connections, 10 s after 1 s of warm-up, each run against a fresh apus serve after settling
# the page cache. Broker CPU = utime+stime from /proc/PID/stat over the run (start-up excluded).
# Per thread too (shards, the metrics thread). VARIANTS (default "off on"): off = endpoint off;
# on = endpoint on and curl scraping it every second; curl = endpoint off while curl runs the same
# loop against a closed port (the scraper's own load on this 2-CPU machine, without the endpoint).
# Rounds rotate the order.  Usage: metrics-cpu.sh BIN OUT  (ROUNDS=8)
set -u
bin=$1; out=$2; rounds=${ROUNDS:-8}; mkdir -p $out
hz=$(getconf CLK_TCK)
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
threads() { for t in /proc/$1/task/*; do echo "$(cat $t/comm):$(awk '{print $14 + $15}' $t/stat)"; done | sort | tr '\n' ' '; }
one() {
  variant=$1; r=$2; settle
  data=/work/exp-mcpu; rm -rf $data; port=$((19300 + RANDOM % 300)); mport=$((19700 + RANDOM % 200))
  if [ $variant = on ]; then m="metrics.listen=127.0.0.1:$mport"; else m="metrics.listen=off"; fi
  $bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set $m 2> $out/broker-$variant-$r.log & bpid=$!; sleep 1.5
  if [ $variant != off ]; then (while true; do curl -s -o /dev/null 127.0.0.1:$mport/metrics; sleep 1; done) & spid=$!; fi
  before=$(cpu $bpid); tbefore=$(threads $bpid)
  $bin perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput 1000000 --producers 2 \
    --producer-props acks=1 batch.size=16384 linger.ms=5 --json $out/$variant-$r.json > $out/$variant-$r.txt 2>&1
  after=$(cpu $bpid); tafter=$(threads $bpid)
  if [ $variant != off ]; then kill $spid; wait $spid 2>/dev/null; fi
  if [ $variant = on ]; then curl -s 127.0.0.1:$mport/metrics > $out/scrape-$r.txt; fi
  echo "$variant $r before: $tbefore" >> $out/threads.txt; echo "$variant $r after: $tafter" >> $out/threads.txt
  kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data
  records=$(python3 -c "import json; print(json.load(open('$out/$variant-$r.json'))['run']['produced']['records'])")
  echo "$variant $r ticks=$((after - before)) hz=$hz records=$records" | tee -a $out/cpu.txt
}
variants=(${VARIANTS:-off on})
n=${#variants[@]}
for r in $(seq 1 $rounds); do
  for k in $(seq 0 $((n - 1))); do one ${variants[$(( (k + r) % n ))]} $r; done
done
