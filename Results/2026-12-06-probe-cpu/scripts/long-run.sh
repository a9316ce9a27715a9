#!/bin/bash
# 75 s of maximum-rate produce (1 MiB batches, 2 producers, 4 partitions) on a fresh broker
# with every setting at its default; throughput every 5 s, and Cached / Dirty / Writeback /
# MemFree (MiB) every 5 s. Run after `sync; echo 3 > /proc/sys/vm/drop_caches`.
#   BIN=.build/release/apus scripts/long-run.sh /tmp/long-auto [more apus serve options]
OUT=$1; shift
BIN=${BIN:-.build/release/apus}
rm -rf $OUT; mkdir -p $OUT/data
$BIN serve --data-dir $OUT/data --listen 127.0.0.1:19092 --log-level info "$@" > $OUT/broker.log 2>&1 &
BPID=$!
sleep 2
( while true; do echo "$(date +%s) $(grep -E '^(Cached|Dirty|Writeback|MemFree):' /proc/meminfo | awk '{printf "%s %d ", $1, $2/1024}')"; sleep 5; done ) > $OUT/mem.txt &
MPID=$!
$BIN perf produce --bootstrap 127.0.0.1:19092 --topic pre --partitions 4 --duration 75 --producer-props batch.size=1048576 linger.ms=5 acks=1 --producers 2 --reporting-interval 5000 > $OUT/run.txt 2>&1
kill $MPID; kill -TERM $BPID; sleep 3; rm -rf $OUT/data
