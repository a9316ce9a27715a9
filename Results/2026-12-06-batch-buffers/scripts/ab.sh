#!/bin/bash
# A/B of two apus builds at the maximum produce rate: 20 s of 1 MiB batches (acks=1, 4
# partitions, one producer connection) against a fresh POSIX broker with a 1 GiB page-cache
# budget (so that writes reuse warm pages and the broker's own work shows). Alternates the
# builds for ROUNDS rounds; per run it keeps the producer's summary and the broker's CPU time
# (utime + stime from /proc, in clock ticks of 10 ms) read just before it is stopped.
# usage: ab.sh A_BINARY B_BINARY OUT_DIR ROUNDS
set -u
A=$1; B=$2; OUT=$3; ROUNDS=${4:-4}
mkdir -p "$OUT"
run() {  # label binary round
    local D; D=$(mktemp -d /tmp/apus-ab.XXXXXX)
    "$2" serve --data-dir "$D/data" --listen 127.0.0.1:19094 --set metrics.listen=off --io-backend posix \
        --set page.cache.max.bytes=1073741824 > "$D/broker.log" 2>&1 &
    local BP=$!; sleep 1
    "$2" perf produce --bootstrap 127.0.0.1:19094 --topic ab --partitions 4 --duration 20 \
        --producer-props acks=1 batch.size=1048576 linger.ms=5 > "$D/produce.txt" 2>&1
    local ticks; ticks=$(awk '{print $14 + $15}' /proc/$BP/stat)
    kill -TERM $BP; wait $BP
    { echo "# $1 round $3"; grep "records sent" "$D/produce.txt" | tail -1; echo "broker cpu ticks: $ticks"; } > "$OUT/$1-$3.txt"
    rm -rf "$D"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then run a "$A" $r; run b "$B" $r; else run b "$B" $r; run a "$A" $r; fi
done
