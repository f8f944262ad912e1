"""Shards sharing one engine: each KV state machine, and each snapshot, owns one
``KeyScope`` (a group id and its slot ranges) and never reads, counts, lists, flushes,
sweeps or replaces another group's records.

The machine tests run two machines with disjoint scopes over one in-memory store (the
``Harness`` of ``test_kv_harness``, whose invariant checks cover each machine's own scope);
the snapshot tests run on the in-memory engine and RocksDB, like ``test_kv_snapshot``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shardkv.core.cluster.slots import SLOT_COUNT, SLOTS_END, key_slot, slot_prefix
from shardkv.core.engine import DATA, EXPIRY, META, SUB, ReadView, WriteBatch
from shardkv.core.kv import KeyScope, KVStateMachine, codec
from shardkv.core.kv.scope import merge_scopes, split_scope
from shardkv.core.resp.replies import OK, ErrorReply
from shardkv.storage import Engine, MemoryEngine, RocksDBEngine
from shardkv.storage.kv_snapshot import (
    SnapshotMismatchError,
    build_and_close,
    build_snapshot_data,
    read_applied_index,
    stage_applied_index,
    stage_install,
    verify_snapshot_data,
)
from tests.unit.test_kv_harness import START_MS, Harness, MemoryView

#: Group 1 owns two ranges with group 2's range in the gap between them.
SCOPE_A = KeyScope(1, ((0, 4999), (10000, SLOT_COUNT - 1)))
SCOPE_B = KeyScope(2, ((5000, 9999),))


def keys_of(scope: KeyScope, count: int, prefix: str) -> list[bytes]:
    """The first ``count`` keys ``prefix:0``, ``prefix:1``, ... whose slot ``scope`` owns."""
    keys: list[bytes] = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}:{i}".encode()
        if scope.owns_key(key):
            keys.append(key)
        i += 1
    return keys


def tag_in(scope: KeyScope) -> bytes:
    """A hash tag whose slot ``scope`` owns."""
    return keys_of(scope, 1, "tag")[0]


def mset(h: Harness, keys: list[bytes]) -> None:
    assert h.run("MSET", *[part for key in keys for part in (key, b"v:" + key)]) == OK


def full_scan(h: Harness, *options: str | int) -> tuple[list[bytes], list[int]]:
    """Every key of a complete SCAN iteration, and every cursor returned."""
    cursor = b"0"
    keys: list[bytes] = []
    cursors: list[int] = []
    while True:
        reply = h.read("SCAN", cursor, *options)
        assert isinstance(reply, list)
        cursor, batch = reply  # type: ignore[assignment]
        assert isinstance(cursor, bytes) and isinstance(batch, list)
        keys.extend(batch)  # type: ignore[arg-type]
        cursors.append(int(cursor))
        if cursor == b"0":
            return keys, cursors


@pytest.fixture
def shards() -> tuple[Harness, Harness]:
    """Two machines over one store: A (group 1) and B (group 2), disjoint scopes."""
    view = MemoryView()
    return Harness(scope=SCOPE_A, view=view), Harness(scope=SCOPE_B, view=view)


# -- KeyScope ------------------------------------------------------------------------------------


class TestKeyScope:
    def test_whole_owns_every_slot_of_group_1_by_default(self) -> None:
        whole = KeyScope.whole()
        assert whole == KeyScope(1, ((0, SLOT_COUNT - 1),))
        assert whole.slot_count == SLOT_COUNT
        assert whole.owns(0) and whole.owns(SLOT_COUNT - 1)
        assert KeyScope.whole(7).group_id == 7

    def test_owns_exactly_its_inclusive_ranges(self) -> None:
        assert SCOPE_A.slot_count == 5000 + (SLOT_COUNT - 10000)
        assert [SCOPE_A.owns(s) for s in (0, 4999, 5000, 9999, 10000, 16383)] == [
            True,
            True,
            False,
            False,
            True,
            True,
        ]
        mask = SCOPE_A.slot_mask()
        assert len(mask) == SLOT_COUNT
        assert all(bool(mask[s]) == SCOPE_A.owns(s) for s in range(SLOT_COUNT))
        for key in (b"a", b"b", b"{user1}:x", b""):
            assert SCOPE_A.owns_key(key) == SCOPE_A.owns(key_slot(key)) != SCOPE_B.owns_key(key)

    def test_ranges_from_a_slot_clip_the_first_range_and_skip_gaps(self) -> None:
        assert SCOPE_A.ranges_from(0) == SCOPE_A.slot_ranges
        assert SCOPE_A.ranges_from(42) == ((42, 4999), (10000, 16383))
        assert SCOPE_A.ranges_from(5000) == ((10000, 16383),)
        assert SCOPE_A.ranges_from(16383) == ((16383, 16383),)
        assert SCOPE_B.ranges_from(10000) == ()

    def test_ranges_given_as_lists_compare_as_tuples(self) -> None:
        assert KeyScope(2, [[5000, 9999]]) == SCOPE_B  # type: ignore[arg-type]
        assert hash(KeyScope(2, [(5000, 9999)])) == hash(SCOPE_B)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("group_id", "ranges"),
        [
            (-1, ((0, 1),)),
            (2**32, ((0, 1),)),  # group ids are 4 bytes in the EXPIRY and META keys
            (1, ((5, 4),)),
            (1, ((0, SLOT_COUNT),)),
            (1, ((-1, 3),)),
            (1, ((0, 5), (5, 9))),
            (1, ((6, 9), (0, 5))),
        ],
    )
    def test_bad_scopes_are_refused(self, group_id: int, ranges: tuple[tuple[int, int]]) -> None:
        with pytest.raises(ValueError):
            KeyScope(group_id, ranges)

    def test_describe(self) -> None:
        assert SCOPE_A.describe() == "0-4999,10000-16383"
        assert KeyScope(3, ((7, 7), (9, 12))).describe() == "7,9-12"
        assert KeyScope(3, ()).describe() == "none"


# -- layout --------------------------------------------------------------------------------------


class TestLayout:
    def test_a_slot_range_is_one_data_key_range(self) -> None:
        assert codec.data_range(5, 9) == (slot_prefix(5), slot_prefix(10))
        assert codec.data_range(10000, SLOT_COUNT - 1) == (slot_prefix(10000), SLOTS_END)
        assert codec.data_ranges(SCOPE_A.slot_ranges) == (
            (slot_prefix(0), slot_prefix(5000)),
            (slot_prefix(10000), SLOTS_END),
        )

    def test_a_groups_expiry_entries_are_one_range_ordered_by_expire_at(self) -> None:
        dkey = codec.data_key(b"k")
        key = codec.expiry_key(2, 1234, dkey)
        assert key == struct.pack(">IQ", 2, 1234) + dkey
        assert codec.decode_expiry_key(key) == (2, 1234, dkey)
        start, end = codec.expiry_group_range(2)
        for group, expire_at in ((2, 1), (2, codec.MAX_EXPIRE_AT_MS), (1, 5), (3, 0)):
            inside = start <= codec.expiry_key(group, expire_at, dkey) < end
            assert inside == (group == 2)
        # The sweep's range end: everything of the group due at now, nothing later.
        sweep_end = codec.expiry_range_end(2, 1000)
        assert codec.expiry_key(2, 1000, b"\xff" * 9) < sweep_end <= codec.expiry_key(2, 1001, b"")
        assert codec.expiry_range_end(2, 10**30) <= end

    def test_counters_are_per_group(self) -> None:
        assert codec.key_count_key(2) == b"kv/key_count/\x00\x00\x00\x02"
        assert codec.expires_count_key(2) == b"kv/expires_count/\x00\x00\x00\x02"
        assert codec.key_count_key(1) != codec.key_count_key(2)


# -- machines sharing one store ------------------------------------------------------------------


class TestMachinesSharingAStore:
    def test_the_default_scope_is_every_slot_of_group_1(self) -> None:
        machine = KVStateMachine(MemoryView())
        assert machine.scope == KeyScope.whole(1)
        assert machine.owns_key(b"anything")

    def test_owns_key_follows_the_scope(self, shards: tuple[Harness, Harness]) -> None:
        a, b = shards
        assert a.machine.scope == SCOPE_A and b.machine.scope == SCOPE_B
        for key in keys_of(SCOPE_A, 5, "a") + keys_of(SCOPE_B, 5, "b"):
            assert a.machine.owns_key(key) != b.machine.owns_key(key)
            assert a.machine.owns_key(key) == SCOPE_A.owns(key_slot(key))

    def test_each_machine_counts_and_lists_only_its_own_keys(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        keys_a, keys_b = keys_of(SCOPE_A, 60, "a"), keys_of(SCOPE_B, 40, "b")
        mset(a, keys_a)
        mset(b, keys_b)
        a.run("EXPIRE", keys_a[0], 100)
        b.run("EXPIRE", keys_b[0], 100)
        b.run("EXPIRE", keys_b[1], 100)
        assert (a.run("DBSIZE"), a.machine.expires_count()) == (60, 1)
        assert (b.run("DBSIZE"), b.machine.expires_count()) == (40, 2)
        assert sorted(a.run("KEYS", "*")) == sorted(keys_a)  # type: ignore[type-var]
        assert sorted(b.run("KEYS", "*")) == sorted(keys_b)  # type: ignore[type-var]
        assert sorted(a.run("KEYS", "a:*")) == sorted(keys_a)  # type: ignore[type-var]
        assert a.run("KEYS", "b:*") == []

    def test_a_full_scan_with_a_small_count_returns_exactly_the_machines_keys(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        keys_a, keys_b = keys_of(SCOPE_A, 120, "a"), keys_of(SCOPE_B, 80, "b")
        mset(a, keys_a)
        mset(b, keys_b)
        for h, own in ((a, keys_a), (b, keys_b)):
            keys, cursors = full_scan(h, "COUNT", 3)
            assert sorted(keys) == sorted(own), "every own key exactly once, no other"
            assert len(cursors) > 10
            # Every cursor is an owned slot, except the final 0.
            assert cursors[-1] == 0
            assert all(h.scope.owns(cursor) for cursor in cursors[:-1])

    def test_a_scan_cursor_in_an_unowned_gap_continues_at_the_next_owned_slot(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        keys_a = keys_of(SCOPE_A, 200, "a")
        mset(a, keys_a)
        mset(b, keys_of(SCOPE_B, 50, "b"))
        after_gap = sorted(k for k in keys_a if key_slot(k) >= 10000)
        reply = a.read("SCAN", 5000, "COUNT", 10**6)  # 5000..9999 is B's
        assert isinstance(reply, list)
        assert reply[0] == b"0"
        assert sorted(reply[1]) == after_gap  # type: ignore[type-var]
        # From inside the gap with a small COUNT, the next cursor is past the gap too.
        reply = a.read("SCAN", 7777, "COUNT", 1)
        assert isinstance(reply, list)
        assert all(key_slot(k) >= 10000 for k in reply[1])  # type: ignore[arg-type]
        assert int(reply[0]) == 0 or int(reply[0]) > 10000  # type: ignore[arg-type]

    def test_a_scan_past_the_last_owned_slot_is_done(self, shards: tuple[Harness, Harness]) -> None:
        a, b = shards
        mset(a, keys_of(SCOPE_A, 50, "a"))
        mset(b, keys_of(SCOPE_B, 50, "b"))
        assert b.read("SCAN", 10000) == [b"0", []]
        assert b.read("SCAN", 16383, "COUNT", 1000) == [b"0", []]

    def test_a_pattern_pinned_to_a_slot_is_visited_only_by_its_owner(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        tag = tag_in(SCOPE_A)
        pinned = [b"{" + tag + b"}:" + str(i).encode() for i in range(5)]
        mset(a, pinned)
        mset(b, keys_of(SCOPE_B, 20, "b"))
        pattern = b"{" + tag + b"}:*"
        reply = a.read("SCAN", 0, "MATCH", pattern, "COUNT", 1)
        assert isinstance(reply, list)
        assert reply[0] == b"0" and sorted(reply[1]) == sorted(pinned)  # type: ignore[type-var]
        assert sorted(a.run("KEYS", pattern)) == sorted(pinned)  # type: ignore[type-var]
        # B does not own that slot: nothing, and the iteration is over at once.
        assert b.read("SCAN", 0, "MATCH", pattern) == [b"0", []]
        assert b.run("KEYS", pattern) == []

    def test_flushall_on_one_machine_leaves_the_other_intact(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        keys_a, keys_b = keys_of(SCOPE_A, 50, "a"), keys_of(SCOPE_B, 30, "b")
        mset(a, keys_a)
        mset(b, keys_b)
        a.run("PEXPIRE", keys_a[0], 10_000)
        b.run("PEXPIRE", keys_b[0], 10_000)
        b.run("PEXPIRE", keys_b[1], 10_000)
        b_index = b.scope_index()
        assert a.run("FLUSHALL") == OK
        assert (a.run("DBSIZE"), a.machine.expires_count()) == (0, 0)
        assert a.stored_keys() == set() and a.scope_index() == set()
        assert full_scan(a)[0] == []
        # B: keys, values, TTLs, counts and expiry entries all as before.
        assert (b.run("DBSIZE"), b.machine.expires_count()) == (30, 2)
        assert b.stored_keys() == set(keys_b)
        assert b.scope_index() == b_index
        assert b.run("GET", keys_b[2]) == b"v:" + keys_b[2]
        assert b.run("PTTL", keys_b[0]) == 10_000
        b.check_invariants()

    def test_flushall_deletes_one_range_per_slot_range_and_the_groups_expiry_prefix(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, _ = shards
        a.machine.begin_batch()
        assert a.machine.execute([b"FLUSHALL"], START_MS) == OK
        ops = a.machine.finish_batch().ops
        ranges = [(op.column, op.start, op.end) for op in ops if hasattr(op, "start")]
        assert ranges == [
            (DATA, slot_prefix(0), slot_prefix(5000)),
            (SUB, slot_prefix(0), slot_prefix(5000)),
            (DATA, slot_prefix(10000), SLOTS_END),
            (SUB, slot_prefix(10000), SLOTS_END),
            (EXPIRY, *codec.expiry_group_range(1)),
        ]

    def test_within_a_batch_flushall_hides_only_the_scopes_keys(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        # Routing is the caller's job, but the overlay must not pretend another group's
        # key is gone because this group flushed.
        a, b = shards
        key_a, key_b = keys_of(SCOPE_A, 1, "a")[0], keys_of(SCOPE_B, 1, "b")[0]
        a.run("SET", key_a, "1")
        b.run("SET", key_b, "2")
        a.machine.begin_batch()
        a.machine.execute([b"FLUSHALL"], START_MS)
        assert a.machine.execute([b"GET", key_a], START_MS) is None
        assert a.machine.execute([b"GET", key_b], START_MS) == b"2"
        a.machine.abort_batch()

    def test_the_sweep_of_one_machine_leaves_the_others_expired_keys(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        keys_a, keys_b = keys_of(SCOPE_A, 4, "a"), keys_of(SCOPE_B, 3, "b")
        for key in keys_a:
            a.run("SET", key, "v", "PX", 100)
        for key in keys_b:
            b.run("SET", key, "v", "PX", 100)
        for h in (a, b):
            h.advance(1000)
        assert a.sweep(max_keys=100) == 4
        assert a.stored_keys() == set() and a.run("DBSIZE") == 0
        # B's keys are expired (invisible) but still stored and counted until B sweeps.
        assert b.stored_keys() == set(keys_b)
        assert (b.run("DBSIZE"), b.machine.expires_count()) == (3, 3)
        assert b.run("GET", keys_b[0]) is None
        assert b.sweep(max_keys=100) == 3
        assert b.stored_keys() == set()

    def test_writes_of_each_machine_update_only_its_groups_counters(
        self, shards: tuple[Harness, Harness]
    ) -> None:
        a, b = shards
        a.run("SET", keys_of(SCOPE_A, 1, "a")[0], "v", "EX", 10)
        view = a.view
        assert view.get(META, codec.key_count_key(1)) == codec.encode_count(1)
        assert view.get(META, codec.expires_count_key(1)) == codec.encode_count(1)
        assert view.get(META, codec.key_count_key(2)) is None
        assert b.run("DBSIZE") == 0


# -- snapshots of one shard ----------------------------------------------------------------------

EngineFactory = Callable[[], Engine]


@pytest.fixture(params=["memory", "rocksdb"])
def new_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineFactory]:
    engines: list[Engine] = []

    def make() -> Engine:
        engine: Engine
        if request.param == "rocksdb":
            engine = RocksDBEngine(str(tmp_path / f"db{len(engines)}"))
        else:
            engine = MemoryEngine()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def write_shard(engine: Engine, scope: KeyScope, prefix: str, *, applied: int) -> None:
    """Keys of ``scope`` (some with TTLs, one already expired) as one batch of ``scope``'s
    machine, with the group's applied index."""
    machine = KVStateMachine(engine, scope=scope)
    machine.begin_batch()
    for i, key in enumerate(keys_of(scope, 40, prefix)):
        args = [b"SET", key, b"%s=%d" % (key, i)]
        if i % 3 == 0:
            args += [b"PX", b"%d" % (1000 + i)]
        reply = machine.execute(args, START_MS)
        assert not isinstance(reply, ErrorReply), (args, reply)
    batch = machine.finish_batch()
    stage_applied_index(scope.group_id, applied, batch)
    engine.write(batch)


