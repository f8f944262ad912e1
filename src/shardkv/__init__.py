"""ShardKV: a sharded, Raft-replicated, durable key-value store that speaks RESP."""

__version__ = "0.1.0"
