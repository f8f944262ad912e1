"""KV snapshots: what a Raft snapshot of the KV state machine carries, and the engines'
consistent views it is built from.

Built from one engine and installed into another, a snapshot reproduces every key, value,
TTL, count and the applied index, and nothing else in META is touched; corrupt data is
refused before anything is staged. Every test runs on the in-memory engine and RocksDB.
These tests use one group owning every slot; snapshots of one shard among several sharing
an engine are in ``test_kv_scope.py``.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shardkv.core.engine import DATA, EXPIRY, META, ReadView, WriteBatch
from shardkv.core.kv import KeyScope, codec
from shardkv.core.kv.machine import KVStateMachine
from shardkv.core.resp.replies import ErrorReply
from shardkv.storage import Engine, MemoryEngine, RocksDBEngine
from shardkv.storage.kv_snapshot import (
    KV_META_END,
    KV_META_START,
    MAGIC,
    CorruptSnapshotError,
    SnapshotInfo,
    SnapshotMismatchError,
    applied_index_key,
    build_snapshot_data,
    iter_snapshot_data,
    read_applied_index,
    stage_applied_index,
    stage_install,
    verify_snapshot_data,
)

GROUP = 3
OTHER_GROUP = 4
SCOPE = KeyScope.whole(GROUP)
NOW_MS = 1_700_000_000_000

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


def run(engine: Engine, commands: list[list[bytes]], *, applied: int | None = None) -> None:
    """Apply ``commands`` as one state-machine batch (plus the applied index) to ``engine``."""
    machine = KVStateMachine(engine, scope=SCOPE)
    machine.begin_batch()
    for args in commands:
        reply = machine.execute(args, NOW_MS)
        assert not isinstance(reply, ErrorReply), (args, reply)
    batch = machine.finish_batch()
    if applied is not None:
        stage_applied_index(GROUP, applied, batch)
    engine.write(batch)


def populate(engine: Engine, seed: int, *, keys: int = 300, applied: int = 42) -> None:
    """Keys in many slots, some with TTLs (relative and absolute), some deleted or
    persisted again, binary values included."""
    rng = random.Random(seed)
    commands: list[list[bytes]] = []
    for i in range(keys):
        key = b"key:%d:%d" % (seed, i)
        value = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        roll = rng.random()
        if roll < 0.3:
            commands.append([b"SET", key, value, b"PX", b"%d" % rng.randint(1000, 10**7)])
        elif roll < 0.4:
            commands.append([b"SET", key, value, b"EXAT", b"%d" % (NOW_MS // 1000 + 3600)])
        else:
            commands.append([b"SET", key, value])
    commands.append([b"SET", b"{tag}a", b"1", b"EX", b"100"])
    commands.append([b"SET", b"{tag}b", b"2"])
    commands += [[b"DEL", b"key:%d:%d" % (seed, i)] for i in range(0, keys, 7)]
    commands += [[b"PERSIST", b"key:%d:%d" % (seed, i)] for i in range(1, keys, 5)]
    run(engine, commands, applied=applied)


def kv_records(view: ReadView) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record the KV state machine owns."""
    return {
        DATA: view.scan(DATA, b"", None, 10**6),
        EXPIRY: view.scan(EXPIRY, b"", None, 10**6),
        META: view.scan(META, KV_META_START, KV_META_END, 10**6),
    }


def observed(engine: Engine) -> tuple[object, ...]:
    """What clients can see: DBSIZE, and per key its value and remaining TTL."""
    machine = KVStateMachine(engine, scope=SCOPE)
    keys = [codec.user_key(k) for k, _ in engine.scan(DATA, b"", None, 10**6)]
    return (
        machine.execute([b"DBSIZE"], NOW_MS),
        machine.expires_count(),
        [
            (k, machine.execute([b"GET", k], NOW_MS), machine.execute([b"PTTL", k], NOW_MS))
            for k in keys
        ],
    )


def build(engine: Engine) -> bytes:
    view = engine.consistent_view()
    try:
        return build_snapshot_data(view, GROUP)
    finally:
        view.close()


def install(engine: Engine, data: bytes, **expected: int) -> SnapshotInfo:
    batch = WriteBatch()
    info = stage_install(data, batch, **expected)
    engine.write(batch)
    return info


# -- round trip ------------------------------------------------------------------------------


