#!/usr/bin/env bash
# Regenerate the Python code for shardkv.proto (needs grpcio-tools: pip install -e '.[test]').
# The proto is compiled with src/ as the include root, so the generated modules import each
# other as `shardkv.transport.proto.shardkv_pb2` (no bare, path-dependent imports).
set -euo pipefail
src="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$src"
python3 -m grpc_tools.protoc \
  -I . \
  --python_out=. \
  --pyi_out=. \
  --grpc_python_out=. \
  shardkv/transport/proto/shardkv.proto
echo "generated: $(ls shardkv/transport/proto/shardkv_pb2*.py*)"
