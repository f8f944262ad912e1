"""The engine contract: what every storage engine promises the node runtime.

Order of calls the caller must follow:

1. ``write(batch)`` applies a :class:`~shardkv.core.engine.WriteBatch` atomically. Its effects
   are visible to ``get``/``scan`` at once but are NOT durable yet.
2. ``sync()`` makes every write that returned before the call durable (it survives a process
   kill or a power loss). It blocks on the disk: call it from a worker thread, never on the
   event loop. At most one ``sync()`` may run at a time; ``write`` may run concurrently with it
   on another thread (the write is then covered by a later ``sync``).
3. A client may be told a write happened only after a ``sync()`` that started after the
   write returned has completed. Nothing read from a write may be shown to a client earlier
   either (see ``shardkv.server.committer``).
4. ``close()`` syncs and releases the files. No call may follow it.

Errors: every I/O failure raises :class:`StorageError`. After a failed ``write`` or ``sync`` the
engine's durable state is unknown; the caller must stop serving (fail-stop) rather than
retry, as a retried fsync can report success for data the kernel already dropped.
"""

from __future__ import annotations

from typing import Protocol

from shardkv.core.engine import ReadView, WriteBatch


class StorageError(Exception):
    """The storage engine failed; the node must stop serving writes."""


class ConsistentView(ReadView, Protocol):
    """A read-only, point-in-time image of every column, taken by
    ``Engine.consistent_view()``: writes made after it was taken are invisible to it, and
    all columns are read at the same instant (no batch is seen half-applied across
    columns). Used to build snapshots and backups while the node keeps writing.

    It may be read from any one thread at a time. The caller must ``close()`` it (it pins
    old data in the engine) and must close it before closing the engine."""

    def close(self) -> None: ...


class Engine(ReadView, Protocol):
    def write(self, batch: WriteBatch) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...

    def consistent_view(self) -> ConsistentView:
        """A `ConsistentView` of what has been written so far (synced or not). Cheap in
        RocksDB, a full copy in the in-memory engine. Best called on the thread that
        writes; RocksDB raises `StorageError` if concurrent writes keep it from capturing
        every column at one instant."""
        ...
