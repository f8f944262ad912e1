"""Streaming snapshots: a shard's snapshot goes from the leader's engine to a follower's
through files and chunks, and no step holds it whole.

The pipeline under test is the one a real node runs, with RocksDB and without sockets:
`ShardSnapshots.build` (pages -> file) -> the transport's `iter_chunks` (file -> chunks)
-> `SnapshotAssembler` with a snapshot directory (chunks -> file) -> `Replica`'s install
(file -> pages into the engine, `install_in_pages`). A crash in the middle of an install
is finished at the next start; a damaged file changes nothing.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardkv.core.cluster.slots import key_slot, slot_of_prefixed
from shardkv.core.engine import DATA, META, WriteBatch
from shardkv.core.kv import KeyScope
from shardkv.core.kv.machine import KVStateMachine
from shardkv.core.raft.types import (
    ConfState,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from shardkv.node.shard_snapshots import ShardSnapshots
from shardkv.storage import RocksDBEngine
from shardkv.storage.kv_snapshot import (
    CorruptSnapshotError,
    pending_installs,
    read_applied_index,
    stage_applied_index,
)
from shardkv.storage.raft_log import RaftLogStorage
from shardkv.storage.snapshot_files import SnapshotFileError, SnapshotFiles, SnapshotRef
from shardkv.transport.snapshot import SnapshotAssembler, iter_chunks

GROUP = 5
# The shard owns half the slots; the keys of the other half belong to another group.
SCOPE = KeyScope(GROUP, ((0, 8191),))
OTHER = KeyScope(6, ((8192, 16383),))
NOW_MS = 1_700_000_000_000
APPLIED = 777
CHUNK_BYTES = 64 << 10


def fill(engine: RocksDBEngine, scope: KeyScope, keys: int, value_bytes: int, tag: str) -> None:
    """``keys`` keys of ``scope``'s slots (others are skipped), some with TTLs."""
    machine = KVStateMachine(engine, scope=scope)
    machine.begin_batch()
    owned = scope.slot_mask()
    written = i = 0
    while written < keys:
        key = b"%s:%d" % (tag.encode(), i)
        i += 1
        if not owned[key_slot(key)]:
            continue
        value = (b"%s=%d;" % (tag.encode(), i) * value_bytes)[:value_bytes]
        args = [b"SET", key, value] + ([b"EX", b"3600"] if i % 5 == 0 else [])
        machine.execute(args, NOW_MS)
        written += 1
    batch = machine.finish_batch()
    stage_applied_index(scope.group_id, APPLIED, batch)
    engine.write(batch)


def records(engine: RocksDBEngine) -> list[tuple[bytes, bytes]]:
    return engine.scan(DATA, b"", None, 10**7)


def send(snapshot_data: bytes, src: SnapshotFiles, dst: SnapshotFiles, to: int = 2) -> Message:
    """What the transport does: chunks out of one node's files into another's."""
    message = Message(
        type=MessageType.SNAP,
        to=to,
        from_=1,
        group_id=GROUP,
        term=3,
        snapshot=Snapshot(SnapshotMetadata(APPLIED, 3, ConfState.of([1, 2, 3])), snapshot_data),
    )
    assembler = SnapshotAssembler(to, 1 << 40, dst)
    try:
        for chunk in iter_chunks(message, CHUNK_BYTES, src):
            assembler.add(chunk)
        return assembler.message()
    finally:
        assembler.close()


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[RocksDBEngine, RocksDBEngine]]:
    leader = RocksDBEngine(str(tmp_path / "leader-db"))
    follower = RocksDBEngine(str(tmp_path / "follower-db"))
    yield leader, follower
    leader.close()
    follower.close()


def install(
    follower: RocksDBEngine, snapshots: ShardSnapshots, snapshot: Snapshot, **kwargs: object
) -> None:
    """As `Replica.collect` does with a Ready's snapshot: the log's metadata staged first,
    pages written through ``write_now``, the batch written last."""
    storage = RaftLogStorage(follower, GROUP)
    batch = WriteBatch()
    storage.stage_apply_snapshot(snapshot, batch)
    write_now = kwargs.get("write_now", follower.write)
    snapshots.stage_install(snapshot, SCOPE, batch, write_now)  # type: ignore[arg-type]
    follower.write(batch)
    storage.on_written()
    follower.sync()


def test_a_shard_snapshot_travels_as_files_and_installs_only_its_own_slots(
    engines: tuple[RocksDBEngine, RocksDBEngine], tmp_path: Path
) -> None:
    leader, follower = engines
    fill(leader, SCOPE, 3000, 200, "a")
    fill(follower, SCOPE, 500, 50, "stale")  # replaced by the snapshot
    fill(follower, OTHER, 400, 50, "other")  # another shard in the same engine: kept
    other_before = [r for r in records(follower) if not SCOPE.slot_mask()[_slot(r[0])]]
    leader_files = SnapshotFiles(tmp_path / "leader-snaps")
    follower_files = SnapshotFiles(tmp_path / "follower-snaps")

    data = ShardSnapshots(leader_files).build(leader.consistent_view(), SCOPE)
    ref = SnapshotRef.decode(data)
    assert len(data) < 100 and ref.size > 3000 * 200  # the log holds a reference, not data

    received = send(data, leader_files, follower_files)
    assert received.snapshot is not None
    received_ref = SnapshotRef.decode(received.snapshot.data)
    assert (received_ref.size, received_ref.crc32) == (ref.size, ref.crc32)
    assert received_ref.name != ref.name and follower_files.exists(received_ref)

    install(follower, ShardSnapshots(follower_files), received.snapshot)
    mine = [r for r in records(follower) if SCOPE.slot_mask()[_slot(r[0])]]
    assert mine == records(leader)
    assert [r for r in records(follower) if r not in mine] == other_before
    assert KVStateMachine(follower, scope=SCOPE).key_count() == 3000
    assert read_applied_index(follower, GROUP) == APPLIED
    assert RaftLogStorage(follower, GROUP).snapshot_index == APPLIED
    assert pending_installs(follower) == []


