#!/usr/bin/env bash
# Memory soak: a 3-node ShardKV cluster on 127.0.0.1 under a bounded mixed load
# (SET with and without EX, GET, INCR, APPEND, DEL, TTL; 10 clients; a fixed key space,
# so the data size is stable), each node's RSS sampled every 10 s into rss.csv, then a
# least-squares slope of RSS after the warm-up, in KiB/min per node. Acceptance: after
# warm-up, RSS stays flat.
#
# Usage: bench/soak.sh [--duration-s 600] [--warmup-s 120] [--sample-s 10] [--clients 10]
#                      [--keys 10000] [--rate-ops 2000] [--seed 1]
#                      [--max-slope-kib-per-min N] [--base-port P] [--out DIR] [--keep-data]
#   --base-port P   client ports P+1..P+3, peer P+101.., admin P+201.. (default: a free range)
#   --out DIR       default bench/results/soak-<timestamp>: rss.csv, node-N.log, env.txt
#   --max-slope-kib-per-min N   exit 3 if a node's slope exceeds N (default: report only)
# Re-fit a run: python3 bench/soak.py fit DIR/rss.csv --warmup-s 120
#
# Everything this script starts (the nodes, the load) is stopped by pid in its EXIT trap,
# SIGTERM first, SIGKILL after 15 s; the data directory is removed unless --keep-data.
# The load itself ends after --duration-s; `timeout` bounds it at --duration-s + 120 s.
#
# Reading the numbers. RocksDB's memtables (64 MiB per column family by default) fill
# before their first flush, so RSS may climb for minutes under writes without any leak;
# a slope is only meaningful over a run long enough for several flushes (the db_kib
# column shows when data reaches SST files). Check `uptime` first: other heavy work on
# the machine distorts the load, not the memory.
#
# tracemalloc: nodes trace allocations from the start (PYTHONTRACEMALLOC=1); at the end of
# the warm-up each takes a baseline (admin endpoint /v1/debug/tracemalloc/baseline); at the
# end the top growth sites since then are printed and saved as tracemalloc-<node>.json.
set -euo pipefail
# The project virtualenv (made by scripts/start.sh or scripts/test.sh) comes first.
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

DURATION_S=600
BASE_PORT=""
OUT=""
KEEP_DATA=0
LOAD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration-s) DURATION_S=$2; LOAD_ARGS+=("$1" "$2"); shift 2 ;;
    --warmup-s|--sample-s|--clients|--keys|--rate-ops|--seed|--max-slope-kib-per-min)
      LOAD_ARGS+=("$1" "$2"); shift 2 ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep-data) KEEP_DATA=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$ROOT/bench/results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

if [ -z "$BASE_PORT" ]; then
  # A base port whose nine ports (client, peer, admin for 3 nodes) are all free now.
  BASE_PORT=$(python3 - <<'EOF'
import random, socket
rng = random.Random()
for _ in range(200):
    base = rng.randrange(20000, 40000)
    try:
        for off in (1, 2, 3, 101, 102, 103, 201, 202, 203):
            with socket.socket() as s:
                s.bind(("127.0.0.1", base + off))
    except OSError:
        continue
    print(base)
    break
else:
    raise SystemExit("no free port range found")
EOF
)
fi

{
  echo "date: $(date -Is)"
  echo "nproc: $(nproc)"
  echo "uptime: $(uptime)"
  echo "python: $(python3 --version 2>&1)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "base port: $BASE_PORT"
  echo "duration_s: $DURATION_S; load args: ${LOAD_ARGS[*]:-(defaults)}"
} > "$OUT/env.txt"

DATA=$(mktemp -d /tmp/shardkv-soak.XXXXXX)
NODE_PIDS=()
LOAD_PID=""

# Wait for PIDS (children of this shell) to exit, SIGKILL any still alive after 15 s.
# Sets EXIT_CODES to their exit statuses, in order. Signals must be sent by the caller.
reap() {
  local pid code
  EXIT_CODES=()
  for pid in "$@"; do
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid did not stop within 15 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    code=0
    wait "$pid" 2>/dev/null || code=$?
    EXIT_CODES+=("$code")
  done
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [ -n "$LOAD_PID" ]; then
    kill -TERM "$LOAD_PID" 2>/dev/null || true  # it ends the load and prints its report
    reap "$LOAD_PID"
  fi
  if [ ${#NODE_PIDS[@]} -gt 0 ]; then
    for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    reap "${NODE_PIDS[@]}"
    echo "nodes stopped: exit codes [${EXIT_CODES[*]}]; logs in $OUT"
  fi
  if [ "$KEEP_DATA" = 1 ]; then echo "data kept in $DATA"; else rm -rf "$DATA"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MEMBERS="1=127.0.0.1:$((BASE_PORT + 101)),2=127.0.0.1:$((BASE_PORT + 102)),3=127.0.0.1:$((BASE_PORT + 103))"
NODE_ARGS=()
for i in 1 2 3; do
  # Allocation tracing (1 frame) from the start: its cost is part of the warm-up, so the
  # slope after it is not the tracer filling up; the baseline is taken after the warm-up.
  PYTHONTRACEMALLOC=1 python3 -m shardkv server --node-id "$i" --bind 127.0.0.1 \
    --port $((BASE_PORT + i)) --peer-port $((BASE_PORT + 100 + i)) \
    --admin-port $((BASE_PORT + 200 + i)) --data-dir "$DATA/node-$i" \
    --initial-cluster "$MEMBERS" --shards "${SHARDS:-1}" --log-format json --log-level warning \
    > "$OUT/node-$i.log" 2>&1 &
  NODE_PIDS+=("$!")
  NODE_ARGS+=(--node "$i:$((BASE_PORT + i)):$((BASE_PORT + 200 + i)):$!:$DATA/node-$i")
done
echo "nodes: pids ${NODE_PIDS[*]}, client ports $((BASE_PORT + 1))-$((BASE_PORT + 3)); out $OUT"

timeout -k 10 $((${DURATION_S%.*} + 120)) \
  python3 "$HERE/soak.py" run "${NODE_ARGS[@]}" --out "$OUT" "${LOAD_ARGS[@]}" &
LOAD_PID=$!
LOAD_RC=0
wait "$LOAD_PID" || LOAD_RC=$?
LOAD_PID=""
exit "$LOAD_RC"