def shard_records(view: ReadView, scope: KeyScope) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record ``scope``'s machine owns in ``view``."""
    meta_keys = (
        codec.expires_count_key(scope.group_id),
        codec.key_count_key(scope.group_id),
        codec.data_bytes_key(scope.group_id),
        codec.scope_key(scope.group_id),
    )
    return {
        DATA: [
            record
            for start, end in codec.data_ranges(scope.slot_ranges)
            for record in view.scan(DATA, start, end, 10**6)
        ],
        EXPIRY: view.scan(EXPIRY, *codec.expiry_group_range(scope.group_id), 10**6),
        META: [(k, v) for k in meta_keys if (v := view.get(META, k)) is not None],
    }


def build(engine: Engine, scope: KeyScope) -> bytes:
    return build_and_close(engine.consistent_view(), scope.group_id, scope)


def refused_install(data: bytes, error: type[Exception], **expected: object) -> None:
    batch = WriteBatch()
    with pytest.raises(error):
        stage_install(data, batch, **expected)  # type: ignore[arg-type]
    assert len(batch) == 0, "a refused snapshot stages nothing"


class TestShardSnapshots:
    def test_a_snapshot_holds_only_its_shards_records(self, new_engine: EngineFactory) -> None:
        engine = new_engine()
        write_shard(engine, SCOPE_A, "a", applied=10)
        write_shard(engine, SCOPE_B, "b", applied=20)
        data = build(engine, SCOPE_A)
        info = verify_snapshot_data(data)
        records = shard_records(engine, SCOPE_A)
        assert info.scope == SCOPE_A
        assert info.applied_index == 10
        assert (info.data_records, info.expiry_records, info.meta_records) == (
            len(records[DATA]),
            len(records[EXPIRY]),
            3,  # key count, expires count, data bytes (no scope record: never split)
        )
        assert info.data_records == 40 and info.expiry_records == 14

    def test_installing_one_shard_restores_it_and_leaves_the_other_group_untouched(
        self, new_engine: EngineFactory
    ) -> None:
        source, target = new_engine(), new_engine()
        write_shard(source, SCOPE_A, "a", applied=10)
        write_shard(source, SCOPE_B, "b", applied=20)
        # The target already holds group 2's own (different) data, and stale group 1 data
        # that the install must replace.
        write_shard(target, SCOPE_B, "other-b", applied=33)
        write_shard(target, SCOPE_A, "stale-a", applied=3)
        b_before = shard_records(target, SCOPE_B)
        data = build(source, SCOPE_A)
        batch = WriteBatch()
        info = stage_install(data, batch, group_id=1, applied_index=10, scope=SCOPE_A)
        target.write(batch)
        assert info.scope == SCOPE_A
        assert shard_records(target, SCOPE_A) == shard_records(source, SCOPE_A)
        assert shard_records(target, SCOPE_B) == b_before
        assert read_applied_index(target, 1) == 10
        assert read_applied_index(target, 2) == 33
        # What clients see through each group's machine.
        a, b = KVStateMachine(target, scope=SCOPE_A), KVStateMachine(target, scope=SCOPE_B)
        assert a.execute([b"DBSIZE"], START_MS) == 40
        assert b.execute([b"DBSIZE"], START_MS) == 40
        key = keys_of(SCOPE_A, 1, "a")[0]
        assert a.execute([b"PTTL", key], START_MS) == 1000
        assert sorted(a.execute([b"KEYS", b"*"], START_MS)) == sorted(  # type: ignore[type-var]
            keys_of(SCOPE_A, 40, "a")
        )
        assert sorted(b.execute([b"KEYS", b"*"], START_MS)) == sorted(  # type: ignore[type-var]
            keys_of(SCOPE_B, 40, "other-b")
        )

    def test_a_snapshot_installs_only_into_a_scope_of_its_group_that_covers_it(
        self, new_engine: EngineFactory
    ) -> None:
        engine = new_engine()
        write_shard(engine, SCOPE_B, "b", applied=5)
        data = build(engine, SCOPE_B)
        partly = KeyScope(2, ((5001, 16383),))
        refused_install(data, SnapshotMismatchError, scope=partly)
        refused_install(data, SnapshotMismatchError, scope=KeyScope(3, SCOPE_B.slot_ranges))
        with pytest.raises(SnapshotMismatchError, match="5001-16383"):
            stage_install(data, WriteBatch(), scope=partly)
        refused_install(data, ValueError, group_id=2, scope=KeyScope(3, SCOPE_B.slot_ranges))
        batch = WriteBatch()
        assert stage_install(data, batch, group_id=2, scope=SCOPE_B).scope == SCOPE_B

    def test_a_replica_that_missed_a_split_installs_the_smaller_snapshot_over_its_old_scope(
        self, new_engine: EngineFactory
    ) -> None:
        """A snapshot of fewer slots than the replica holds (its shard split meanwhile):
        the whole old scope is cleared, so no record of the slots split off is left."""
        engine = new_engine()
        write_shard(engine, SCOPE_B, "b", applied=5)
        data = build(engine, SCOPE_B)
        at_snapshot = shard_records(engine, SCOPE_B)
        wider = KeyScope(2, ((0, 16383),))
        write_shard(engine, KeyScope(2, ((0, 4999),)), "stale", applied=3)
        batch = WriteBatch()
        assert stage_install(data, batch, group_id=2, scope=wider).scope == SCOPE_B
        engine.write(batch)
        assert shard_records(engine, wider) == at_snapshot

    def test_the_default_scope_is_every_slot_of_the_group(self, new_engine: EngineFactory) -> None:
        engine = new_engine()
        write_shard(engine, KeyScope.whole(4), "w", applied=8)
        view = engine.consistent_view()
        try:
            assert build_snapshot_data(view, 4) == build_snapshot_data(view, 4, KeyScope.whole(4))
            with pytest.raises(ValueError):
                build_snapshot_data(view, 4, SCOPE_A)  # a scope of group 1 for group 4
        finally:
            view.close()
        assert verify_snapshot_data(build_and_close(engine.consistent_view(), 4)).scope == (
            KeyScope.whole(4)
        )


