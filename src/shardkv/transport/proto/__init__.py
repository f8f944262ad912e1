"""Generated protobuf and gRPC code for shardkv.proto (regenerate with generate.sh)."""