def test_a_snapshot_reproduces_every_key_ttl_and_count_in_another_engine(
    new_engine: EngineFactory,
) -> None:
    source, target = new_engine(), new_engine()
    populate(source, seed=1)
    populate(target, seed=2, keys=50, applied=7)  # state the install must replace
    other = WriteBatch()
    stage_applied_index(OTHER_GROUP, 99, other)
    target.write(other)
    data = build(source)
    info = install(target, data, group_id=GROUP, applied_index=42)
    assert kv_records(target) == kv_records(source)
    assert observed(target) == observed(source)
    assert read_applied_index(target, GROUP) == 42
    assert read_applied_index(target, OTHER_GROUP) == 99, "other groups' META is untouched"
    records = kv_records(source)
    assert info == SnapshotInfo(
        GROUP, 42, len(records[DATA]), len(records[EXPIRY]), len(records[META])
    )
    assert info.expiry_records > 50 and info.data_records > 200


def test_snapshots_travel_between_engine_kinds(tmp_path: Path) -> None:
    memory, rocks = MemoryEngine(), RocksDBEngine(str(tmp_path / "db"))
    try:
        populate(memory, seed=3)
        install(rocks, build(memory))
        assert build(rocks) == build(memory)
        populate(rocks, seed=4)
        install(memory, build(rocks))
        assert kv_records(memory) == kv_records(rocks)
    finally:
        rocks.close()


def test_an_empty_snapshot_empties_the_target(new_engine: EngineFactory) -> None:
    source, target = new_engine(), new_engine()
    populate(target, seed=5)
    info = install(target, build(source))
    assert info == SnapshotInfo(GROUP, 0, 0, 0, 0)
    assert kv_records(target) == {DATA: [], EXPIRY: [], META: []}
    assert KVStateMachine(target, scope=SCOPE).execute([b"DBSIZE"], NOW_MS) == 0


def test_the_stream_is_produced_page_by_page_and_concatenates_to_the_snapshot(
    new_engine: EngineFactory,
) -> None:
    engine = new_engine()
    populate(engine, seed=6)
    view = engine.consistent_view()
    try:
        pieces = list(iter_snapshot_data(view, GROUP, page_entries=16))
        whole = build_snapshot_data(view, GROUP)
    finally:
        view.close()
    assert b"".join(pieces) == whole
    records = sum(len(v) for v in kv_records(engine).values())
    assert len(pieces) >= records // 16, "no piece holds more than one page"


def test_the_applied_index_is_zero_until_recorded(new_engine: EngineFactory) -> None:
    engine = new_engine()
    assert read_applied_index(engine, GROUP) == 0
    batch = WriteBatch()
    stage_applied_index(GROUP, 2**40 + 5, batch)
    engine.write(batch)
    assert read_applied_index(engine, GROUP) == 2**40 + 5
    assert read_applied_index(engine, OTHER_GROUP) == 0
    assert engine.get(META, applied_index_key(GROUP)) == struct.pack(">Q", 2**40 + 5)


# -- consistent views ---------------------------------------------------------------------------


def test_a_consistent_view_ignores_later_writes_in_every_column(
    new_engine: EngineFactory,
) -> None:
    engine = new_engine()
    populate(engine, seed=7, applied=10)
    before = build(engine)
    view = engine.consistent_view()
    records = kv_records(view)
    run(engine, [[b"FLUSHALL"], [b"SET", b"new", b"1", b"PX", b"5000"]], applied=11)
    wipe = WriteBatch()
    wipe.delete_range(DATA, b"", codec.DATA_END)
    engine.write(wipe)
    assert kv_records(view) == records
    assert view.get(META, applied_index_key(GROUP)) == struct.pack(">Q", 10)
    assert view.get(DATA, codec.data_key(b"new")) is None
    assert build_snapshot_data(view, GROUP) == before
    view.close()
    assert read_applied_index(engine, GROUP) == 11
    assert engine.scan(DATA, b"", None, 10) == []


def test_a_closed_view_refuses_reads(new_engine: EngineFactory) -> None:
    view = new_engine().consistent_view()
    view.close()
    view.close()
    with pytest.raises(Exception, match="closed"):
        view.get(DATA, b"k")


# -- corruption and mismatches -----------------------------------------------------------------


def frame(
    records: list[tuple[int, bytes, bytes]],
    *,
    applied: int = 1,
    magic: bytes = MAGIC,
    version: int = 2,
    count: int | None = None,
    ranges: list[tuple[int, int]] | None = None,
    range_count: int | None = None,
) -> bytes:
    """The format, written out independently of the module, with a valid CRC."""
    ranges = [(0, 16383)] if ranges is None else ranges
    n = len(ranges) if range_count is None else range_count
    body = struct.pack(">4sBQQH", magic, version, GROUP, applied, n)
    body += b"".join(struct.pack(">HH", first, last) for first, last in ranges)
    for tag, key, value in records:
        body += struct.pack(">BII", tag, len(key), len(value)) + key + value
    body += struct.pack(">BQ", 0xFF, len(records) if count is None else count)
    return body + struct.pack(">I", zlib.crc32(body))


