#!/usr/bin/env bash
# Starts etcd and three `apus serve` brokers on loopback (cluster.metadata), all sharing this
# machine's CPUs. Sourced by the other scripts: defines start_cluster, stop_cluster, kill_broker.
# Needs etcd (Debian's etcd-server) and a release build of apus ($APUS).
APUS=${APUS:-$(git rev-parse --show-toplevel)/.build/release/apus}
WORK=${WORK:-$(mktemp -d /tmp/apus-repl-XXXX)}
ETCD_PORT=${ETCD_PORT:-23790}
declare -A PORT=([1]=19091 [2]=19092 [3]=19093)
declare -A PID

start_etcd() {
  etcd --name r --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-cluster "r=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --log-level error > "$WORK/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT endpoint health >/dev/null 2>&1 && return; sleep 0.1; done
  echo "etcd did not start" >&2; exit 1
}

start_broker() {  # node id
  local n=$1 before
  before=$(grep -c "\] listening" "$WORK/b$n.log" 2>/dev/null || true)
  "$APUS" serve --data-dir "$WORK/b$n" --listen "127.0.0.1:${PORT[$n]}" --set "cluster.metadata=etcd://127.0.0.1:$ETCD_PORT" \
    --set "node.id=$n" --set "replica.lag.time.max.ms=${LAG_MS:-10000}" --set "metrics.listen=127.0.0.1:$((PORT[$n] + 100))" \
    ${BROKER_ARGS:-} >> "$WORK/b$n.log" 2>&1 &
  PID[$n]=$!
  # A restart after a SIGKILL first waits out its previous registration's lease (6 s).
  for _ in $(seq 400); do [ "$(grep -c "\] listening" "$WORK/b$n.log" 2>/dev/null || true)" -gt "${before:-0}" ] && return; sleep 0.05; done
  echo "broker $n did not start" >&2; tail "$WORK/b$n.log" >&2; exit 1
}

start_cluster() {
  mkdir -p "$WORK"
  start_etcd
  for n in 1 2 3; do start_broker "$n"; done
  sleep 1.5  # every broker sees the other two
}

kill_broker() { kill -"${SIGNAL:-KILL}" "${PID[$1]}"; wait "${PID[$1]}" 2>/dev/null || true; }

stop_cluster() {
  for n in 1 2 3; do [ -n "${PID[$n]:-}" ] && kill -TERM "${PID[$n]}" 2>/dev/null || true; done
  for n in 1 2 3; do [ -n "${PID[$n]:-}" ] && wait "${PID[$n]}" 2>/dev/null || true; done
  [ -n "${ETCD_PID:-}" ] && { kill "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
