#!/bin/bash
# Per run of every point of a sweep bundle: p99.9 of the produce latency from the intended send
# time (the first histogram of run-N.txt), the broker's stalls (count, longest ms), the rate,
# CPU idle %, and the producer's batches per request.
# Usage: per-run.sh BUNDLE
for p in "$1"/points/*; do
  echo -n "$(basename "$p"): p99.9 ms"
  for f in "$p"/run-*.txt; do awk '/^ *[0-9.]+ +0\.[0-9]+ +[0-9]+/ && $2>=0.999 && !d {printf " %s", $1; d=1}' "$f"; done
  python3 - "$p/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["repeats"]
print(" | stalls", [(x["brokerStalls"]["stalls"], round(x["brokerStalls"].get("longestMs", 0), 1)) for x in r],
      "| M rec/s", [round(x["produced"]["recordsPerSecond"] / 1e6, 2) for x in r],
      "| idle %", [round(100 - x["hostCPU"]["busyPercent"], 1) for x in r],
      "| batches/request", [x["producerMetrics"].get("batches-per-request-avg", "1 (before)") for x in r])
PY
done
