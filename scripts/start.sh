#!/usr/bin/env bash
# Install ShardKV into .venv (and redis-tools, for the README's redis-cli examples, when
# missing) and start one server on its defaults: client port 7379, admin port 7381.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
  else
    echo "note: redis-cli not found; install redis-tools to run the README's examples" >&2
  fi
fi
source scripts/venv.sh
exec shardkv server "$@"
