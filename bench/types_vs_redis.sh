#!/usr/bin/env bash
# Redis types through redis-benchmark, in one run: Redis 7 with AOF appendfsync always (the
# durable anchor) and then a 3-node ShardKV cluster (16 shards, every write replicated and
# fsynced), each loaded by `redis-benchmark -t hset,sadd,zadd,lpush,rpush,lpop,lrange_100`
# at 50 clients (`--cluster` for ShardKV). Prints both tables and the ratios.
# Usage: bench/types_vs_redis.sh [REQUESTS] ; loads bounded by `timeout`, run under
# `flock /tmp/bench.lock`; only the processes this script started are stopped.
set -euo pipefail
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
N=${1:-50000}
TESTS=hset,sadd,zadd,lpush,rpush,lpop,lrange_100
LOCK=${LOCK:-/tmp/bench.lock}
BASE=${BASE:-7578}
REDIS_DIR=$(mktemp -d /tmp/redis-types.XXXXXX)
DATA=$(mktemp -d /tmp/shardkv-types.XXXXXX)
OUT=$(mktemp -d /tmp/types-bench.XXXXXX)
CPID=""
cleanup() {
  if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then kill -INT "$CPID"; wait "$CPID" || true; fi
  PORT=6390 "$SHARED/bench/redis_single.sh" stop "$REDIS_DIR" >/dev/null 2>&1 || true
  rm -rf "$REDIS_DIR" "$DATA"
}
trap cleanup EXIT
echo "date: $(date -Is) nproc: $(nproc) requests: $N"

PORT=6390 "$SHARED/bench/redis_single.sh" start "$REDIS_DIR" always
flock -w 1800 "$LOCK" timeout 600 redis-benchmark -h 127.0.0.1 -p 6390 -t "$TESTS" -n "$N" -c 50 --csv > "$OUT/redis.csv"
PORT=6390 "$SHARED/bench/redis_single.sh" stop "$REDIS_DIR" >/dev/null 2>&1

python3 -m shardkv cluster up --nodes 3 --base-port "$BASE" --shards 16 --data-dir "$DATA" > "$OUT/shardkv.log" 2>&1 &
CPID=$!
for _ in $(seq 1 150); do
  [ "$(redis-cli -c -p $((BASE + 1)) set probe 1 2>/dev/null)" = OK ] && break
  sleep 0.2
done
sleep 5  # leaders spread after start; redis-benchmark --cluster wants every slot covered
flock -w 1800 "$LOCK" timeout 900 redis-benchmark --cluster -h 127.0.0.1 -p $((BASE + 1)) -t "$TESTS" -n "$N" -c 50 --csv > "$OUT/shardkv.csv"

python3 - "$OUT/redis.csv" "$OUT/shardkv.csv" <<'PY'
import csv, sys
def load(path):
    rows = {}
    for row in csv.reader(open(path)):
        if len(row) >= 7 and row[0] != "test":
            rows[row[0]] = (float(row[1]), float(row[6]))
    return rows
redis, ours = load(sys.argv[1]), load(sys.argv[2])
print(f"{'test':32} {'Redis rps':>10} {'p99 ms':>7} {'ShardKV rps':>12} {'p99 ms':>7} {'ratio':>6}")
for name, (rps, p99) in redis.items():
    mine = ours.get(name)
    if mine is None:
        print(f"{name:32} {rps:10.0f} {p99:7.2f} {'(missing)':>12}")
        continue
    print(f"{name:32} {rps:10.0f} {p99:7.2f} {mine[0]:12.0f} {mine[1]:7.2f} {mine[0] / rps:6.2f}")
PY
