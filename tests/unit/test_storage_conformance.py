"""One contract, two engines: every test here runs against RocksDB and the in-memory engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardkv.core.engine import DATA, EXPIRY, META, WriteBatch
from shardkv.storage import Engine, MemoryEngine, RocksDBEngine


@pytest.fixture(params=["rocksdb", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng: Engine = (
        RocksDBEngine(str(tmp_path / "db")) if request.param == "rocksdb" else MemoryEngine()
    )
    yield eng
    eng.close()


def batch(*ops: tuple[str, str, bytes, bytes | None]) -> WriteBatch:
    b = WriteBatch()
    for kind, column, key, value in ops:
        if kind == "put":
            assert value is not None
            b.put(column, key, value)
        else:
            b.delete(column, key)
    return b


def test_written_values_are_readable_and_later_ops_in_a_batch_win(engine: Engine) -> None:
    engine.write(
        batch(("put", DATA, b"k", b"1"), ("put", DATA, b"k", b"2"), ("put", META, b"k", b"m"))
    )
    assert engine.get(DATA, b"k") == b"2"
    assert engine.get(META, b"k") == b"m", "columns are independent keyspaces"
    assert engine.get(EXPIRY, b"k") is None
    engine.write(batch(("put", DATA, b"j", b"1"), ("del", DATA, b"k", None)))
    assert engine.get(DATA, b"k") is None
    assert engine.get(DATA, b"j") == b"1"


def test_scan_is_ordered_bytewise_with_exclusive_end_and_limit(engine: Engine) -> None:
    keys = [b"\x00\x01a", b"\x00\x01b", b"\x00\x02", b"\xff", b"a", b"ab"]
    b = WriteBatch()
    for k in reversed(keys):
        b.put(DATA, k, k.upper())
    engine.write(b)
    assert [k for k, _ in engine.scan(DATA, b"", None, 100)] == sorted(keys)
    assert engine.scan(DATA, b"\x00\x01", b"\x00\x02", 100) == [
        (b"\x00\x01a", b"\x00\x01A"),
        (b"\x00\x01b", b"\x00\x01B"),
    ]
    assert [k for k, _ in engine.scan(DATA, b"a", None, 1)] == [b"a"]
    with pytest.raises(ValueError):
        engine.scan(DATA, b"", None, 0)


def test_delete_range_removes_exactly_the_half_open_range(engine: Engine) -> None:
    b = WriteBatch()
    for i in range(10):
        b.put(DATA, bytes([i]), b"v")
    engine.write(b)
    d = WriteBatch()
    d.delete_range(DATA, bytes([3]), bytes([7]))
    engine.write(d)
    assert [k[0] for k, _ in engine.scan(DATA, b"", None, 100)] == [0, 1, 2, 7, 8, 9]


def test_memory_engine_crash_loses_exactly_the_unsynced_writes() -> None:
    eng = MemoryEngine()
    eng.write(batch(("put", DATA, b"synced", b"1")))
    eng.sync()
    eng.write(batch(("put", DATA, b"unsynced", b"1"), ("del", DATA, b"synced", None)))
    eng.crash()
    assert eng.get(DATA, b"synced") == b"1"
    assert eng.get(DATA, b"unsynced") is None


_WRITER = textwrap.dedent(
    """
    import os, sys
    from shardkv.core.engine import WriteBatch
    from shardkv.storage import RocksDBEngine
    eng = RocksDBEngine(sys.argv[1])
    for i in range(200):
        b = WriteBatch()
        b.put("data", b"key%03d" % i, b"value%03d" % i)
        eng.write(b)
        if i % 10 == 9:
            eng.sync()
            print(i, flush=True)  # an acknowledgement: everything up to i is durable
    os.kill(os.getpid(), 9)
    """
)


def test_rocksdb_keeps_every_synced_write_across_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, path], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    acked = [int(line) for line in proc.stdout.split()]
    assert acked[-1] == 199
    eng = RocksDBEngine(path)
    try:
        for i in range(acked[-1] + 1):
            assert eng.get(DATA, b"key%03d" % i) == b"value%03d" % i
    finally:
        eng.close()
