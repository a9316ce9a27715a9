#!/bin/bash
# A/B of two apus builds on the long maximum-rate run: 45 s of 1 MiB batches (acks=1,
# 4 partitions, one producer) against a POSIX broker with 256 MiB segments and retention
# keeping 2 GiB per partition. Alternates the builds for ROUNDS rounds; per run it keeps the
# producer's summary and the broker's shutdown lines (shard turns, stalls by cause, declared
# disk-wait exceptions where the build counts them).
# usage: ab.sh OLD_BINARY NEW_BINARY OUT_DIR ROUNDS
set -u
OLD=$1; NEW=$2; OUT=$3; ROUNDS=${4:-3}
mkdir -p "$OUT"
run() {  # label binary round
    local D; D=$(mktemp -d /tmp/apus-ab.XXXXXX)
    "$2" serve --data-dir "$D/data" --listen 127.0.0.1:19092 --set metrics.listen=off --io-backend posix \
        --set retention.bytes=2147483648 --set segment.bytes=268435456 > "$D/broker.log" 2>&1 &
    local BP=$!; sleep 1
    "$2" perf produce --bootstrap 127.0.0.1:19092 --topic long --partitions 4 --duration 45 \
        --producer-props acks=1 batch.size=1048576 linger.ms=5 > "$D/produce.txt" 2>&1
    kill -TERM $BP; wait $BP
    { echo "# $1 round $3"; grep "records sent" "$D/produce.txt" | tail -1; grep -E "shard turns|disk-wait exceptions|shard stalled" "$D/broker.log" | grep -v "shard stalled" ; grep -c "cause=blocked" "$D/broker.log" | sed 's/^/blocked lines logged: /'; } > "$OUT/$1-$3.txt"
    grep "shard stalled" "$D/broker.log" > "$OUT/$1-$3-stalls.log"
    rm -rf "$D"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then run old "$OLD" $r; run new "$NEW" $r; else run new "$NEW" $r; run old "$OLD" $r; fi
done
