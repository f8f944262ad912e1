"""`RaftLogStorage`: the Raft log made durable on the node's engine.

One conformance suite runs against the core's `MemoryStorage` (the reference) and against
`RaftLogStorage` on the in-memory engine and on RocksDB (with a 3-entry cache, so reads
below the cache go to the engine). Then what only the durable one promises: staged writes
show only once written, groups sharing an engine stay apart, crashes keep exactly what was
synced (`MemoryEngine.crash`, and a real RocksDB after ``kill -9``), and a 3-node Raft
cluster over it commits, crashes, restarts and catches up by snapshot.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shardkv.core.engine import DATA, RAFT_LOG, WriteBatch
from shardkv.core.kv.machine import KVStateMachine
from shardkv.core.raft import (
    CompactedError,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftUsageError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    UnavailableError,
)
from shardkv.core.raft.types import NO_LIMIT, entry_size_bytes
from shardkv.storage import Engine, MemoryEngine, RocksDBEngine
from shardkv.storage.kv_snapshot import (
    build_snapshot_data,
    read_applied_index,
    stage_applied_index,
    stage_install,
)
from shardkv.storage.raft_log import RaftLogCorruptionError, RaftLogStorage, log_key

GROUP = 7
VOTERS = ConfState.of([1, 2, 3])
SMALL_CACHE_ENTRIES = 3

AnyStorage = MemoryStorage | RaftLogStorage


def ents(term: int, lo: int, hi: int, data: bytes = b"") -> list[Entry]:
    """Entries ``lo..hi`` (inclusive) of ``term``, each with distinct data."""
    return [Entry(term, i, data=data + b"%d" % i) for i in range(lo, hi + 1)]


def ready(
    *,
    hard_state: HardState | None = None,
    entries: tuple[Entry, ...] | list[Entry] = (),
    snapshot: Snapshot | None = None,
) -> Ready:
    return Ready(
        hard_state=hard_state,
        soft_state=None,
        entries=tuple(entries),
        snapshot=snapshot,
        committed_entries=(),
        messages=(),
        messages_after_persist=(),
        read_states=(),
        must_sync=True,
    )


def log_of(storage: AnyStorage) -> list[Entry]:
    return storage.entries(storage.first_index(), storage.last_index() + 1, NO_LIMIT)


def describe(storage: AnyStorage) -> tuple[object, ...]:
    """Everything the core can read, as one comparable value."""
    first = storage.first_index()
    return (
        storage.initial_state(),
        first,
        storage.last_index(),
        storage.term(first - 1),
        log_of(storage),
        storage.snapshot(),
    )


# -- the three implementations ---------------------------------------------------------------


@dataclass
class Subject:
    """A storage under test and, for the durable ones, its engine."""

    kind: str
    storage: AnyStorage
    engine: Engine | None = None

    def reopen(self) -> None:
        """Rebuild the storage from its engine (recovery), for the durable kinds."""
        if self.engine is not None:
            self.storage = RaftLogStorage(
                self.engine, GROUP, max_cached_entries=SMALL_CACHE_ENTRIES
            )


KINDS = ["memory-storage", "raft-log-memory-engine", "raft-log-rocksdb"]
DURABLE_KINDS = KINDS[1:]

Factory = Callable[[ConfState | None], Subject]


def _factory(kind: str, tmp_path: Path, engines: list[Engine]) -> Factory:
    def make(conf_state: ConfState | None) -> Subject:
        if kind == "memory-storage":
            storage = MemoryStorage() if conf_state is None else MemoryStorage.bootstrap(conf_state)
            return Subject(kind, storage)
        engine: Engine
        if kind == "raft-log-rocksdb":
            engine = RocksDBEngine(str(tmp_path / f"db{len(engines)}"))
        else:
            engine = MemoryEngine()
        engines.append(engine)
        if conf_state is None:
            durable = RaftLogStorage(engine, GROUP, max_cached_entries=SMALL_CACHE_ENTRIES)
        else:
            batch = WriteBatch()
            durable = RaftLogStorage.bootstrap(
                engine, GROUP, conf_state, batch, max_cached_entries=SMALL_CACHE_ENTRIES
            )
            engine.write(batch)
            durable.on_written()
        return Subject(kind, durable, engine)

    return make


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    engines: list[Engine] = []
    yield _factory(request.param, tmp_path, engines)
    for engine in engines:
        engine.close()


@pytest.fixture(params=DURABLE_KINDS)
def make_durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    engines: list[Engine] = []
    yield _factory(request.param, tmp_path, engines)
    for engine in engines:
        engine.close()


# -- conformance: every implementation ------------------------------------------------------


def test_an_empty_storage_has_an_empty_log_and_no_snapshot(make: Factory) -> None:
    s = make(None).storage
    assert s.initial_state() == (HardState(), ConfState())
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.entries(1, 1, NO_LIMIT) == []
    assert s.snapshot().is_empty
    with pytest.raises(UnavailableError):
        s.term(1)
    with pytest.raises(UnavailableError):
        s.entries(1, 2, NO_LIMIT)
    with pytest.raises(CompactedError):
        s.entries(0, 1, NO_LIMIT)


def test_bootstrap_starts_from_a_snapshot_that_carries_the_membership(make: Factory) -> None:
    s = make(VOTERS).storage
    assert s.initial_state() == (HardState(term=1, vote=0, commit=1), VOTERS)
    assert (s.first_index(), s.last_index(), s.term(1)) == (2, 1, 1)
    assert s.snapshot() == Snapshot(SnapshotMetadata(1, 1, VOTERS), b"")


def test_appended_entries_read_back_and_term_answers_only_inside_the_log(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append(ents(1, 2, 6) + ents(2, 7, 9))
    assert log_of(s) == ents(1, 2, 6) + ents(2, 7, 9)
    assert s.entries(4, 8, NO_LIMIT) == ents(1, 4, 6) + ents(2, 7, 7)
    assert [s.term(i) for i in range(1, 10)] == [1, 1, 1, 1, 1, 1, 2, 2, 2]
    with pytest.raises(CompactedError):
        s.term(0)
    with pytest.raises(UnavailableError):
        s.term(10)
    with pytest.raises(CompactedError):
        s.entries(1, 3, NO_LIMIT)
    with pytest.raises(UnavailableError):
        s.entries(8, 11, NO_LIMIT)


def test_append_replaces_the_whole_conflicting_suffix(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append(ents(1, 2, 9))
    s.append(ents(2, 4, 5, b"new"))
    assert s.last_index() == 5, "entries after the overwritten ones are gone too"
    assert log_of(s) == ents(1, 2, 3) + ents(2, 4, 5, b"new")
    with pytest.raises(UnavailableError):
        s.term(6)
    s.append(ents(3, 2, 2, b"again"))
    assert log_of(s) == ents(3, 2, 2, b"again")
    s.append(ents(3, 3, 4))
    assert log_of(s) == ents(3, 2, 2, b"again") + ents(3, 3, 4)


def test_append_skips_entries_the_snapshot_covers_and_refuses_a_gap(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append([Entry(1, 1, data=b"covered")])
    assert s.last_index() == 1 and s.term(1) == 1
    s.append([Entry(1, 1, data=b"covered"), *ents(1, 2, 3)])
    assert log_of(s) == ents(1, 2, 3)
    with pytest.raises(RaftUsageError):
        s.append(ents(1, 5, 6))
    assert log_of(s) == ents(1, 2, 3), "a refused append changes nothing"


def test_entries_stop_at_max_bytes_but_return_at_least_one(make: Factory) -> None:
    s = make(VOTERS).storage
    log = [Entry(1, i, data=b"x" * (10 * i)) for i in range(2, 12)]
    s.append(log)
    sizes = [entry_size_bytes(e) for e in log]
    for max_bytes in (0, 1, sizes[0], sizes[0] + sizes[1] - 1, sizes[0] + sizes[1], 500, 10**6):
        expected: list[Entry] = []
        total = 0
        for entry, size in zip(log, sizes, strict=True):
            total += size
            if total > max_bytes and expected:
                break
            expected.append(entry)
        assert s.entries(2, 12, max_bytes) == expected, max_bytes
    assert s.entries(9, 12, 0) == log[7:8]


def test_hard_state_term_and_vote_never_go_back(make: Factory) -> None:
    s = make(VOTERS).storage
    s.set_hard_state(HardState(term=3, vote=2, commit=1))
    assert s.initial_state()[0] == HardState(3, 2, 1)
    for bad in (HardState(2, 2, 1), HardState(3, 1, 1), HardState(3, 0, 1)):
        with pytest.raises(RaftUsageError):
            s.set_hard_state(bad)
    assert s.initial_state()[0] == HardState(3, 2, 1)
    s.set_hard_state(HardState(3, 2, 5))
    s.set_hard_state(HardState(4, 0, 5))
    assert s.initial_state()[0] == HardState(4, 0, 5)


def test_create_snapshot_then_compact_keeps_the_compaction_point_readable(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append(ents(1, 2, 5) + ents(2, 6, 10))
    new_conf = ConfState.of([1, 2, 3, 4])
    snap = s.create_snapshot(8, new_conf, b"state at 8")
    assert snap == Snapshot(SnapshotMetadata(8, 2, new_conf), b"state at 8")
    assert s.snapshot() == snap
    assert s.first_index() == 2, "creating a snapshot does not compact"
    assert s.initial_state()[1] == new_conf, "membership is the snapshot's"
    s.compact(6)
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 2)
    assert log_of(s) == ents(2, 7, 10)
    with pytest.raises(CompactedError):
        s.term(5)
    with pytest.raises(CompactedError):
        s.entries(6, 8, NO_LIMIT)
    s.compact(8)
    assert (s.first_index(), s.term(8)) == (9, 2)
    assert s.snapshot() == snap


def test_snapshot_and_compaction_refuse_what_would_lose_the_log(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append(ents(1, 2, 10))
    with pytest.raises(SnapshotOutOfDateError):
        s.create_snapshot(1, VOTERS, b"")
    with pytest.raises(RaftUsageError):
        s.create_snapshot(11, VOTERS, b"")
    with pytest.raises(RaftUsageError):
        s.compact(5)  # no snapshot covers it yet
    s.create_snapshot(6, VOTERS, b"6")
    with pytest.raises(RaftUsageError):
        s.compact(7)
    with pytest.raises(SnapshotOutOfDateError):
        s.create_snapshot(6, VOTERS, b"again")
    s.compact(4)
    with pytest.raises(CompactedError):
        s.compact(4)
    with pytest.raises(CompactedError):
        s.compact(3)
    assert (s.first_index(), s.last_index(), s.snapshot().metadata.index) == (5, 10, 6)


def test_apply_snapshot_replaces_the_whole_log(make: Factory) -> None:
    s = make(VOTERS).storage
    s.append(ents(1, 2, 10))
    later = Snapshot(SnapshotMetadata(20, 4, ConfState.of([1, 2])), b"state at 20")
    s.apply_snapshot(later)
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 4)
    assert s.snapshot() == later
    assert s.initial_state()[1] == ConfState.of([1, 2])
    with pytest.raises(CompactedError):
        s.term(10)
    s.append(ents(5, 21, 23))
    assert log_of(s) == ents(5, 21, 23)
    with pytest.raises(SnapshotOutOfDateError):
        s.apply_snapshot(Snapshot(SnapshotMetadata(20, 4, VOTERS), b""))
    with pytest.raises(SnapshotOutOfDateError):
        s.apply_snapshot(Snapshot(SnapshotMetadata(15, 4, VOTERS), b""))


def test_persist_ready_writes_snapshot_then_entries_then_hard_state(make: Factory) -> None:
    s = make(None).storage
    snap = Snapshot(SnapshotMetadata(5, 2, VOTERS), b"five")
    s.persist_ready(ready(hard_state=HardState(3, 1, 7), entries=ents(3, 6, 8), snapshot=snap))
    assert describe(s) == (
        (HardState(3, 1, 7), VOTERS),
        6,
        8,
        2,
        ents(3, 6, 8),
        snap,
    )
    s.persist_ready(ready(entries=ents(3, 8, 9, b"b")))
    assert s.last_index() == 9 and s.initial_state()[0] == HardState(3, 1, 7)


def _random_operation(rng: random.Random, model: MemoryStorage) -> tuple[str, object]:
    """One valid write for a storage currently equal to ``model``."""
    last, first = model.last_index(), model.first_index()
    hs = model.hard_state
    roll = rng.random()
    snap_index = model.snapshot().metadata.index
    if roll < 0.45:
        # Raft never truncates committed entries, so never at or below the snapshot; when
        # the log starts at the snapshot, start a little before it (covered entries).
        lowest = snap_index - 2 if first - 1 == snap_index else snap_index + 1
        start = rng.randint(max(lowest, 1), last + 1)
        term = max(hs.term, model.term(last) if last >= first - 1 else 0) + rng.randint(0, 1)
        count = rng.randint(1, 6)
        data = b"d" * rng.randint(0, 40)
        return "append", [
            Entry(term, i, data=data + b"%d" % i) for i in range(start, start + count)
        ]
    if roll < 0.6:
        term = hs.term + rng.randint(0, 1)
        vote = hs.vote if term == hs.term and hs.vote else rng.randint(0, 3)
        return "set_hard_state", HardState(term, vote, rng.randint(0, last))
    if roll < 0.75 and last > snap_index:
        index = rng.randint(snap_index + 1, last)
        return "create_snapshot", (index, ConfState.of(rng.sample([1, 2, 3, 4], 3)), b"s%d" % index)
    if roll < 0.85 and snap_index >= first:
        return "compact", rng.randint(first, snap_index)
    if roll < 0.9:
        index = snap_index + rng.randint(1, 30)
        meta = SnapshotMetadata(index, hs.term + 1, ConfState.of([1, 2]))
        return "apply_snapshot", Snapshot(meta, b"installed %d" % index)
    return "reopen", None


def _apply_operation(storage: AnyStorage, name: str, argument: object) -> None:
    method = getattr(storage, name)
    if isinstance(argument, tuple):
        method(*argument)
    else:
        method(argument)


@pytest.mark.parametrize("seed", range(4))
def test_random_histories_read_back_exactly_as_memory_storage_across_reopens(
    make_durable: Factory, seed: int
) -> None:
    rng = random.Random(seed)
    subject = make_durable(VOTERS)
    model = MemoryStorage.bootstrap(VOTERS)
    for step in range(300):
        name, argument = _random_operation(rng, model)
        if name == "reopen":
            subject.reopen()
        else:
            _apply_operation(model, name, argument)
            _apply_operation(subject.storage, name, argument)
        assert describe(subject.storage) == describe(model), (seed, step, name)
        lo = rng.randint(model.first_index(), model.last_index() + 1)
        hi = rng.randint(lo, model.last_index() + 1)
        budget = rng.randint(0, 300)
        assert subject.storage.entries(lo, hi, budget) == model.entries(lo, hi, budget)


# -- what only the durable storage promises ------------------------------------------------


def _durable(subject: Subject) -> tuple[RaftLogStorage, Engine]:
    assert isinstance(subject.storage, RaftLogStorage) and subject.engine is not None
    return subject.storage, subject.engine


def test_staged_writes_show_only_once_written(make_durable: Factory) -> None:
    storage, engine = _durable(make_durable(VOTERS))
    storage.append(ents(1, 2, 4))
    batch = WriteBatch()
    storage.stage_ready(ready(hard_state=HardState(2, 1, 3), entries=ents(2, 4, 6)), batch)
    storage.stage_create_snapshot(3, VOTERS, b"three", batch)
    storage.stage_compact(3, batch)
    assert storage.has_staged
    before = (
        (HardState(1, 0, 1), VOTERS),
        2,
        4,
        1,
        ents(1, 2, 4),
        Snapshot(SnapshotMetadata(1, 1, VOTERS)),
    )
    assert describe(storage) == before
    engine.write(batch)
    storage.on_written()
    assert not storage.has_staged
    assert describe(storage) == (
        (HardState(2, 1, 3), VOTERS),
        4,
        6,
        1,
        ents(2, 4, 6),
        Snapshot(SnapshotMetadata(3, 1, VOTERS), b"three"),
    )


def test_a_refused_stage_adds_nothing_to_the_batch(make_durable: Factory) -> None:
    storage, _ = _durable(make_durable(VOTERS))
    storage.append(ents(1, 2, 4))
    storage.set_hard_state(HardState(3, 2, 2))
    batch = WriteBatch()
    batch.put(DATA, b"other group's write", b"")
    with pytest.raises(RaftUsageError):
        storage.stage_ready(ready(hard_state=HardState(2, 0, 0), entries=ents(3, 5, 6)), batch)
    with pytest.raises(RaftUsageError):
        storage.stage_ready(ready(entries=ents(3, 7, 8)), batch)
    with pytest.raises(SnapshotOutOfDateError):
        storage.stage_ready(ready(snapshot=Snapshot(SnapshotMetadata(1, 1, VOTERS))), batch)
    assert len(batch) == 1 and not storage.has_staged
    storage.append(ents(3, 5, 6))
    assert log_of(storage) == ents(1, 2, 4) + ents(3, 5, 6)


def test_write_through_calls_are_refused_while_writes_are_staged(make_durable: Factory) -> None:
    storage, _ = _durable(make_durable(VOTERS))
    storage.stage_append(ents(1, 2, 2), WriteBatch())
    with pytest.raises(RaftUsageError):
        storage.append(ents(1, 3, 3))


def test_groups_sharing_an_engine_never_touch_each_other(make_durable: Factory) -> None:
    subject = make_durable(VOTERS)
    first, engine = _durable(subject)
    batch = WriteBatch()
    others = {
        group: RaftLogStorage.bootstrap(engine, group, ConfState.of([group]), batch)
        for group in (GROUP - 1, GROUP + 1)
    }
    engine.write(batch)
    for other in others.values():
        other.on_written()
        other.append(ents(1, 2, 9, b"other"))
    first.append(ents(1, 2, 9))
    first.append(ents(2, 3, 3))  # truncates the suffix of GROUP only
    first.create_snapshot(3, VOTERS, b"")
    first.compact(3)
    first.apply_snapshot(Snapshot(SnapshotMetadata(50, 3, VOTERS), b""))
    for group, other in others.items():
        reopened = RaftLogStorage(engine, group)
        assert describe(reopened) == describe(other)
        assert log_of(reopened) == ents(1, 2, 9, b"other")
    destroy = WriteBatch()
    RaftLogStorage.stage_destroy(GROUP, destroy)
    engine.write(destroy)
    assert describe(RaftLogStorage(engine, GROUP)) == describe(MemoryStorage())
    assert log_of(RaftLogStorage(engine, GROUP + 1)) == ents(1, 2, 9, b"other")


def test_bootstrap_refuses_a_group_that_already_has_state(make_durable: Factory) -> None:
    _, engine = _durable(make_durable(VOTERS))
    with pytest.raises(RaftUsageError):
        RaftLogStorage.bootstrap(engine, GROUP, VOTERS, WriteBatch())


def test_the_cache_keeps_a_bounded_tail_and_older_entries_come_from_the_engine() -> None:
    engine = MemoryEngine()
    batch = WriteBatch()
    storage = RaftLogStorage.bootstrap(
        engine, GROUP, VOTERS, batch, max_cached_entries=10, max_cached_bytes=10_000
    )
    engine.write(batch)
    storage.on_written()
    storage.append(ents(1, 2, 101))
    assert storage.cached_entries() == 10
    big = [Entry(1, i, data=b"x" * 3000) for i in range(102, 106)]
    storage.append(big)
    assert storage.cached_entries() == 3, "3 entries of 3016 bytes fit in 10,000 bytes"
    assert log_of(storage) == ents(1, 2, 101) + big
    storage.create_snapshot(104, VOTERS, b"")
    storage.compact(104)
    assert storage.cached_entries() == 1


def test_a_hole_in_the_log_is_reported_as_corruption_on_recovery() -> None:
    engine = MemoryEngine()
    batch = WriteBatch()
    storage = RaftLogStorage.bootstrap(engine, GROUP, VOTERS, batch)
    engine.write(batch)
    storage.on_written()
    storage.append(ents(1, 2, 20))
    hole = WriteBatch()
    hole.delete(RAFT_LOG, log_key(GROUP, 9))
    engine.write(hole)
    with pytest.raises(RaftLogCorruptionError):
        RaftLogStorage(engine, GROUP)


def test_a_crash_keeps_exactly_what_was_synced() -> None:
    engine = MemoryEngine()
    batch = WriteBatch()
    storage = RaftLogStorage.bootstrap(engine, GROUP, VOTERS, batch)
    engine.write(batch)
    engine.sync()
    storage.on_written()
    synced = MemoryStorage.bootstrap(VOTERS)
    steps = [
        ready(hard_state=HardState(2, 1, 1), entries=ents(2, 2, 8)),
        ready(hard_state=HardState(2, 1, 6)),
        ready(entries=ents(3, 5, 9, b"b"), hard_state=HardState(3, 3, 6)),
    ]
    for rd in steps:
        batch = WriteBatch()
        storage.stage_ready(rd, batch)
        engine.write(batch)
        engine.sync()
        storage.on_written()
        synced.persist_ready(rd)
    created = WriteBatch()
    storage.stage_create_snapshot(6, VOTERS, b"six", created)
    storage.stage_compact(5, created)
    engine.write(created)
    engine.sync()
    storage.on_written()
    synced.create_snapshot(6, VOTERS, b"six")
    synced.compact(5)
    # Written, not synced: a newer term and vote, a truncation, a snapshot install.
    storage.persist_ready(ready(hard_state=HardState(5, 2, 6), entries=ents(5, 7, 12, b"c")))
    storage.persist_ready(ready(snapshot=Snapshot(SnapshotMetadata(40, 5, VOTERS), b"x")))
    assert storage.hard_state.term == 5
    engine.crash()
    recovered = RaftLogStorage(engine, GROUP)
    assert describe(recovered) == describe(synced)
    assert recovered.hard_state == HardState(3, 3, 6)


_KILL_WRITER = textwrap.dedent(
    """
    import random, sys
    from shardkv.core.engine import WriteBatch
    from shardkv.core.raft import MemoryStorage
    from shardkv.storage import RocksDBEngine
    from shardkv.storage.raft_log import RaftLogStorage
    from tests.unit.test_raft_log_storage import GROUP, VOTERS, digest, random_ready

    engine = RocksDBEngine(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    batch = WriteBatch()
    storage = RaftLogStorage.bootstrap(engine, GROUP, VOTERS, batch)
    engine.write(batch)
    engine.sync()
    storage.on_written()
    model = MemoryStorage.bootstrap(VOTERS)
    for step in range(int(sys.argv[3])):
        rd = random_ready(rng, model)
        model.persist_ready(rd)
        # Announce the state before writing it: a kill can land right after the write.
        print("state", step, digest(model), flush=True)
        batch = WriteBatch()
        storage.stage_ready(rd, batch)
        engine.write(batch)
        storage.on_written()
        if step % 3 == 2:
            engine.sync()
            print("synced", step, model.hard_state.term, model.hard_state.vote, flush=True)
    print("done", flush=True)
    sys.stdin.read()  # wait for the kill
    """
)


def digest(storage: AnyStorage) -> str:
    """A short fingerprint of everything the core can read from ``storage``."""
    return hashlib.sha256(repr(describe(storage)).encode()).hexdigest()[:16]


def random_ready(rng: random.Random, model: MemoryStorage) -> Ready:
    """A plausible `Ready` for a storage equal to ``model``: new terms and votes,
    appends, truncations of the uncommitted suffix, commit advances."""
    hs = model.hard_state
    last = model.last_index()
    term = hs.term + (1 if rng.random() < 0.2 else 0)
    vote = hs.vote if term == hs.term else rng.randint(1, 3)
    start = rng.randint(max(hs.commit + 1, model.first_index()), last + 1)
    entries = ents(term, start, start + rng.randint(0, 5), b"%d:" % term)
    commit = min(max(hs.commit, start - 1), start - 1 + len(entries))
    return ready(hard_state=HardState(term, vote, commit), entries=entries)


def test_rocksdb_recovers_every_synced_write_after_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "src")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_WRITER, path, "11", "400"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=repo,
    )
    assert proc.stdout is not None
    states: dict[int, str] = {}
    synced = (-1, 0, 0)  # step, term, vote of the last sync reported before the kill
    kill_after_state = -1
    try:
        # Kill it mid-stream: once a sync past step 150 is reported, wait until the writer
        # announces the second Ready after it (so one unsynced Ready is written), then kill.
        for line in proc.stdout:
            words = line.split()
            if words[0] == "state":
                states[int(words[1])] = words[2]
                if int(words[1]) == kill_after_state:
                    break
            elif words[0] == "synced":
                synced = (int(words[1]), int(words[2]), int(words[3]))
                if synced[0] >= 150 and kill_after_state < 0:
                    kill_after_state = synced[0] + 2
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    for line in proc.stdout:
        words = line.split()
        if len(words) == 3 and words[0] == "state":
            states[int(words[1])] = words[2]
    assert proc.returncode == -9
    assert kill_after_state > 150, "the writer finished before the kill"
    engine = RocksDBEngine(path)
    try:
        recovered = RaftLogStorage(engine, GROUP)
        survivors = [step for step, d in states.items() if d == digest(recovered)]
        assert survivors, "what survives is always the state after one whole Ready"
        # Everything synced survives. A kill -9 is not a power loss: the Ready written after
        # the last sync is in the OS page cache and survives too (MemoryEngine.crash() is
        # the test for losing unsynced writes).
        assert max(survivors) >= kill_after_state - 1 > synced[0]
        hs = recovered.hard_state
        assert hs.term > synced[1] or (hs.term, hs.vote) == synced[1:], "term/vote went back"
    finally:
        engine.close()


# -- a 3-node cluster over RaftLogStorage ----------------------------------------------------


@dataclass
class ClusterNode:
    node_id: int
    engine: MemoryEngine = field(default_factory=MemoryEngine)
    storage: RaftLogStorage | None = None
    raw: RawNode | None = None
    kv: KVStateMachine | None = None
    durable_hard_state: HardState = field(default_factory=HardState)
    restarts: int = 0


class Cluster:
    """Three replicas of one group, each on its own `MemoryEngine`, driven like the node
    runtime drives them: persist in one batch, sync, send, apply (with the applied index
    in the apply batch), advance; snapshot and compact every few entries. Crashes lose
    what was not synced; restarts go through `RaftLogStorage` recovery."""

    SNAPSHOT_EVERY_ENTRIES = 6
    KEEP_ENTRIES = 2

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.nodes = {i: ClusterNode(i) for i in (1, 2, 3)}
        self.queue: list[Message] = []
        self.proposed: dict[int, tuple[int, bytes]] = {}
        self.acked: dict[bytes, bytes] = {}
        self.applied_at: dict[int, tuple[int, bytes]] = {}
        self.crashes = 0
        self.snapshots_installed = 0
        self.snapshots_created = 0
        self.counter = 0
        for node in self.nodes.values():
            batch = WriteBatch()
            RaftLogStorage.bootstrap(node.engine, GROUP, VOTERS, batch)
            stage_applied_index(GROUP, 1, batch)
            node.engine.write(batch)
            node.engine.sync()
            self.start(node)

    def start(self, node: ClusterNode) -> None:
        storage = RaftLogStorage(node.engine, GROUP, max_cached_entries=4)
        hs = storage.hard_state
        durable = node.durable_hard_state
        assert hs.term >= durable.term, "term went back"
        assert hs.term > durable.term or durable.vote == 0 or hs.vote == durable.vote
        applied = read_applied_index(node.engine, GROUP)
        config = Config(
            node_id=node.node_id,
            group_id=GROUP,
            election_timeout_ticks=10,
            heartbeat_interval_ticks=2,
            applied_index=applied,
            max_bytes_per_message=512,
        )
        rng = random.Random(self.seed * 1000 + node.node_id * 10 + node.restarts)
        node.storage = storage
        node.raw = RawNode(config, storage, rng)
        node.kv = KVStateMachine(node.engine)
        node.restarts += 1

    def crash(self, node: ClusterNode) -> None:
        node.engine.crash()
        node.storage = node.raw = node.kv = None
        self.queue = [m for m in self.queue if m.to != node.node_id]
        self.crashes += 1

    def leader(self) -> ClusterNode | None:
        for node in self.nodes.values():
            if node.raw is not None and node.raw.role is Role.LEADER:
                return node
        return None

    def propose(self) -> None:
        node = self.leader()
        if node is None:
            return
        assert node.raw is not None
        self.counter += 1
        data = b"k%d=v%d" % (self.counter, self.counter)
        try:
            proposed = node.raw.propose(data)
        except ProposalDroppedError:
            return
        self.proposed[proposed.first_index] = (proposed.term, data)

    def process(self, node: ClusterNode, *, crash_before_sync: bool) -> None:
        raw, storage, kv, engine = node.raw, node.storage, node.kv, node.engine
        assert raw is not None and storage is not None and kv is not None
        if not raw.has_ready():
            return
        rd = raw.ready()
        batch = WriteBatch()
        storage.stage_ready(rd, batch)
        if rd.snapshot is not None:
            stage_install(
                rd.snapshot.data, batch, group_id=GROUP, applied_index=rd.snapshot.metadata.index
            )
            self.snapshots_installed += 1
        self.queue.extend(rd.messages)
        engine.write(batch)
        storage.on_written()
        if crash_before_sync and rd.must_sync:
            self.crash(node)
            return
        if rd.must_sync:
            engine.sync()
            node.durable_hard_state = storage.hard_state
        self.queue.extend(rd.messages_after_persist)
        applied = rd.snapshot.metadata.index if rd.snapshot is not None else 0
        kv.begin_batch()
        for entry in rd.committed_entries:
            applied = entry.index
            first = self.applied_at.setdefault(entry.index, (entry.term, entry.data))
            assert first == (entry.term, entry.data), f"two entries applied at {entry.index}"
            if entry.type is EntryType.NORMAL and entry.data:
                key, value = entry.data.split(b"=")
                kv.execute([b"SET", key, value], 0)
                if self.proposed.get(entry.index) == (entry.term, entry.data):
                    self.acked[key] = value
        apply_batch = kv.finish_batch()
        if applied:
            stage_applied_index(GROUP, applied, apply_batch)
            engine.write(apply_batch)
        raw.advance(rd)
        if applied:
            self.maybe_snapshot(node, applied)

    def maybe_snapshot(self, node: ClusterNode, applied: int) -> None:
        storage, raw, engine = node.storage, node.raw, node.engine
        assert storage is not None and raw is not None
        if applied - storage.snapshot().metadata.index < self.SNAPSHOT_EVERY_ENTRIES:
            return
        view = engine.consistent_view()
        try:
            data = build_snapshot_data(view, GROUP)
        finally:
            view.close()
        batch = WriteBatch()
        storage.stage_create_snapshot(applied, raw.conf_state(), data, batch)
        compact_to = applied - self.KEEP_ENTRIES
        if compact_to >= storage.first_index():
            storage.stage_compact(compact_to, batch)
        engine.write(batch)
        storage.on_written()
        self.snapshots_created += 1

    def deliver(self, drop_probability: float) -> None:
        queue, self.queue = self.queue, []
        self.rng.shuffle(queue)
        for m in queue:
            target = self.nodes[m.to]
            sender = self.nodes[m.from_].raw
            if target.raw is None or self.rng.random() < drop_probability:
                if m.type is MessageType.SNAP and sender is not None:
                    sender.report_snapshot(m.to, success=False)
                continue
            target.raw.step(m)
            if m.type is MessageType.SNAP and sender is not None:
                sender.report_snapshot(m.to, success=True)

    def round(self, *, faults: bool, propose: bool = True) -> None:
        for node in self.nodes.values():
            if node.raw is not None:
                node.raw.tick()
        if propose:
            self.propose()
        for node in self.nodes.values():
            if node.raw is not None:
                crash = faults and self.rng.random() < 0.01
                self.process(node, crash_before_sync=crash)
        self.deliver(0.05 if faults else 0.0)

    def up(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.raw is not None]


def assert_converged(cluster: Cluster) -> None:
    """Every replica applied the same prefix, holds the same data, and every acknowledged
    write is in it."""
    applied = {read_applied_index(n.engine, GROUP) for n in cluster.nodes.values()}
    assert applied == {max(cluster.applied_at)}, applied
    contents = [n.engine.scan(DATA, b"", None, 10**6) for n in cluster.nodes.values()]
    assert contents[0] == contents[1] == contents[2]
    for node in cluster.nodes.values():
        assert node.kv is not None
        for key, value in cluster.acked.items():
            assert node.kv.execute([b"GET", key], 0) == value, (node.node_id, key)


def test_a_three_node_cluster_commits_survives_crashes_and_catches_up_by_snapshot() -> None:
    cluster = Cluster(seed=5)
    rng = random.Random(99)
    for _ in range(400):
        if rng.random() < 0.02 and len(cluster.up()) == 3:
            cluster.crash(rng.choice(cluster.up()))
        for node in cluster.nodes.values():
            if node.raw is None and rng.random() < 0.05:
                cluster.start(node)
        cluster.round(faults=True)
    for node in cluster.nodes.values():
        if node.raw is None:
            cluster.start(node)
    leader = None
    for _ in range(200):
        leader = cluster.leader()
        if leader is not None:
            break
        cluster.round(faults=False, propose=False)
    assert leader is not None
    # A replica that sleeps through several snapshots must be caught up by one.
    sleeper = next(n for n in cluster.nodes.values() if n is not leader)
    cluster.crash(sleeper)
    installed_before = cluster.snapshots_installed
    for _ in range(60):
        cluster.round(faults=False)
    cluster.start(sleeper)
    for _ in range(300):
        cluster.round(faults=False, propose=False)
    assert cluster.snapshots_installed > installed_before
    assert cluster.crashes >= 5 and cluster.snapshots_created >= 10
    assert len(cluster.acked) >= 100
    assert_converged(cluster)
    # Everyone crashes at once, losing whatever was not synced (e.g. the last apply
    # batches): the logs bring every acknowledged write back.
    for node in cluster.nodes.values():
        cluster.crash(node)
    for node in cluster.nodes.values():
        cluster.start(node)
    for _ in range(300):
        cluster.round(faults=False, propose=False)
    assert_converged(cluster)
