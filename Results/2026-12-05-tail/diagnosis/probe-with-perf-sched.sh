#!/bin/bash
set -u
bin=$1; out=$2; rate=${RATE:-800000}
mkdir -p $out; data=/work/exp-data-diag; rm -rf $data
sync; while [ $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo) -gt 65536 ]; do sleep 0.2; done
port=$((19100 + RANDOM % 500))
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --set loop.stall.stats.file=$out/stalls.json 2> $out/broker.log &
bpid=$!
sleep 2
$bin perf produce --bootstrap 127.0.0.1:$port --topic max --duration ${MAXDUR:-16} --record-size 100 --throughput -1 \
  --producer-props acks=1 batch.size=1048576 linger.ms=5 > $out/max.txt 2>&1
grep -E '^(Dirty|Writeback):' /proc/meminfo | tr '\n' ' ' > $out/meminfo-before.txt
ls /proc/$bpid/task | while read t; do echo "$t $(cat /proc/$bpid/task/$t/comm)"; done > $out/threads.txt
perf record -q -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_stat_runtime -a -g -o $out/perf.data -- sleep 15 > /dev/null 2>&1 &
ppid=$!
$bin perf produce --bootstrap 127.0.0.1:$port --topic probe --duration 15 --record-size 100 --throughput $rate \
  --producer-props acks=1 batch.size=16384 linger.ms=1 --hlog $out/probe.hlog > $out/probe.txt 2>&1
wait $ppid
grep -E '^(Dirty|Writeback):' /proc/meminfo | tr '\n' ' ' > $out/meminfo-after.txt
sleep 1.2
kill -TERM $bpid; wait $bpid
rm -rf $data
tail -3 $out/max.txt; tail -4 $out/probe.txt; cat $out/meminfo-before.txt; echo
