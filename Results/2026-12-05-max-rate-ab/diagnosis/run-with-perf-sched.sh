#!/bin/bash
bin=${BIN:-/work/main/.build/release/apus}; out=/tmp/t1/$1; shift; mkdir -p $out
settle() { sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done; }
settle
data=/work/exp-t1; rm -rf $data; port=19411
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set metrics.listen=off "$@" 2> $out/broker.log & bpid=$!; sleep 1.5
( while kill -0 $bpid 2>/dev/null; do echo "$(date +%s.%N) $(awk '/^(Dirty|Writeback):/{printf "%s ", $2}' /proc/meminfo) $(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)"; sleep 0.5; done ) > $out/mem.txt &
if [ -n "$PERFSCHED" ]; then perf sched record -g -a -o $out/sched.data -- sleep 11 >/dev/null 2>&1 & fi
$bin perf produce --bootstrap 127.0.0.1:$port --topic p --duration 10 --warmup 1 --record-size 100 --throughput -1 \
    --producers ${PRODUCERS:-2} --producer-props acks=1 batch.size=1048576 linger.ms=5 --json $out/produce.json > $out/produce.txt 2>&1
sleep 0.5
kill -TERM $bpid; wait $bpid; rm -rf $data
tail -3 $out/produce.txt; grep -iE "stall" $out/broker.log | tail -5
