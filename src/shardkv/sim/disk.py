"""A simulated durable store for one node: what survives a crash and what does not.

Owns two images of one Raft group's log: ``live`` (every write so far, what the running
node reads, like a file system's page cache) and the durable image (only writes covered by
a completed `SimDisk.sync`). Writes are queued in order between the two, grouped in atomic
batches (one per `Ready`, like one RocksDB WriteBatch: its snapshot, entries and hard
state land together or not at all). A crash keeps the durable image plus, when
``torn_writes`` is on, a random *prefix* of the unsynced batches (a write-ahead log loses a
suffix, never a hole), and discards the rest.

It never reads a clock or global randomness (the crash takes the simulator's
``random.Random``), and it never decides *when* to sync: the node runtime does, following
the `Ready` contract (persist, sync, only then send ``messages_after_persist``).

Recovery goes through the same path a real node uses: `SimDisk.recover` rebuilds a
`MemoryStorage` from the durable image with the public write API, and the node constructs
a fresh `RawNode` from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from shardkv.core.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Ready,
    Snapshot,
    SnapshotMetadata,
)
from shardkv.core.raft.types import NO_LIMIT

MAX_PENDING_BATCHES: Final = 100_000
"""Bound on unsynced batches queued on one disk; a runtime that never syncs is a bug."""


@dataclass(frozen=True, slots=True)
class _WriteSnapshot:
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class _WriteEntries:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class _WriteHardState:
    hard_state: HardState


@dataclass(frozen=True, slots=True)
class _CreateSnapshot:
    index: int
    conf_state: ConfState
    data: bytes


@dataclass(frozen=True, slots=True)
class _Compact:
    index: int


_Write = _WriteSnapshot | _WriteEntries | _WriteHardState | _CreateSnapshot | _Compact


def _apply(storage: MemoryStorage, write: _Write) -> None:
    if isinstance(write, _WriteEntries):
        storage.append(write.entries)
    elif isinstance(write, _WriteHardState):
        storage.set_hard_state(write.hard_state)
    elif isinstance(write, _WriteSnapshot):
        storage.apply_snapshot(write.snapshot)
    elif isinstance(write, _CreateSnapshot):
        storage.create_snapshot(write.index, write.conf_state, write.data)
    else:
        storage.compact(write.index)


def clone_storage(source: MemoryStorage) -> MemoryStorage:
    """A new `MemoryStorage` holding the same snapshot, entries and hard state, built only
    with the public API (entries are immutable, so they are shared).

    Compaction may stop below the snapshot (entries kept for slow followers), so the log
    is rebuilt from the compaction point and the snapshot recorded on top of it."""
    copy = MemoryStorage()
    snapshot = source.snapshot()
    meta = snapshot.metadata
    first, last = source.first_index(), source.last_index()
    compacted_to = first - 1
    if compacted_to == meta.index:
        if not snapshot.is_empty:
            copy.apply_snapshot(snapshot)
    elif compacted_to > 0:
        # An image at the compaction point carries only the log position; the real
        # snapshot replaces it below.
        base = SnapshotMetadata(compacted_to, source.term(compacted_to), meta.conf_state)
        copy.apply_snapshot(Snapshot(base, b""))
    if last >= first:
        copy.append(source.entries(first, last + 1, NO_LIMIT))
    if compacted_to != meta.index:
        copy.create_snapshot(meta.index, meta.conf_state, snapshot.data)
    copy.set_hard_state(source.hard_state)
    return copy


class SimDisk:
    """One node's disk. ``live`` is what the running node reads and writes through; the
    durable image is what a crash leaves behind.

    Contract for the caller: write through `persist_ready`, `create_snapshot` and `compact`
    only (never through ``live`` directly), call `sync` before relying on durability, and
    after `crash` build the new node from `recover`.
    """

    __slots__ = ("_durable", "_pending", "live", "max_pending_batches", "syncs", "torn_writes")

    def __init__(
        self,
        initial: MemoryStorage | None = None,
        *,
        torn_writes: bool = True,
        max_pending_batches: int = MAX_PENDING_BATCHES,
    ) -> None:
        """Start with ``initial`` durable (a bootstrapped group) or an empty disk."""
        self._durable = initial if initial is not None else MemoryStorage()
        self.live = clone_storage(self._durable)
        self._pending: list[tuple[_Write, ...]] = []
        self.torn_writes = torn_writes
        self.max_pending_batches = max_pending_batches
        self.syncs = 0

    # -- writes ---------------------------------------------------------------------------

    def _write(self, *batch: _Write) -> None:
        if len(self._pending) >= self.max_pending_batches:
            raise RuntimeError(
                f"{len(self._pending)} unsynced batches (max_pending_batches); the node never syncs"
            )
        for write in batch:
            _apply(self.live, write)
        self._pending.append(batch)

    def persist_ready(self, ready: Ready) -> None:
        """Step 1 of the Ready contract, unsynced, as one atomic batch: snapshot, then
        entries, then hard state."""
        batch: list[_Write] = []
        if ready.snapshot is not None:
            batch.append(_WriteSnapshot(ready.snapshot))
        if ready.entries:
            batch.append(_WriteEntries(ready.entries))
        if ready.hard_state is not None:
            batch.append(_WriteHardState(ready.hard_state))
        if batch:
            self._write(*batch)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a state-machine snapshot at applied ``index`` (unsynced)."""
        self._write(_CreateSnapshot(index, conf_state, data))
        return self.live.snapshot()

    def compact(self, index: int) -> None:
        """Discard entries before ``index`` (unsynced). Requires a snapshot at or after it."""
        self._write(_Compact(index))

    @property
    def has_unsynced_writes(self) -> bool:
        return bool(self._pending)

    def sync(self) -> None:
        """Make every write so far durable (fsync)."""
        for batch in self._pending:
            for write in batch:
                _apply(self._durable, write)
        self._pending.clear()
        self.syncs += 1

    # -- crash and recovery -----------------------------------------------------------------

    def crash(self, rng: random.Random) -> int:
        """Lose unsynced batches (all of them, or a random suffix when ``torn_writes``).
        Returns how many batches were lost. The caller must discard its node and build a
        new one from `recover`."""
        pending = self._pending
        keep = rng.randint(0, len(pending)) if self.torn_writes and pending else 0
        for batch in pending[:keep]:
            for write in batch:
                _apply(self._durable, write)
        lost = len(pending) - keep
        self._pending = []
        self.live = clone_storage(self._durable)
        return lost

    def recover(self) -> MemoryStorage:
        """The storage a restarted node is built from (the durable image, as ``live``)."""
        if self._pending:
            raise RuntimeError("recover() with unsynced writes: crash() or sync() first")
        return self.live

    # -- the durable image, for invariants ---------------------------------------------

    @property
    def durable_hard_state(self) -> HardState:
        return self._durable.hard_state

    def durable_last_index(self) -> int:
        return self._durable.last_index()

    def durable_term(self, index: int) -> int | None:
        """Term of durable entry ``index`` (or of the durable snapshot point), None if the
        durable log does not hold it (compacted or beyond its end)."""
        durable = self._durable
        if index > durable.last_index():
            return None
        try:
            return durable.term(index)
        except CompactedError:
            return None

    def durable_snapshot_index(self) -> int:
        return self._durable.snapshot().metadata.index
