#!/usr/bin/env bash
# 3-node ShardKV against a 3-member etcd 3.4 (both fsyncing), in the same run, on 127.0.0.1:
#   - SET 100 B with redis-benchmark at 64 clients (RESP) vs etcd PUT with wrk at 64 connections
#   - linearizable GET (RESP) vs etcd linearizable range (wrk)
#   - the HTTP KV API with wrk (PUT and GET) beside etcd's JSON gateway, same scripts' shape
# Usage: bench/cluster.sh [OUTDIR] ; every load is bounded by `timeout` and runs under
# `flock /tmp/bench.lock`; only processes this script started are stopped.
set -euo pipefail
# The project virtualenv (made by scripts/start.sh or scripts/test.sh) comes first.
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
OUT=${1:-$ROOT/bench/results/cluster-$(date +%Y%m%d-%H%M%S)}
BASE=${BASE:-7378}
DURATION=${DURATION:-10s}
LOCK=${LOCK:-/tmp/bench.lock}
mkdir -p "$OUT"
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk; need etcd etcd-server; need etcdctl etcd-client; need redis-benchmark redis-tools

{ echo "date: $(date -Is)"; echo "nproc: $(nproc)"; etcd --version | head -1; } > "$OUT/env.txt"
DATA=$(mktemp -d /tmp/shardkv-cluster-bench.XXXXXX)
ETCD_DIR=$(mktemp -d /tmp/etcd-bench.XXXXXX)
CPID=""
cleanup() {
  if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then kill -INT "$CPID"; wait "$CPID" || true; fi
  "$SHARED/bench/etcd_cluster.sh" stop "$ETCD_DIR" >/dev/null 2>&1 || true
  rm -rf "$DATA" "$ETCD_DIR"
}
trap cleanup EXIT

locked() { flock -w 1800 "$LOCK" bash -c "$SHARED/bench/busy_snapshot.sh; $*"; }

# --- ShardKV -------------------------------------------------------------------------
python3 -m shardkv cluster up --nodes 3 --base-port "$BASE" --shards "${SHARDS:-1}" --data-dir "$DATA" > "$OUT/shardkv.log" 2>&1 &
CPID=$!
LEADER=""
for _ in $(seq 1 100); do
  for i in 1 2 3; do
    if curl -s "127.0.0.1:$((BASE + 200 + i))/v1/status" | grep -q '"role": "leader"'; then LEADER=$i; fi
  done
  [ -n "$LEADER" ] && break
  sleep 0.2
done
[ -n "$LEADER" ] || { echo "no ShardKV leader" >&2; exit 1; }
LPORT=$((BASE + LEADER)); LADMIN=$((BASE + 200 + LEADER))
echo "ShardKV leader: node $LEADER (client $LPORT, admin $LADMIN)" | tee "$OUT/shardkv_leader.txt"
locked "timeout 300 redis-benchmark -h 127.0.0.1 -p $LPORT -t set,get -n 100000 -c 64 -d 100 -r 100000 --csv" > "$OUT/shardkv_resp_c64.txt" 2>&1
locked "timeout 120 wrk -t2 -c64 -d$DURATION --latency -s $HERE/kv_put.lua http://127.0.0.1:$LADMIN -- S1" > "$OUT/shardkv_http_put.txt" 2>&1
locked "timeout 120 wrk -t2 -c64 -d$DURATION --latency -s $HERE/kv_get.lua http://127.0.0.1:$LADMIN -- S1 1000" > "$OUT/shardkv_http_get.txt" 2>&1
kill -INT "$CPID"; wait "$CPID" || true; CPID=""

# --- etcd ---------------------------------------------------------------------------
"$SHARED/bench/etcd_cluster.sh" start "$ETCD_DIR" > "$OUT/etcd_start.txt" 2>&1
EL=$("$SHARED/bench/etcd_cluster.sh" leader "$ETCD_DIR")
echo "etcd leader: $EL" | tee "$OUT/etcd_leader.txt"
locked "timeout 120 wrk -t2 -c64 -d$DURATION --latency -s $SHARED/bench/etcd_put.lua $EL -- E1" > "$OUT/etcd_put.txt" 2>&1
locked "timeout 120 wrk -t2 -c64 -d$DURATION --latency -s $SHARED/bench/etcd_range.lua $EL -- E1 1000" > "$OUT/etcd_range.txt" 2>&1

grep -h -E "^\"(SET|GET)\"" "$OUT/shardkv_resp_c64.txt" || true
for f in shardkv_http_put shardkv_http_get etcd_put etcd_range; do
  echo "$f: $(grep -E 'Requests/sec' "$OUT/$f.txt") p99 $(grep -E '^ +99%' "$OUT/$f.txt" | awk '{print $2}')"
done
