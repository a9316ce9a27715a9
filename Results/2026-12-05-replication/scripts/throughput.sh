#!/usr/bin/env bash
# RF=3 acks=all vs RF=1 acks=all on one three-broker cluster, alternating, plus the C pipeline
# ceiling (append mode) in the same run. Both topics: 4 partitions led by broker 1 (manual
# assignment), so the lab's one-broker producer reaches every leader; RF=3 has followers 2 and 3
# and min.insync.replicas=2. Each round makes its own topics and deletes them afterwards (three
# copies fill a disk fast). Usage: throughput.sh OUT ROUNDS
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cluster.sh"
OUT=${1:?out dir}; ROUNDS=${2:-3}; SECONDS_RUN=${SECONDS_RUN:-8}
mkdir -p "$OUT"
CEILING=${CEILING:-/tmp/ceiling/pipeline_ceiling}
trap stop_cluster EXIT
start_cluster
topics() {  # create | delete, the round's topics rf1-R and rf3-R
  python3 - "$1" "$2" "${PORT[1]}" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
action, r, port = sys.argv[1], sys.argv[2], sys.argv[3]
a = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
if action == "create":
    fs = a.create_topics([NewTopic(f"rf1-{r}", num_partitions=4, replica_assignment=[[1]] * 4),
                          NewTopic(f"rf3-{r}", num_partitions=4, replica_assignment=[[1, 2, 3]] * 4, config={"min.insync.replicas": "2"})])
else:
    fs = a.delete_topics([f"rf1-{r}", f"rf3-{r}"])
for f in fs.values(): f.result(timeout=30)
time.sleep(2)
PY
}
for r in $(seq "$ROUNDS"); do
  topics create "$r"
  "$CEILING" 8 1048576 100 1 1 append "$WORK/ceiling.log" > "$OUT/ceiling-$r.txt"; rm -f "$WORK/ceiling.log"
  order="rf1 rf3"; [ $((r % 2)) -eq 0 ] && order="rf3 rf1"  # alternate which goes first
  for t in $order; do
    "$APUS" perf produce --bootstrap "127.0.0.1:${PORT[1]}" --topic "$t-$r" --duration "$SECONDS_RUN" --warmup 2 --record-size 100 \
      --producer-props acks=-1 batch.size=1048576 linger.ms=5 --producers 2 --json "$OUT/$t-$r.json" > "$OUT/$t-$r.txt"
  done
  [ "$r" -eq "$ROUNDS" ] && "$APUS" cluster status --etcd "etcd://127.0.0.1:$ETCD_PORT" > "$OUT/cluster-status.txt"
  topics delete "$r"  # the data of a round (up to ~25 GB with three copies) goes before the next
done
