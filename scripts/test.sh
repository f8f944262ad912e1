#!/usr/bin/env bash
# Install what the tests need (redis-tools and redis-server with apt-get; ShardKV with its
# test extras into .venv), then run lint, types and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-tools redis-server >/dev/null
fi
source scripts/venv.sh test
python -m ruff check src tests bench
python -m mypy
python -m pytest -q -p no:cacheprovider --durations=25 "$@"
