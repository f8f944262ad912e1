#!/usr/bin/env bash
# Install what the tests need, then run lint, types and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-tools redis-server >/dev/null
fi
python3 -m pip install -q -e '.[test]'
python3 -m ruff check src tests bench
python3 -m mypy
python3 -m pytest -q -p no:cacheprovider "$@"
