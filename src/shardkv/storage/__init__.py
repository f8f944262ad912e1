"""Storage engines behind the core's storage contract (``shardkv.core.engine``).

``RocksDBEngine`` is the product's engine; ``MemoryEngine`` has the same contract (including
what a crash loses) for tests and the simulator. ``tests/unit/test_storage_conformance.py``
runs one suite against both.
"""

from shardkv.storage.engine import Engine, StorageError
from shardkv.storage.memory import MemoryEngine
from shardkv.storage.rocksdb import RocksDBEngine

__all__ = ["Engine", "MemoryEngine", "RocksDBEngine", "StorageError", "open_engine"]


def open_engine(kind: str, path: str) -> Engine:
    """Open the engine named ``kind`` ("rocksdb" or "memory") at ``path``."""
    if kind == "rocksdb":
        return RocksDBEngine(path)
    if kind == "memory":
        return MemoryEngine()
    raise ValueError(f"unknown storage engine {kind!r}: expected 'rocksdb' or 'memory'")
