"""The durable log as the Raft core reads it: the `Storage` protocol and `MemoryStorage`.

The core only *reads* storage. Writing is the caller's job, driven by `Ready` (persist
snapshot, entries, hard state; see `RawNode.ready`). `MemoryStorage` is the pure in-memory
implementation used by the simulator and the tests; the RocksDB-backed one lives in
``shardkv.storage`` and must honour the same contract (run the same tests against it).

Index layout (as in etcd): storage holds a snapshot at index ``S`` (``S == 0`` for a fresh
log) and entries ``S+1 .. last_index()``. ``first_index() == S + 1``; ``term(S)`` is the
snapshot's term and stays answerable after compaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shardkv.core.raft.errors import (
    CompactedError,
    RaftUsageError,
    SnapshotOutOfDateError,
    UnavailableError,
)
from shardkv.core.raft.types import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ENTRY_OVERHEAD_BYTES,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
    entry_size_bytes,
)

if TYPE_CHECKING:
    from shardkv.core.raft.rawnode import Ready


class Storage(Protocol):
    """Read access to the durable part of a group's log.

    Every method reflects only what the caller has already persisted from earlier
    `Ready` values. Implementations must be deterministic and must not block on I/O that
    can fail transiently; an unreadable disk is fatal for the replica.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership as of the snapshot (index
        ``first_index() - 1``). The core replays conf changes in the log up to its
        applied index on top of it."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``[lo, hi)``, truncated to the longest prefix within ``max_bytes`` but
        always at least one entry when ``lo < hi``. Raises `CompactedError` if
        ``lo < first_index()`` and `UnavailableError` if ``hi > last_index() + 1``."""
        ...

    def term(self, index: int) -> int:
        """Term of entry ``index``, for ``first_index() - 1 <= index <= last_index()``.
        Raises `CompactedError` below that range and `UnavailableError` above it."""
        ...

    def first_index(self) -> int:
        """Index of the first entry that may be read (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """Index of the last persisted entry (the snapshot index if there is none)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot. May raise `SnapshotTemporarilyUnavailableError`; the
        leader then retries later."""
        ...


def limit_size(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes``, but never fewer than one
    entry (so a single oversize entry still makes progress)."""
    if len(entries) <= 1:
        return entries
    size = 0
    overhead = ENTRY_OVERHEAD_BYTES
    for i, entry in enumerate(entries):
        size += len(entry.data) + overhead
        if size > max_bytes and i > 0:
            return entries[:i]
    return entries


class MemoryStorage:
    """`Storage` kept in memory, with the write operations a caller performs.

    ``_entries[0]`` is a dummy entry carrying the snapshot index and term, so
    ``_entries[i]`` has index ``snapshot index + i``.

    Invariants: ``_entries[0].index == _snapshot.metadata.index`` and
    ``_entries[0].term == _snapshot.metadata.term``; indexes in ``_entries`` are
    contiguous.
    """

    __slots__ = ("_entries", "_hard_state", "_snapshot")

    def __init__(self) -> None:
        self._hard_state = EMPTY_HARD_STATE
        self._snapshot = EMPTY_SNAPSHOT
        self._entries: list[Entry] = [Entry(0, 0)]

    @classmethod
    def bootstrap(cls, conf_state: ConfState, *, index: int = 1, term: int = 1) -> MemoryStorage:
        """A storage that starts from a snapshot at ``index``/``term`` carrying
        ``conf_state`` and empty data: how a brand-new group learns its first members."""
        if index < 1 or term < 1:
            raise RaftUsageError("bootstrap needs index >= 1 and term >= 1")
        storage = cls()
        storage.apply_snapshot(Snapshot(SnapshotMetadata(index, term, conf_state), b""))
        storage.set_hard_state(HardState(term=term, vote=0, commit=index))
        return storage

    # -- Storage protocol ---------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(f"entries({lo}, {hi}): compacted up to {offset}")
        if hi > offset + len(self._entries):
            raise UnavailableError(
                f"entries({lo}, {hi}): last index is {offset + len(self._entries) - 1}"
            )
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(f"term({index}): compacted up to {offset}")
        if index - offset >= len(self._entries):
            raise UnavailableError(
                f"term({index}): last index is {offset + len(self._entries) - 1}"
            )
        return self._entries[index - offset].term

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes (the caller's side of the Ready contract) ---------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hard_state: HardState) -> None:
        """Persist ``hard_state``. Term and vote may not go back."""
        old = self._hard_state
        if hard_state.term < old.term or (
            hard_state.term == old.term and old.vote != 0 and hard_state.vote != old.vote
        ):
            raise RaftUsageError(f"hard state goes back: {old} -> {hard_state}")
        self._hard_state = hard_state

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Persist ``entries``, replacing any existing suffix from ``entries[0].index``.

        Entries at or below the snapshot index are ignored (already covered); a gap after
        the last index is a caller bug and raises `RaftUsageError`."""
        if not entries:
            return
        offset = self._entries[0].index
        first_new = entries[0].index
        last_new = entries[-1].index
        if last_new <= offset:
            return
        if first_new <= offset:
            entries = entries[offset + 1 - first_new :]
            first_new = offset + 1
        position = first_new - offset
        if position > len(self._entries):
            raise RaftUsageError(
                f"append leaves a gap: last index {self.last_index()}, appending {first_new}"
            )
        if position < len(self._entries):
            del self._entries[position:]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower installing one)."""
        if snapshot.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {snapshot.metadata.index} is not newer than "
                f"{self._snapshot.metadata.index}"
            )
        self._snapshot = snapshot
        self._entries = [Entry(snapshot.metadata.term, snapshot.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine at applied ``index`` (``conf_state`` is
        the membership at that index, `RawNode.conf_state()` right after applying it).

        Raises `SnapshotOutOfDateError` if ``index`` is not above the current snapshot and
        `RaftUsageError` if ``index`` is beyond the last entry. The caller must only
        snapshot applied (hence committed) indexes."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snapshot.metadata.index}"
            )
        if index > self.last_index():
            raise RaftUsageError(f"snapshot at {index} is beyond last index {self.last_index()}")
        snapshot = Snapshot(SnapshotMetadata(index, self.term(index), conf_state), data)
        self._snapshot = snapshot
        return snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries before ``compact_index`` (it stays readable as the dummy).

        Requires a snapshot at or after ``compact_index`` so that a follower that needs the
        discarded entries can be caught up by snapshot; raises `RaftUsageError` otherwise,
        and `CompactedError` if already compacted past it."""
        offset = self._entries[0].index
        if compact_index <= offset:
            raise CompactedError(f"compact({compact_index}): already compacted to {offset}")
        if compact_index > self.last_index():
            raise RaftUsageError(
                f"compact({compact_index}) is beyond last index {self.last_index()}"
            )
        if compact_index > self._snapshot.metadata.index:
            raise RaftUsageError(
                f"compact({compact_index}) is above the snapshot at "
                f"{self._snapshot.metadata.index}; create a snapshot first"
            )
        position = compact_index - offset
        dummy = Entry(self._entries[position].term, compact_index)
        self._entries = [dummy, *self._entries[position + 1 :]]

    def persist_ready(self, ready: Ready) -> None:
        """Step 1 of the `Ready` contract for this storage: snapshot, entries, hard state.

        In memory this is "durable" at once; a simulator models crashes by discarding
        what it has not yet handed to this method."""
        if ready.snapshot is not None:
            self.apply_snapshot(ready.snapshot)
        if ready.entries:
            self.append(ready.entries)
        if ready.hard_state is not None:
            self.set_hard_state(ready.hard_state)


def total_size_bytes(entries: list[Entry] | tuple[Entry, ...]) -> int:
    """Sum of `entry_size_bytes` over ``entries``."""
    return sum(map(entry_size_bytes, entries))
