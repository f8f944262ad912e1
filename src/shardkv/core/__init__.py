"""The pure, deterministic core of ShardKV.

Nothing under ``shardkv.core`` may import asyncio, sockets, grpc, RocksDB, the wall clock,
the global ``random`` module, ``uuid4`` or ``os.urandom``, nor any other ``shardkv``
package. Time and randomness are passed in by the caller. ``tests/unit/test_layering.py``
enforces this by walking the imports.
"""
