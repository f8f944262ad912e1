"""A range deleted with ``reclaim`` gives its space back soon: RocksDB keeps deleted records
until a compaction covers them, so the engine compacts such ranges in the background. A
range deleted without it (a snapshot install's clear) is left to RocksDB's own schedule."""

from __future__ import annotations

import time
from pathlib import Path

from shardkv.core.engine import SUB, DeleteRange, WriteBatch
from shardkv.storage import RocksDBEngine

RECORDS = 20_000
RECLAIM_WITHIN_S = 30.0


def filled(path: Path) -> RocksDBEngine:
    engine = RocksDBEngine(str(path))
    batch = WriteBatch()
    for i in range(RECORDS):
        batch.put(SUB, b"big:%08d" % i, b"v" * 100)
    engine.write(batch)
    return engine


def delete_all(engine: RocksDBEngine, *, reclaim: bool) -> None:
    batch = WriteBatch()
    batch.ops.append(DeleteRange(SUB, b"big:", b"big;", reclaim=reclaim))
    engine.write(batch)


def test_a_range_deleted_with_reclaim_frees_its_space_in_the_background(tmp_path: Path) -> None:
    engine = filled(tmp_path / "db")
    try:
        before = engine.column_bytes()[SUB]
        assert before >= RECORDS * 100
        delete_all(engine, reclaim=True)
        deadline = time.monotonic() + RECLAIM_WITHIN_S
        while engine.column_bytes()[SUB] > before // 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.column_bytes()[SUB] <= before // 10
        assert engine.get(SUB, b"big:00000001") is None
    finally:
        engine.close()


def test_a_range_deleted_without_reclaim_is_left_to_rocksdb(tmp_path: Path) -> None:
    engine = filled(tmp_path / "db")
    try:
        before = engine.column_bytes()[SUB]
        delete_all(engine, reclaim=False)
        time.sleep(1.0)  # what the background compaction needs above, and more
        assert engine.column_bytes()[SUB] >= before
        assert engine.get(SUB, b"big:00000001") is None
    finally:
        engine.close()
