#!/usr/bin/env bash
# Install ShardKV and start one server on its defaults (client port 7379, admin port 7381).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
exec shardkv server "$@"