class TestSplit:
    def test_a_split_hands_the_slots_keys_ttls_and_counts_to_the_child_without_copying(
        self, new_engine: EngineFactory
    ) -> None:
        """After ``split_off`` the parent and the child machines, over the same records,
        each see exactly their slots' keys, TTLs, counts and bytes; no DATA record was
        written (the keys are where they were)."""
        engine = new_engine()
        whole = KeyScope(3, ((0, SLOT_COUNT - 1),))
        write_shard(engine, whole, "k", applied=7)
        data_before = shard_records(engine, whole)[DATA]
        bytes_before = KVStateMachine(engine, scope=whole).data_bytes()
        kept, moved = split_scope(whole, 9000, 4)

        parent = KVStateMachine(engine, scope=whole)
        parent.begin_batch()
        keys, expiring, moved_bytes = parent.split_off(moved)
        batch = parent.finish_batch()
        assert not any(op.column == DATA for op in batch.ops), "no DATA record is rewritten"
        batch.put(META, codec.key_count_key(4), codec.encode_count(keys))
        batch.put(META, codec.expires_count_key(4), codec.encode_count(expiring))
        batch.put(META, codec.data_bytes_key(4), codec.encode_count(moved_bytes))
        engine.write(batch)

        parent = parent.narrowed(kept)
        child = KVStateMachine(engine, scope=moved)
        assert shard_records(engine, whole)[DATA] == data_before
        for machine, scope in ((parent, kept), (child, moved)):
            records = shard_records(engine, scope)
            expected_keys = [k for k, _ in records[DATA]]
            assert machine.key_count() == len(expected_keys)
            assert machine.expires_count() == len(records[EXPIRY])
            indexed = {codec.decode_expiry_key(k)[2] for k, _ in records[EXPIRY]}
            assert indexed == {k for k, v in records[DATA] if codec.decode_header(v)[1]}
            for dkey, _ in records[DATA]:
                ttl = machine.execute([b"PTTL", codec.user_key(dkey)], START_MS)
                assert isinstance(ttl, int) and ttl != -2
        assert keys > 0 and expiring > 0
        assert parent.key_count() + child.key_count() == len(data_before)
        assert parent.data_bytes() + child.data_bytes() == bytes_before > 0

    def test_absorbing_a_split_off_child_restores_the_shard_exactly(
        self, new_engine: EngineFactory
    ) -> None:
        """A merge is a split undone: the survivor takes the retired child's expiry
        entries and counts back, and then holds exactly what it held before the split
        (same records, counts, bytes and TTLs); no DATA record is written."""
        engine = new_engine()
        whole = KeyScope(3, ((0, SLOT_COUNT - 1),))
        write_shard(engine, whole, "k", applied=7)
        before = shard_records(engine, whole)
        counts_before = KVStateMachine(engine, scope=whole)
        expected = (counts_before.key_count(), counts_before.expires_count())
        bytes_before = counts_before.data_bytes()
        kept, moved = split_scope(whole, 9000, 4)
        parent = KVStateMachine(engine, scope=whole)
        parent.begin_batch()
        keys, expiring, moved_bytes = parent.split_off(moved)
        batch = parent.finish_batch()
        batch.put(META, codec.key_count_key(4), codec.encode_count(keys))
        batch.put(META, codec.expires_count_key(4), codec.encode_count(expiring))
        batch.put(META, codec.data_bytes_key(4), codec.encode_count(moved_bytes))
        engine.write(batch)

        survivor = KVStateMachine(engine, scope=kept)
        survivor.begin_batch()
        assert survivor.absorb(moved) == (keys, expiring, moved_bytes)
        batch = survivor.finish_batch()
        assert not any(op.column == DATA for op in batch.ops), "no DATA record is rewritten"
        for key in (codec.key_count_key(4), codec.expires_count_key(4), codec.data_bytes_key(4)):
            batch.delete(META, key)
        engine.write(batch)

        merged = survivor.narrowed(merge_scopes(kept, moved))
        assert merged.scope == whole
        assert shard_records(engine, whole) == before
        assert (merged.key_count(), merged.expires_count()) == expected
        assert merged.data_bytes() == bytes_before
        assert KVStateMachine(engine, scope=moved).key_count() == 0  # the child's are gone

    def test_merged_scopes_join_touching_ranges_and_refuse_overlaps(self) -> None:
        left, right = KeyScope(1, ((0, 99),)), KeyScope(2, ((100, 199), (300, 399)))
        assert merge_scopes(left, right) == KeyScope(1, ((0, 199), (300, 399)))
        with pytest.raises(ValueError):
            merge_scopes(left, KeyScope(2, ((50, 150),)))

    def test_a_split_slot_must_cut_the_scope_in_two(self) -> None:
        scope = KeyScope(1, ((0, 99), (200, 299)))
        assert split_scope(scope, 250, 2) == (
            KeyScope(1, ((0, 99), (200, 249))),
            KeyScope(2, ((250, 299),)),
        )
        assert split_scope(scope, 150, 2) == (
            KeyScope(1, ((0, 99),)),
            KeyScope(2, ((200, 299),)),
        )
        for bad_slot in (0, 300, 16383):
            with pytest.raises(ValueError):
                split_scope(scope, bad_slot, 2)
        with pytest.raises(ValueError):
            split_scope(scope, 50, 1)  # into itself
