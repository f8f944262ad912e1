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


class Engine(ReadView, Protocol):
    def write(self, batch: WriteBatch) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...
