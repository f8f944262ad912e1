"""The durable log of one Raft group on the node's engine: `RaftLogStorage`.

It owns the group's keys in the ``RAFT_LOG`` and ``RAFT_STATE`` columns and nothing else.
It never syncs: the node runtime stages the durable part of every group's `Ready` into one
shared `WriteBatch`, writes it, syncs once (group commit), and only then tells each
storage ``on_written()``. The core reads it through the `Storage` protocol, with the
semantics and errors of `MemoryStorage` (the same conformance tests run against both).

Layout (integers big-endian; ``G`` = group id, 8 bytes)::

    RAFT_LOG    G + index (8)      -> term (8) | entry type (1) | data
    RAFT_STATE  G + b"hard_state"  -> term (8) | vote (8) | commit (8)
                G + b"log_start"   -> index (8) | term (8)   the dummy entry: the log holds
                                      index+1 .. last; index = first_index() - 1
                G + b"snapshot"    -> index (8) | term (8) | voters (4) | learners (4)
                                      | each id (8): the latest snapshot's metadata
                G + b"snapshot_data" -> the latest snapshot's data, as given

The last index is not stored: entries are contiguous from ``log_start + 1`` (every
truncation deletes the whole suffix), so recovery finds the end with O(log n) point reads.

The driving contract, for each `Ready` ``rd`` of the group::

    batch = WriteBatch()                      # shared by every group of the node
    storage.stage_ready(rd, batch)            # snapshot, entries, hard state
    if rd.snapshot: kv_snapshot.stage_install(rd.snapshot.data, batch, ...)  # same batch!
    engine.write(batch); engine.sync()        # sync only if some rd.must_sync
    storage.on_written()                      # BEFORE advance(), before any other call
    send(rd.messages_after_persist); apply; node.advance(rd)

Every ``stage_*`` call validates against the state as of the earlier staged calls, appends
its writes to the caller's batch (nothing, if it raises), and records the resulting state
as *staged*. Reads keep answering from the *written* state until ``on_written()``, which
the caller must call right after ``engine.write(batch)`` returns and before anything else
touches this storage. If ``engine.write`` fails, the engine's state is unknown: discard
this object (the node fail-stops) and rebuild from the engine.

Membership is handled as in `MemoryStorage`: ``initial_state()`` returns the membership of
the latest snapshot, and the core replays the conf changes it finds in the log up to the
``Config.applied_index`` the runtime passes at restart (the KV applied index, stored by
``kv_snapshot.stage_applied_index`` in the same batch as the data it covers).

The tail of the log is cached in memory (bounded by ``max_cached_entries`` and
``max_cached_bytes``); older entries are read from the engine.

Snapshot data is persisted as given (a copy of the state machine per group, rewritten at
every snapshot), so that a leader can serve ``snapshot()`` after a restart. It is read back
from the engine on each ``snapshot()`` call, not held in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from shardkv.core.cluster.split import SPLIT_PENDING_SNAPSHOT_DATA
from shardkv.core.engine import RAFT_LOG, RAFT_STATE, ReadView, WriteBatch
from shardkv.core.raft import (
    CompactedError,
    ConfState,
    Entry,
    EntryType,
    HardState,
    RaftUsageError,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from shardkv.core.raft.types import EMPTY_HARD_STATE, entry_size_bytes
from shardkv.storage.engine import Engine, StorageError

DEFAULT_MAX_CACHED_ENTRIES: Final = 4096
"""Log entries kept in memory per group (the tail of the log)."""
DEFAULT_MAX_CACHED_BYTES: Final = 16 << 20
"""Bytes of log entries (as `entry_size_bytes` counts them) kept in memory per group."""
READ_PAGE_ENTRIES: Final = 256
"""Entries fetched from the engine per scan when reading below the cache."""

MAX_GROUP_ID: Final = 2**64 - 2
"""Largest group id (``group_id + 1`` must fit the 8-byte key prefix)."""

_U64: Final = struct.Struct(">Q")
_LOG_KEY: Final = struct.Struct(">QQ")
_ENTRY_HEADER: Final = struct.Struct(">QB")
_HARD_STATE: Final = struct.Struct(">QQQ")
_LOG_START: Final = struct.Struct(">QQ")
_SNAPSHOT_HEADER: Final = struct.Struct(">QQII")

_HARD_STATE_NAME: Final = b"hard_state"
_LOG_START_NAME: Final = b"log_start"
_SNAPSHOT_NAME: Final = b"snapshot"
_SNAPSHOT_DATA_NAME: Final = b"snapshot_data"

_EMPTY_METADATA: Final = SnapshotMetadata()


class RaftLogCorruptionError(StorageError):
    """The group's durable records are malformed or inconsistent (a hole in the log, an
    undecodable record). The replica must stop; it cannot be repaired in place."""


# -- encoding ------------------------------------------------------------------------------


def log_key(group_id: int, index: int) -> bytes:
    """The ``RAFT_LOG`` key of entry ``index`` of ``group_id``."""
    return _LOG_KEY.pack(group_id, index)


def state_key(group_id: int, name: bytes) -> bytes:
    """The ``RAFT_STATE`` key of record ``name`` of ``group_id``."""
    return _U64.pack(group_id) + name


def encode_entry(entry: Entry) -> bytes:
    """The ``RAFT_LOG`` value of ``entry`` (its index is in the key)."""
    return _ENTRY_HEADER.pack(entry.term, int(entry.type)) + entry.data


def decode_entry(index: int, value: bytes) -> Entry:
    """Inverse of `encode_entry`; raises `RaftLogCorruptionError` on malformed values."""
    try:
        term, kind = _ENTRY_HEADER.unpack_from(value)
        return Entry(term, index, EntryType(kind), value[_ENTRY_HEADER.size :])
    except (struct.error, ValueError) as exc:
        raise RaftLogCorruptionError(f"undecodable log entry {index}: {exc}") from exc


def _encode_snapshot_metadata(meta: SnapshotMetadata) -> bytes:
    cs = meta.conf_state
    ids = (*cs.voters, *cs.learners)
    return _SNAPSHOT_HEADER.pack(meta.index, meta.term, len(cs.voters), len(cs.learners)) + (
        struct.pack(f">{len(ids)}Q", *ids)
    )


def _decode_snapshot_metadata(value: bytes) -> SnapshotMetadata:
    try:
        index, term, voters, learners = _SNAPSHOT_HEADER.unpack_from(value)
        ids = struct.unpack_from(f">{voters + learners}Q", value, _SNAPSHOT_HEADER.size)
        if len(value) != _SNAPSHOT_HEADER.size + 8 * (voters + learners):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise RaftLogCorruptionError(f"undecodable snapshot metadata: {exc}") from exc
    return SnapshotMetadata(index, term, ConfState(ids[:voters], ids[voters:]))


# -- state ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """One version of the group's log, as written (``_current``) or as staged.

    The log holds entries ``offset+1 .. last_index``; ``offset``/``offset_term`` is the
    dummy entry (first_index - 1). ``tail[i]`` is entry ``tail_first + i`` for the indexes
    this state covers (``tail_first .. last_index``); the list may be shared with the
    staged state, which only ever appends past this state's ``last_index``, so reads
    must never look past ``last_index``. Entries at or below ``offset`` may linger in
    ``tail`` until ``on_written`` trims them; reads check ``offset`` first.
    """

    hard_state: HardState
    snapshot: SnapshotMetadata
    offset: int
    offset_term: int
    last_index: int
    tail: list[Entry]
    tail_first: int
    tail_bytes: int

    def copy(self) -> _State:
        return _State(
            self.hard_state,
            self.snapshot,
            self.offset,
            self.offset_term,
            self.last_index,
            self.tail,
            self.tail_first,
            self.tail_bytes,
        )


class RaftLogStorage:
    """`Storage` for one Raft group, durable in the node's engine. See the module
    docstring for the layout and the stage / write / ``on_written`` protocol.

    Construct it on an engine that holds the group's state (recovery: reads it back), or
    on one without any (an empty log, as `MemoryStorage()`: a new replica waiting for a
    snapshot). `bootstrap` stages a brand-new group instead. Not thread-safe: one caller
    at a time, on the thread that drives the group's `RawNode`.
    """

    __slots__ = (
        "_current",
        "_engine",
        "_group_id",
        "_log_end_key",
        "_log_start_key",
        "_staged",
        "max_cached_bytes",
        "max_cached_entries",
        "snapshot_stale_below",
    )

    def __init__(
        self,
        engine: Engine,
        group_id: int,
        *,
        max_cached_entries: int = DEFAULT_MAX_CACHED_ENTRIES,
        max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
    ) -> None:
        """Load the group's durable state from ``engine`` (what was written; after a crash,
        what survived it). Raises `RaftLogCorruptionError` if it is inconsistent."""
        if not 0 <= group_id <= MAX_GROUP_ID:
            raise RaftUsageError(f"group id {group_id} out of range [0, {MAX_GROUP_ID}]")
        if max_cached_entries < 1 or max_cached_bytes < 1:
            raise RaftUsageError("max_cached_entries and max_cached_bytes must be positive")
        self._engine = engine
        self._group_id = group_id
        #: The group's slots changed at this index (a split or absorb applied): a snapshot
        #: taken before it is not sent (its slots are no longer the group's), and the
        #: core is told to wait for the next one (`snapshot`).
        self.snapshot_stale_below = 0
        self.max_cached_entries = max_cached_entries
        self.max_cached_bytes = max_cached_bytes
        self._log_start_key = log_key(group_id, 0)
        self._log_end_key = log_key(group_id + 1, 0)
        self._staged: _State | None = None
        self._current = self._load()

    @classmethod
    def bootstrap(
        cls,
        engine: Engine,
        group_id: int,
        conf_state: ConfState,
        batch: WriteBatch,
        *,
        index: int = 1,
        term: int = 1,
        data: bytes = b"",
        max_cached_entries: int = DEFAULT_MAX_CACHED_ENTRIES,
        max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
    ) -> RaftLogStorage:
        """Stage a brand-new group, as `MemoryStorage.bootstrap`: a snapshot at
        ``index``/``term`` carrying ``conf_state`` and ``data`` (the state machine's image
        at ``index``, sent to replicas that join before the next snapshot), and hard state
        ``(term, no vote, commit=index)``. Returns the storage with that staged: write
        ``batch``, then call ``on_written()``. Raises `RaftUsageError` if the engine
        already holds state for ``group_id`` or if ``index``/``term`` are below 1."""
        if index < 1 or term < 1:
            raise RaftUsageError("bootstrap needs index >= 1 and term >= 1")
        storage = cls(
            engine,
            group_id,
            max_cached_entries=max_cached_entries,
            max_cached_bytes=max_cached_bytes,
        )
        if not storage._is_blank():
            raise RaftUsageError(f"group {group_id} already has durable state")
        local = WriteBatch()
        state = storage._stage_snapshot(
            storage._current, Snapshot(SnapshotMetadata(index, term, conf_state), data), local
        )
        state = storage._stage_hard_state(state, HardState(term=term, vote=0, commit=index), local)
        batch.extend(local)
        storage._staged = state
        return storage

    @staticmethod
    def stage_destroy(group_id: int, batch: WriteBatch) -> None:
        """Stage the removal of every record of ``group_id`` (a replica that left its
        group). Any `RaftLogStorage` of that group must be discarded afterwards."""
        if not 0 <= group_id <= MAX_GROUP_ID:
            raise RaftUsageError(f"group id {group_id} out of range [0, {MAX_GROUP_ID}]")
        batch.delete_range(RAFT_LOG, log_key(group_id, 0), log_key(group_id + 1, 0))
        batch.delete_range(RAFT_STATE, _U64.pack(group_id), _U64.pack(group_id + 1))

    @staticmethod
    def stored_groups(engine: ReadView) -> list[int]:
        """Ids of the groups that have Raft state in ``engine``, ascending."""
        found = []
        start = b""
        while True:
            page = engine.scan(RAFT_STATE, start, None, 1)
            if not page:
                return found
            group_id = _U64.unpack(page[0][0][:8])[0]
            found.append(group_id)
            start = _U64.pack(group_id + 1)

    # -- Storage protocol ---------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        current = self._current
        return current.hard_state, current.snapshot.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        current = self._current
        if lo <= current.offset:
            raise CompactedError(f"entries({lo}, {hi}): compacted up to {current.offset}")
        if hi > current.last_index + 1:
            raise UnavailableError(f"entries({lo}, {hi}): last index is {current.last_index}")
        out: list[Entry] = []
        if lo >= hi:
            return out
        size = 0
        if lo < current.tail_first:
            size = self._read_engine(lo, min(hi, current.tail_first), max_bytes, out)
            if size > max_bytes:
                return out
            lo = current.tail_first
        tail, first = current.tail, current.tail_first
        for position in range(lo - first, hi - first):
            entry = tail[position]
            size += entry_size_bytes(entry)
            if size > max_bytes and out:
                break
            out.append(entry)
        return out

    def term(self, index: int) -> int:
        return self._term_in(self._current, index)

    def first_index(self) -> int:
        return self._current.offset + 1

    def last_index(self) -> int:
        return self._current.last_index

    def snapshot(self) -> Snapshot:
        meta = self._current.snapshot
        if meta.index == 0:
            return Snapshot()
        data = self._engine.get(RAFT_STATE, state_key(self._group_id, _SNAPSHOT_DATA_NAME))
        if data == SPLIT_PENDING_SNAPSHOT_DATA:
            # A split child's first snapshot is built after its first entry: until then a
            # lagging replica waits for it (the core retries later).
            raise SnapshotTemporarilyUnavailableError(
                f"group {self._group_id}'s first snapshot is not built yet"
            )
        if meta.index < self.snapshot_stale_below:
            raise SnapshotTemporarilyUnavailableError(
                f"group {self._group_id}'s snapshot predates a change of its slots"
            )
        return Snapshot(meta, data if data is not None else b"")

    def stored_snapshot_data(self) -> bytes:
        """The newest snapshot's data as stored (b"" if none), whether or not `snapshot`
        would hand it out now."""
        data = self._engine.get(RAFT_STATE, state_key(self._group_id, _SNAPSHOT_DATA_NAME))
        return data if data is not None and self._current.snapshot.index else b""

    @property
    def snapshot_pending(self) -> bool:
        """Whether the newest snapshot is a split child's placeholder, or predates a
        change of the group's slots (build one soon)."""
        return self._current.snapshot.index < self.snapshot_stale_below or self.placeholder

    @property
    def placeholder(self) -> bool:
        """Whether the newest snapshot is a split child's placeholder (no data of its own)."""
        return self.stored_snapshot_data() == SPLIT_PENDING_SNAPSHOT_DATA

    # -- inspection -----------------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        """Index of the newest snapshot written (0: none), without reading its data."""
        index: int = self._current.snapshot.index
        return index

    @property
    def group_id(self) -> int:
        return self._group_id

    @property
    def hard_state(self) -> HardState:
        """The written hard state (as `MemoryStorage.hard_state`)."""
        return self._current.hard_state

    @property
    def has_staged(self) -> bool:
        """Whether staged writes await ``on_written()``."""
        return self._staged is not None

    def cached_entries(self) -> int:
        """How many entries of the written log are served from memory."""
        current = self._current
        return max(0, current.last_index - max(current.tail_first, current.offset + 1) + 1)

    # -- staging (the caller's side of the Ready contract) ------------------------------

    def stage_ready(self, ready: Ready, batch: WriteBatch) -> None:
        """Stage step 1 of the `Ready` contract: ``snapshot``, then ``entries``, then
        ``hard_state``, with `MemoryStorage.persist_ready`'s checks. The caller stages the
        state machine's install of ``ready.snapshot`` into the same batch."""
        local = WriteBatch()
        state = self._base()
        if ready.snapshot is not None:
            state = self._stage_snapshot(state, ready.snapshot, local)
        if ready.entries:
            state = self._stage_append(state, ready.entries, local)
        if ready.hard_state is not None:
            state = self._stage_hard_state(state, ready.hard_state, local)
        batch.extend(local)
        self._staged = state

    def stage_hard_state(self, hard_state: HardState, batch: WriteBatch) -> None:
        """Stage ``hard_state``. Raises `RaftUsageError` if term or vote would go back."""
        self._staged = self._stage_hard_state(self._base(), hard_state, batch)

    def stage_append(self, entries: Sequence[Entry], batch: WriteBatch) -> None:
        """Stage ``entries``, replacing any existing suffix from ``entries[0].index``.
        Entries at or below ``first_index() - 1`` are ignored; a gap after the last index
        raises `RaftUsageError`."""
        self._staged = self._stage_append(self._base(), entries, batch)

    def stage_apply_snapshot(self, snapshot: Snapshot, batch: WriteBatch) -> None:
        """Stage replacing the whole log with ``snapshot`` (a follower installing one).
        Raises `SnapshotOutOfDateError` unless it is newer than the current snapshot."""
        self._staged = self._stage_snapshot(self._base(), snapshot, batch)

    def stage_create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes, batch: WriteBatch
    ) -> Snapshot:
        """Stage a snapshot of the state machine at applied ``index`` (``conf_state`` is
        `RawNode.conf_state()` right after applying it; ``data`` the state machine image,
        e.g. ``kv_snapshot.build_snapshot_data``). Returns it. Raises
        `SnapshotOutOfDateError` if ``index`` is not above the current snapshot and
        `RaftUsageError` if it is beyond the last entry."""
        base = self._base()
        if index <= base.snapshot.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {base.snapshot.index}"
            )
        if index > base.last_index:
            raise RaftUsageError(f"snapshot at {index} is beyond last index {base.last_index}")
        meta = SnapshotMetadata(index, self._term_in(base, index), conf_state)
        state = base.copy()
        state.snapshot = meta
        self._put_snapshot(meta, data, batch)
        self._staged = state
        return Snapshot(meta, data)

    def stage_compact(self, compact_index: int, batch: WriteBatch) -> None:
        """Stage discarding the entries before ``compact_index`` (it stays readable as
        the dummy: ``first_index()`` becomes ``compact_index + 1``).

        Raises `CompactedError` if already compacted to or past it, and `RaftUsageError`
        if it is beyond the last index or above the latest snapshot (a follower needing the
        discarded entries must be caught up by snapshot)."""
        base = self._base()
        if compact_index <= base.offset:
            raise CompactedError(f"compact({compact_index}): already compacted to {base.offset}")
        if compact_index > base.last_index:
            raise RaftUsageError(f"compact({compact_index}) is beyond last index {base.last_index}")
        if compact_index > base.snapshot.index:
            raise RaftUsageError(
                f"compact({compact_index}) is above the snapshot at {base.snapshot.index}; "
                "create a snapshot first"
            )
        term = self._term_in(base, compact_index)
        state = base.copy()
        state.offset, state.offset_term = compact_index, term
        batch.delete_range(
            RAFT_LOG, self._log_start_key, log_key(self._group_id, compact_index + 1)
        )
        batch.put(
            RAFT_STATE, self._state_key(_LOG_START_NAME), _LOG_START.pack(compact_index, term)
        )
        self._staged = state

    def on_written(self) -> None:
        """The batch holding every staged write was written to the engine: make reads
        reflect it. A no-op when nothing is staged."""
        staged = self._staged
        if staged is None:
            return
        self._staged = None
        self._current = staged
        self._trim_cache(staged)

    # -- write-through conveniences (MemoryStorage's API; written, not synced) ----------

    def persist_ready(self, ready: Ready) -> None:
        """`stage_ready` into a batch of its own, written at once (not synced: the caller
        syncs the engine). Raises `RaftUsageError` while other writes are staged."""
        self._write_through(lambda batch: self.stage_ready(ready, batch))

    def set_hard_state(self, hard_state: HardState) -> None:
        self._write_through(lambda batch: self.stage_hard_state(hard_state, batch))

    def append(self, entries: Sequence[Entry]) -> None:
        self._write_through(lambda batch: self.stage_append(entries, batch))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._write_through(lambda batch: self.stage_apply_snapshot(snapshot, batch))

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        created: list[Snapshot] = []
        self._write_through(
            lambda batch: created.append(self.stage_create_snapshot(index, conf_state, data, batch))
        )
        return created[0]

    def compact(self, compact_index: int) -> None:
        self._write_through(lambda batch: self.stage_compact(compact_index, batch))

    # -- internals ------------------------------------------------------------------------

    def _state_key(self, name: bytes) -> bytes:
        return state_key(self._group_id, name)

    def _base(self) -> _State:
        return self._staged if self._staged is not None else self._current

    def _require_nothing_staged(self) -> None:
        if self._staged is not None:
            raise RaftUsageError("write-through call while staged writes await on_written()")

    def _write_through(self, stage: Callable[[WriteBatch], None]) -> None:
        self._require_nothing_staged()
        batch = WriteBatch()
        stage(batch)
        self._engine.write(batch)
        self.on_written()

    def _term_in(self, state: _State, index: int) -> int:
        if index < state.offset:
            raise CompactedError(f"term({index}): compacted up to {state.offset}")
        if index > state.last_index:
            raise UnavailableError(f"term({index}): last index is {state.last_index}")
        if index == state.offset:
            return state.offset_term
        if index >= state.tail_first:
            return state.tail[index - state.tail_first].term
        value = self._engine.get(RAFT_LOG, log_key(self._group_id, index))
        if value is None:
            raise RaftLogCorruptionError(f"group {self._group_id}: log entry {index} is missing")
        return decode_entry(index, value).term

    def _read_engine(self, lo: int, hi: int, max_bytes: int, out: list[Entry]) -> int:
        """Append entries ``[lo, hi)`` from the engine to ``out`` within ``max_bytes``
        (at least one); returns the bytes counted, above ``max_bytes`` if it stopped."""
        size = 0
        group = self._group_id
        end = log_key(group, hi)
        expected = lo
        while expected < hi:
            page = self._engine.scan(RAFT_LOG, log_key(group, expected), end, READ_PAGE_ENTRIES)
            if not page:
                raise RaftLogCorruptionError(f"group {group}: log entry {expected} is missing")
            for key, value in page:
                if _LOG_KEY.unpack(key)[1] != expected:
                    raise RaftLogCorruptionError(f"group {group}: log entry {expected} is missing")
                entry = decode_entry(expected, value)
                size += entry_size_bytes(entry)
                if size > max_bytes and out:
                    return size
                out.append(entry)
                expected += 1
        return size

    def _stage_hard_state(self, base: _State, hard_state: HardState, batch: WriteBatch) -> _State:
        old = base.hard_state
        if hard_state.term < old.term or (
            hard_state.term == old.term and old.vote != 0 and hard_state.vote != old.vote
        ):
            raise RaftUsageError(f"hard state goes back: {old} -> {hard_state}")
        state = base.copy()
        state.hard_state = hard_state
        batch.put(
            RAFT_STATE,
            self._state_key(_HARD_STATE_NAME),
            _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit),
        )
        return state

    def _stage_append(self, base: _State, entries: Sequence[Entry], batch: WriteBatch) -> _State:
        if not entries:
            return base
        offset = base.offset
        first_new = entries[0].index
        last_new = entries[-1].index
        if last_new <= offset:
            return base
        if first_new <= offset:
            entries = entries[offset + 1 - first_new :]
            first_new = offset + 1
        if first_new > base.last_index + 1:
            raise RaftUsageError(
                f"append leaves a gap: last index {base.last_index}, appending {first_new}"
            )
        group = self._group_id
        if first_new <= base.last_index:
            # A conflicting suffix: the whole of it goes, so the log stays contiguous.
            batch.delete_range(RAFT_LOG, log_key(group, first_new), self._log_end_key)
        for entry in entries:
            batch.put(RAFT_LOG, log_key(group, entry.index), encode_entry(entry))
        added = sum(map(entry_size_bytes, entries))
        state = base.copy()
        state.last_index = entries[-1].index
        tail = base.tail
        extent = base.last_index - base.tail_first + 1  # positions base covers
        position = first_new - base.tail_first
        if position < 0:
            # Truncation below the cached tail (or an emptied cache): restart it.
            state.tail = list(entries)
            state.tail_first = first_new
            state.tail_bytes = added
        elif position == extent == len(tail):
            # The common case: a pure append, in place (the written state never reads past
            # its own last index, so sharing the list with it is safe).
            tail.extend(entries)
            state.tail_bytes = base.tail_bytes + added
        else:
            kept = tail[:position]
            state.tail = kept + list(entries)
            state.tail_bytes = sum(map(entry_size_bytes, kept)) + added
        return state

    def _stage_snapshot(self, base: _State, snapshot: Snapshot, batch: WriteBatch) -> _State:
        meta = snapshot.metadata
        if meta.index <= base.snapshot.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {meta.index} is not newer than {base.snapshot.index}"
            )
        batch.delete_range(RAFT_LOG, self._log_start_key, self._log_end_key)
        batch.put(
            RAFT_STATE, self._state_key(_LOG_START_NAME), _LOG_START.pack(meta.index, meta.term)
        )
        self._put_snapshot(meta, snapshot.data, batch)
        return _State(
            hard_state=base.hard_state,
            snapshot=meta,
            offset=meta.index,
            offset_term=meta.term,
            last_index=meta.index,
            tail=[],
            tail_first=meta.index + 1,
            tail_bytes=0,
        )

    def _put_snapshot(self, meta: SnapshotMetadata, data: bytes, batch: WriteBatch) -> None:
        batch.put(RAFT_STATE, self._state_key(_SNAPSHOT_NAME), _encode_snapshot_metadata(meta))
        batch.put(RAFT_STATE, self._state_key(_SNAPSHOT_DATA_NAME), data)

    def _trim_cache(self, state: _State) -> None:
        """Drop cached entries at or below the offset, then the oldest ones beyond the
        bounds. ``state`` is the written state: nobody else reads its list now."""
        tail = state.tail
        extent = state.last_index - state.tail_first + 1
        if len(tail) > extent:
            del tail[extent:]
        drop = min(
            max(state.offset + 1 - state.tail_first, len(tail) - self.max_cached_entries, 0),
            len(tail),
        )
        remaining_bytes = state.tail_bytes - sum(map(entry_size_bytes, tail[:drop]))
        while drop < len(tail) and remaining_bytes > self.max_cached_bytes:
            remaining_bytes -= entry_size_bytes(tail[drop])
            drop += 1
        if drop:
            del tail[:drop]
            state.tail_first += drop
            state.tail_bytes = remaining_bytes

    # -- recovery -------------------------------------------------------------------------

    def _is_blank(self) -> bool:
        group = self._group_id
        return not self._engine.scan(
            RAFT_STATE, _U64.pack(group), _U64.pack(group + 1), 1
        ) and not self._engine.scan(RAFT_LOG, self._log_start_key, self._log_end_key, 1)

    def _load(self) -> _State:
        engine = self._engine
        raw = engine.get(RAFT_STATE, self._state_key(_HARD_STATE_NAME))
        hard_state = EMPTY_HARD_STATE
        if raw is not None:
            try:
                hard_state = HardState(*_HARD_STATE.unpack(raw))
            except struct.error as exc:
                raise RaftLogCorruptionError(f"undecodable hard state: {exc}") from exc
        raw = engine.get(RAFT_STATE, self._state_key(_LOG_START_NAME))
        offset = offset_term = 0
        if raw is not None:
            try:
                offset, offset_term = _LOG_START.unpack(raw)
            except struct.error as exc:
                raise RaftLogCorruptionError(f"undecodable log start: {exc}") from exc
        raw = engine.get(RAFT_STATE, self._state_key(_SNAPSHOT_NAME))
        snapshot = _EMPTY_METADATA if raw is None else _decode_snapshot_metadata(raw)
        if offset > snapshot.index:
            raise RaftLogCorruptionError(
                f"group {self._group_id}: log starts at {offset}, after the snapshot at "
                f"{snapshot.index}"
            )
        last = self._find_last_index(offset)
        first_cached = max(offset + 1, last - self.max_cached_entries + 1)
        tail: list[Entry] = []
        size = self._read_engine(first_cached, last + 1, 1 << 62, tail) if last > offset else 0
        state = _State(hard_state, snapshot, offset, offset_term, last, tail, first_cached, size)
        self._trim_cache(state)
        return state

    def _exists(self, index: int) -> bool:
        return self._engine.get(RAFT_LOG, log_key(self._group_id, index)) is not None

    def _find_last_index(self, offset: int) -> int:
        """The last index of a contiguous log starting after ``offset``, by galloping then
        binary search over point reads; then checks that nothing lies beyond it."""
        if not self._exists(offset + 1):
            last = offset
        else:
            found, step = offset + 1, 1
            while self._exists(found + step):
                found += step
                step *= 2
            missing = found + step
            while missing - found > 1:
                middle = (found + missing) // 2
                if self._exists(middle):
                    found = middle
                else:
                    missing = middle
            last = found
        beyond = self._engine.scan(
            RAFT_LOG, log_key(self._group_id, last + 1), self._log_end_key, 1
        )
        if beyond:
            index = _LOG_KEY.unpack(beyond[0][0])[1]
            raise RaftLogCorruptionError(
                f"group {self._group_id}: log entry {index} lies beyond a hole at {last + 1}"
            )
        return last
