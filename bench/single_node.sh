#!/usr/bin/env bash
# redis-benchmark against one ShardKV node and, in the same run, Debian's redis-server with
# AOF (appendfsync always, then everysec): SET and GET, 50 clients, 100-byte values,
# 100,000 random keys, -P 1 and -P 16. Everything on 127.0.0.1; every load bounded by
# `timeout`; every run under `flock /tmp/bench.lock` (through the shared anchor script).
#
# Usage: bench/single_node.sh [OUTDIR]      (default bench/results/single-<timestamp>)
# Then:  python bench/summarize.py OUTDIR   (table with ratios, for docs/benchmarks.md)
set -euo pipefail
# The project virtualenv (made by scripts/start.sh or scripts/test.sh) comes first.
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
OUT=${1:-$ROOT/bench/results/single-$(date +%Y%m%d-%H%M%S)}
PORT_SHARDKV=${PORT_SHARDKV:-7479}
ADMIN_SHARDKV=${ADMIN_SHARDKV:-7481}
mkdir -p "$OUT"
command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools redis-server; }

{ echo "date: $(date -Is)"; echo "nproc: $(nproc)"; redis-server --version; python3 --version; } > "$OUT/env.txt"

DATA=$(mktemp -d /tmp/shardkv-bench.XXXXXX)
SPID=""
cleanup() { if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then kill -TERM "$SPID"; wait "$SPID" || true; fi; rm -rf "$DATA"; }
trap cleanup EXIT

start_shardkv() {
  python3 -m shardkv server --port "$PORT_SHARDKV" --admin-port "$ADMIN_SHARDKV" \
    --data-dir "$DATA" --log-level warning > "$OUT/shardkv.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 200); do
    redis-cli -p "$PORT_SHARDKV" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "ShardKV did not start; see $OUT/shardkv.log" >&2; return 1
}

# ShardKV first, then the anchors, back to back.
start_shardkv
PORT=$PORT_SHARDKV "$SHARED/bench/redis_single.sh" measure "$OUT" shardkv_P1 -P 1
redis-cli -p "$PORT_SHARDKV" flushall > /dev/null
PORT=$PORT_SHARDKV "$SHARED/bench/redis_single.sh" measure "$OUT" shardkv_P16 -P 16
curl -s "127.0.0.1:$ADMIN_SHARDKV/metrics" | grep -E '^shardkv_storage_commit_(seconds|commands)_(sum|count)' > "$OUT/shardkv_commit_metrics.txt" || true
kill -TERM "$SPID"; wait "$SPID" || true; SPID=""

DATA_PARENT=/tmp "$SHARED/bench/redis_single.sh" run "$OUT"
python3 "$HERE/summarize.py" "$OUT"