def refused(data: bytes, error: type[Exception] = CorruptSnapshotError, **expected: int) -> None:
    batch = WriteBatch()
    with pytest.raises(error):
        stage_install(data, batch, **expected)
    assert len(batch) == 0, "a refused snapshot stages nothing"


def test_the_independent_framing_is_what_the_module_reads() -> None:
    group = struct.pack(">I", GROUP)
    data = frame(
        [
            (1, b"\x00\x01k", b"v"),
            (2, group + struct.pack(">Q", NOW_MS) + b"\x00\x01k", b""),
            (3, b"kv/expires_count/" + group, b"\x00" * 7 + b"\x01"),
            (3, b"kv/key_count/" + group, b"\x00" * 7 + b"\x01"),
        ],
        applied=5,
    )
    assert verify_snapshot_data(data) == SnapshotInfo(GROUP, 5, 1, 1, 2, ((0, 16383),))
    partial = frame([(1, b"\x01\x00k", b"v")], ranges=[(10, 20), (256, 300)])
    info = verify_snapshot_data(partial)
    assert info.slot_ranges == ((10, 20), (256, 300))
    assert info.scope == KeyScope(GROUP, ((10, 20), (256, 300)))


def test_any_flipped_bit_truncation_or_trailing_byte_is_refused() -> None:
    engine = MemoryEngine()
    populate(engine, seed=8, keys=20)
    data = build(engine)
    rng = random.Random(8)
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 1 << rng.randrange(8)
        refused(bytes(corrupt))
    for length in range(len(data)):
        refused(data[:length])
    refused(data + b"\x00")
    assert verify_snapshot_data(data).group_id == GROUP


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("bad magic", frame([], magic=b"SKVX")),
        ("unknown version", frame([], version=3)),
        ("version 1, before scopes", frame([], version=1)),
        ("count too high", frame([(1, b"\x00\x01k", b"v")], count=2)),
        ("count too low", frame([(1, b"\x00\x01k", b"v")], count=0)),
        ("unknown tag", frame([(9, b"\x00\x01k", b"v")])),
        ("keys out of order", frame([(1, b"\x00\x02k", b"v"), (1, b"\x00\x01k", b"v")])),
        ("duplicate key", frame([(1, b"\x00\x01k", b"v"), (1, b"\x00\x01k", b"w")])),
        ("columns out of order", frame([(2, b"\x00" * 8, b""), (1, b"\x00\x01k", b"v")])),
        ("data key beyond the slots", frame([(1, b"\x40\x00k", b"v")])),
        ("meta key not the KV's", frame([(3, b"raft/applied/x", b"v")])),
        ("node-wide counter of version 1", frame([(3, b"kv/key_count", b"\x00" * 8)])),
        ("counter of another group", frame([(3, b"kv/key_count/\x00\x00\x00\x04", b"v")])),
        ("expiry entry of another group", frame([(2, b"\x00\x00\x00\x04" + b"\x00" * 8, b"")])),
        ("data key outside the slot ranges", frame([(1, b"\x00\x05k", b"v")], ranges=[(6, 9)])),
        (
            "data key between two slot ranges",
            frame([(1, b"\x00\x05k", b"v")], ranges=[(1, 4), (6, 9)]),
        ),
        ("overlapping slot ranges", frame([], ranges=[(1, 5), (5, 9)])),
        ("unsorted slot ranges", frame([], ranges=[(6, 9), (1, 4)])),
        ("slot out of bounds", frame([], ranges=[(0, 16384)])),
        ("range count overrunning the data", frame([], range_count=1000)),
    ],
)
def test_well_checksummed_but_malformed_snapshots_are_refused(case: str, data: bytes) -> None:
    refused(data)


def test_a_snapshot_of_another_group_or_index_is_refused(new_engine: EngineFactory) -> None:
    engine = new_engine()
    populate(engine, seed=9, keys=10, applied=12)
    data = build(engine)
    refused(data, SnapshotMismatchError, group_id=OTHER_GROUP)
    refused(data, SnapshotMismatchError, applied_index=13)
    assert install(engine, data, group_id=GROUP, applied_index=12).applied_index == 12
