"""The RocksDB engine (rocksdict): one database per node, one column family per column.

Durability: ``write`` goes to the memtable and the write-ahead log in the OS page cache
(``sync=False``, so it is fast and can run on the event loop); ``sync`` calls RocksDB's
``FlushWAL(sync=true)``, which fsyncs the WAL. rocksdict releases the GIL during that call
(measured: the event loop keeps running during a 14 ms sync), so one sync in a worker
thread covers every write of every client made before it: group commit. A synced write with
``WriteOptions.sync`` would hold the GIL for the whole fsync and stall the loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
from typing import Any

import rocksdict

from shardkv.core.engine import ALL_COLUMNS, Delete, DeleteRange, Put, WriteBatch
from shardkv.node import crashpoints
from shardkv.storage.engine import StorageError

MAX_CONSISTENT_VIEW_ATTEMPTS = 16
"""Captures `RocksDBEngine.consistent_view` tries before giving up while writes keep landing
between its per-column captures (never more than one when called on the writing thread)."""


#: Memory all memtables of the database may use together, across column families. Without a
#: budget each column family may hold up to several 64 MiB buffers, so RSS climbs for
#: minutes under writes before it levels off (seen in the soak run).
WRITE_BUFFER_BUDGET_BYTES = 64 * 1024 * 1024
#: One LRU cache per database for data blocks AND the index and filter blocks of every SST
#: file, with the memtables charged to it too: RocksDB's native memory stays under this
#: bound. (Left outside a cache, index and filter blocks grow with the data on disk: the
#: 10-minute soak showed RSS climbing ~5 MiB/min while the Python heap stayed flat.)
BLOCK_CACHE_BYTES = 128 * 1024 * 1024
#: Range deletions of members (a big hash, set, sorted set or list deleted or expired)
#: waiting for the background compaction that reclaims their space; past this many, the
#: waiting ranges are merged into one that covers them all.
MAX_PENDING_COMPACTIONS = 64


def _options(
    cache: rocksdict.Cache, write_buffers: rocksdict.WriteBufferManager
) -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # Reads are point lookups and short ordered scans; a bloom filter saves disk reads.
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    opts.set_keep_log_file_num(4)
    opts.set_write_buffer_manager(write_buffers)
    opts.set_write_buffer_size(WRITE_BUFFER_BUDGET_BYTES // 4)
    return opts


def _scan(it: Any, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` pairs from ``start`` (inclusive) to ``end`` (exclusive) of a
    rocksdict iterator, which is left positioned wherever the scan stopped."""
    if limit <= 0:
        raise ValueError("scan limit must be positive")
    it.seek(start)
    out: list[tuple[bytes, bytes]] = []
    while it.valid():
        key = it.key()
        if end is not None and key >= end:
            break
        out.append((key, it.value()))
        if len(out) >= limit:
            break
        it.next()
    return out


class RocksDBEngine:
    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        cache = rocksdict.Cache(BLOCK_CACHE_BYTES)
        write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            WRITE_BUFFER_BUDGET_BYTES, False, cache
        )
        opts = _options(cache, write_buffers)
        try:
            self._db = rocksdict.Rdict(
                path,
                options=opts,
                column_families={c: _options(cache, write_buffers) for c in ALL_COLUMNS},
            )
        except Exception as exc:  # rocksdict raises plain Exception subclasses
            raise StorageError(f"cannot open RocksDB at {path}: {exc}") from exc
        self._cfs: dict[str, Any] = {c: self._db.get_column_family(c) for c in ALL_COLUMNS}
        self._handles: dict[str, Any] = {
            c: self._db.get_column_family_handle(c) for c in ALL_COLUMNS
        }
        self._write_opts = rocksdict.WriteOptions()
        self._write_opts.sync = False
        self._sync_lock = threading.Lock()
        self._closed = False
        self._compactions = _Compactor(weakref.ref(self))

    def get(self, column: str, key: bytes) -> bytes | None:
        value: bytes | None = self._cfs[column].get(key)
        return value

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        return _scan(self._cfs[column].iter(), start, end, limit)

    def write(self, batch: WriteBatch) -> None:
        if self._closed:
            raise StorageError("engine is closed")
        wb = rocksdict.WriteBatch(raw_mode=True)
        handles = self._handles
        for op in batch.ops:
            if isinstance(op, Put):
                wb.put(op.key, op.value, handles[op.column])
            elif isinstance(op, Delete):
                wb.delete(op.key, handles[op.column])
            elif isinstance(op, DeleteRange):
                wb.delete_range(op.start, op.end, handles[op.column])
                if op.reclaim:
                    self._compactions.request(op.column, op.start, op.end)
        try:
            self._db.write(wb, self._write_opts)
        except Exception as exc:
            raise StorageError(f"RocksDB write failed: {exc}") from exc

    def sync(self) -> None:
        with self._sync_lock:
            if self._closed:
                raise StorageError("engine is closed")
            try:
                if crashpoints.sync_fails():
                    raise OSError(errno.EIO, "injected fsync failure (SHARDKV_FAIL_SYNC)")
                self._db.flush_wal(True)
            except Exception as exc:
                raise StorageError(f"RocksDB WAL sync failed: {exc}") from exc

    def column_bytes(self) -> dict[str, int]:
        """Bytes each column holds now: its SST files plus its memtables (RocksDB's own
        counts; space freed by compactions shows here, not in the WAL or the data dir)."""
        out: dict[str, int] = {}
        for name, column in self._cfs.items():
            sst = column.property_int_value("rocksdb.total-sst-files-size") or 0
            memtables = column.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
            out[name] = int(sst) + int(memtables)
        return out

    def consistent_view(self) -> RocksDBView:
        """A point-in-time view of every column (see ``ConsistentView``).

        rocksdict 0.3's ``Snapshot.iter()`` ignores its snapshot (it builds the iterator
        from fresh read options), so the view holds one iterator per column instead: a
        RocksDB iterator reads at the sequence number it was created at, for its whole
        life. The iterators are created between two reads of the latest sequence number;
        if a write landed in between, they are thrown away and taken again."""
        if self._closed:
            raise StorageError("engine is closed")
        for _ in range(MAX_CONSISTENT_VIEW_ATTEMPTS):
            before = self._db.latest_sequence_number()
            iters = {c: self._cfs[c].iter() for c in ALL_COLUMNS}
            if self._db.latest_sequence_number() == before:
                return RocksDBView(self, iters)
            del iters
        raise StorageError(
            f"no consistent view after {MAX_CONSISTENT_VIEW_ATTEMPTS} attempts: "
            "writes keep landing (take the view on the writing thread)"
        )

    def close(self) -> None:
        self._compactions.stop()
        with self._sync_lock:
            if self._closed:
                return
            try:
                self._db.flush_wal(True)
            finally:
                self._closed = True
                # Column family objects keep the database (and its LOCK file) open.
                self._cfs.clear()
                self._handles.clear()
                self._db.close()