def test_no_step_holds_the_whole_snapshot_in_memory(
    engines: tuple[RocksDBEngine, RocksDBEngine], tmp_path: Path
) -> None:
    leader, follower = engines
    fill(leader, SCOPE, 4000, 4000, "big")  # a 16 MB shard
    leader_files = SnapshotFiles(tmp_path / "leader-snaps")
    follower_files = SnapshotFiles(tmp_path / "follower-snaps")
    snapshot_bytes = 4000 * 4000

    tracemalloc.start()
    try:
        data = ShardSnapshots(leader_files).build(leader.consistent_view(), SCOPE)
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        received = send(data, leader_files, follower_files)
        _, transfer_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert received.snapshot is not None
        install(follower, ShardSnapshots(follower_files), received.snapshot)
        _, install_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert SnapshotRef.decode(data).size > snapshot_bytes
    # Python allocations while building, sending and installing: a page, a chunk or a
    # batch of records, never the shard (4 MB is a quarter of it).
    for step, peak in (("build", build_peak), ("send", transfer_peak), ("install", install_peak)):
        assert peak < snapshot_bytes // 4, f"{step} peaked at {peak} bytes"
    assert KVStateMachine(follower, scope=SCOPE).key_count() == 4000


class Crash(Exception):
    pass


def test_a_crash_in_the_middle_of_an_install_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    leader = RocksDBEngine(str(tmp_path / "leader-db"))
    fill(leader, SCOPE, 20_000, 20, "k")
    files = SnapshotFiles(tmp_path / "snaps")
    data = ShardSnapshots(files).build(leader.consistent_view(), SCOPE)
    expected = records(leader)
    leader.close()

    path = str(tmp_path / "follower-db")
    follower = RocksDBEngine(path)
    fill(follower, SCOPE, 100, 10, "old")
    batch = WriteBatch()
    RaftLogStorage.bootstrap(follower, GROUP, ConfState.of([1, 2, 3]), batch, index=1, data=b"")
    follower.write(batch)
    RaftLogStorage(follower, GROUP).stage_hard_state(HardState(term=2, vote=1, commit=1), batch)
    follower.write(batch)
    follower.sync()
    snapshot = Snapshot(SnapshotMetadata(APPLIED, 3, ConfState.of([1, 2, 3])), data)
    pages = 0

    def dies_after_three_pages(b: WriteBatch) -> None:
        nonlocal pages
        follower.write(b)
        pages += 1
        if pages == 4:  # the marker batch, then three pages of records
            follower.sync()
            raise Crash

    with pytest.raises(Crash):
        install(follower, ShardSnapshots(files), snapshot, write_now=dies_after_three_pages)
    assert [g for g, _ in pending_installs(follower)] == [GROUP]
    assert 0 < len(records(follower)) < len(expected)  # neither the old state nor the new
    follower.close()

    follower = RocksDBEngine(path)
    try:
        assert ShardSnapshots(files).finish_interrupted_installs(follower) == [GROUP]
        assert records(follower) == expected
        assert pending_installs(follower) == []
        storage = RaftLogStorage(follower, GROUP)
        assert storage.snapshot_index == APPLIED
        assert storage.snapshot().data == data
        assert storage.hard_state.commit == APPLIED and storage.hard_state.term == 3
        assert read_applied_index(follower, GROUP) == APPLIED
    finally:
        follower.close()


def test_a_damaged_snapshot_file_is_refused_before_anything_changes(
    engines: tuple[RocksDBEngine, RocksDBEngine], tmp_path: Path
) -> None:
    leader, follower = engines
    fill(leader, SCOPE, 1000, 100, "a")
    fill(follower, SCOPE, 10, 10, "mine")
    files = SnapshotFiles(tmp_path / "snaps")
    data = ShardSnapshots(files).build(leader.consistent_view(), SCOPE)
    ref = SnapshotRef.decode(data)
    path = files.directory / ref.name
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    before = follower.scan(DATA, b"", None, 10**6), follower.scan(META, b"", None, 10**6)
    snapshot = Snapshot(SnapshotMetadata(APPLIED, 3, ConfState.of([1, 2, 3])), data)
    with pytest.raises((CorruptSnapshotError, SnapshotFileError)):
        install(follower, ShardSnapshots(files), snapshot)
    assert (follower.scan(DATA, b"", None, 10**6), follower.scan(META, b"", None, 10**6)) == (
        before
    )


def test_replaced_and_orphaned_files_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path / "snaps")
    snapshots = ShardSnapshots(files)
    first = files.write("g5", [b"one"])
    second = files.write("g5", [b"two"])
    orphan = files.write("r5", [b"refused by raft"])
    snapshots.track(GROUP, first.encode())
    snapshots.recorded(GROUP, second.encode())
    assert files.exists(first)  # the log that names it may come back until a sync...
    snapshots.synced()  # ...that started after the write: the one under way may not cover it
    assert files.exists(first)
    snapshots.synced()
    assert not files.exists(first) and files.exists(second)
    assert snapshots.remove_unreferenced(min_age_s=3600) == 0  # young: maybe in flight
    assert snapshots.remove_unreferenced(min_age_s=0) == 1
    assert files.exists(second) and not files.exists(orphan)


def _slot(data_key: bytes) -> int:
    return slot_of_prefixed(data_key)
