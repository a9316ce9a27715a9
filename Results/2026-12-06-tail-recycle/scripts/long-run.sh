#!/bin/bash
# 45 s of maximum-rate produce (1 MiB batches) against a broker with the default page-cache
# budget (auto: a third of memory), retention keeping ~8 GB on the disk; prints the 5 s lines.
# usage: long-run.sh path/to/apus
set -eu
B=$1; D=$(mktemp -d)
$B serve --data-dir $D --listen 127.0.0.1:19092 --io-backend posix --set retention.bytes=2147483648 --set segment.bytes=268435456 > $D.log 2>&1 &
BP=$!; sleep 1
$B perf produce --bootstrap 127.0.0.1:19092 --topic long --partitions 4 --duration 45 --producer-props acks=1 batch.size=1048576 linger.ms=5 | grep "records sent"
kill -TERM $BP; wait $BP || true
grep "shard turns" $D.log; rm -rf $D $D.log