class _Compactor:
    """Reclaims the space of ranges deleted with ``reclaim`` (a big key's members) in the
    background: a range deletion
    answers at once (one tombstone), and RocksDB frees the records it covers only when
    it compacts them, which nothing may trigger soon. One daemon thread compacts each
    requested range (``compact_range`` releases the GIL, so the event loop keeps
    running). At most `MAX_PENDING_COMPACTIONS` ranges wait; then they are merged into
    one covering range per column. It holds the engine only weakly: an engine dropped without
    ``close`` (a simulated crash) still releases its database."""

    def __init__(self, engine: weakref.ref[RocksDBEngine]) -> None:
        self._engine = engine
        self._pending: list[tuple[str, bytes, bytes]] = []
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def request(self, column: str, start: bytes, end: bytes) -> None:
        with self._wake:
            if self._stopped:
                return
            self._pending.append((column, start, end))
            if len(self._pending) > MAX_PENDING_COMPACTIONS:
                covering: dict[str, tuple[bytes, bytes]] = {}
                for name, low, high in self._pending:
                    have = covering.get(name)
                    covering[name] = (
                        (low, high) if have is None else (min(have[0], low), max(have[1], high))
                    )
                self._pending = [(name, low, high) for name, (low, high) in covering.items()]
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rocksdb-compactor", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopped:
                    if not self._wake.wait(timeout=1.0) and self._engine() is None:
                        return
                if self._stopped:
                    return
                name, start, end = self._pending.pop(0)
            engine = self._engine()
            if engine is None:
                return
            column = engine._cfs.get(name)
            del engine
            if column is None:
                return
            with contextlib.suppress(Exception):  # a failure only delays reclaiming space
                column.compact_range(start, end)
            del column

    def stop(self) -> None:
        """Stop after the compaction in progress (the database closes next)."""
        with self._wake:
            self._stopped = True
            self._pending.clear()
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)


class RocksDBView:
    """`ConsistentView` over one iterator per column (each pinned at the same sequence
    number). Point reads seek the iterator, so a ``get`` costs a seek, not a lookup."""

    __slots__ = ("_engine", "_iters")

    def __init__(self, engine: RocksDBEngine, iters: dict[str, Any]) -> None:
        self._engine = engine
        self._iters: dict[str, Any] | None = iters

    def _iter(self, column: str) -> Any:
        if self._iters is None:
            raise StorageError("consistent view is closed")
        if self._engine._closed:
            raise StorageError("engine is closed")
        return self._iters[column]

    def get(self, column: str, key: bytes) -> bytes | None:
        it = self._iter(column)
        it.seek(key)
        if it.valid() and it.key() == key:
            value: bytes = it.value()
            return value
        return None

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        return _scan(self._iter(column), start, end, limit)

    def close(self) -> None:
        """Release the iterators (and the old data they pin). Idempotent."""
        self._iters = None
