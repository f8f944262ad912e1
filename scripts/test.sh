#!/usr/bin/env bash
# Install what the tests need (with apt-get: redis-tools and redis-server, the reference
# Redis; chromium, for the cluster page; prometheus, for promtool; ShardKV with its test
# extras into .venv), then run lint, types and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null \
    || ! command -v promtool >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    redis-tools redis-server chromium prometheus >/dev/null
fi
source scripts/venv.sh test
python -m ruff check src tests bench
python -m mypy
python -m pytest -q -p no:cacheprovider --durations=25 "$@"
