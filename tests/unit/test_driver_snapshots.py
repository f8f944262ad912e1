"""A shard snapshot that arrives before this node's map allows it waits; it never stops
the node.

After a merge, the survivor's snapshots hold the absorbed shard's slots too. A replica
whose node already follows the merge (the absorbed shard is merging into the survivor)
installs such a snapshot, and the absorbed shard's replica here retires. A node whose map
lags behind the merge must not install it (those slots are still another shard's here),
and it must not fail either: it drops the message, as if lost, and takes the snapshot
when the leader sends it again after its map caught up."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shardkv.core.cluster.shardmap import initial_layout
from shardkv.core.cluster.slots import key_slot
from shardkv.core.engine import META
from shardkv.core.kv import KeyScope
from shardkv.core.kv.codec import scope_key
from shardkv.core.kv.machine import KVStateMachine
from shardkv.core.kv.scope import encode_scope_record
from shardkv.core.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from shardkv.node.driver import NodeDriver
from shardkv.storage import MemoryEngine
from shardkv.storage.kv_snapshot import build_snapshot_data, stage_applied_index
from shardkv.storage.snapshot_files import SnapshotFiles
from tests.unit.test_driver_open import node_one

MEMBERS = {n: f"n{n}:7380" for n in (1, 2, 3)}
NOW_MS = 1_700_000_000_000
SNAPSHOT_INDEX = 100
#: One key in each half of the slots: shard 1 holds 0-8191, shard 2 8192-16383.
KEYS = {b"a": b"left", b"{user1000}": b"right"}


def survivor_snapshot() -> Snapshot:
    """Shard 1's snapshot taken after it absorbed shard 2: every slot, both keys."""
    assert sorted(key_slot(k) < 8192 for k in KEYS) == [False, True]
    engine = MemoryEngine()
    machine = KVStateMachine(engine, scope=KeyScope.whole(1))
    machine.begin_batch()
    for key, value in KEYS.items():
        machine.execute([b"SET", key, value], NOW_MS)
    batch = machine.finish_batch()
    stage_applied_index(1, SNAPSHOT_INDEX, batch)
    # The absorb set the survivor's epoch above both shards' (shard 2 is at epoch 2).
    batch.put(META, scope_key(1), encode_scope_record(3, ((0, 16383),), SNAPSHOT_INDEX - 1))
    engine.write(batch)
    data = build_snapshot_data(engine, 1, KeyScope.whole(1))
    return Snapshot(SnapshotMetadata(SNAPSHOT_INDEX, 5, ConfState.of((1, 2, 3))), data)


def deliver(
    driver: NodeDriver, engine: MemoryEngine, snapshot: Snapshot, files: SnapshotFiles | None
) -> None:
    """The snapshot from shard 1's leader (node 2), received into a file as the
    transport does (or inline, as the simulator sends it), then the node's cycles, as
    the runtime runs them."""
    if files is not None:
        ref = files.write("received-1", [snapshot.data[:10], snapshot.data[10:]])
        snapshot = replace(snapshot, data=ref.encode())
    driver.step([Message(MessageType.SNAP, 1, to=1, from_=2, term=5, snapshot=snapshot)])
    while (cycle := driver.collect()) is not None:
        engine.write(cycle.batch)
        driver.written(cycle)
        engine.sync()
        driver.synced(cycle)
        driver.take_messages()


def read(driver: NodeDriver, group_id: int, key: bytes) -> bytes | None:
    machine = driver.replica(group_id).machine
    assert isinstance(machine, KVStateMachine)
    machine.begin_batch()
    reply = machine.execute([b"GET", key], NOW_MS)
    machine.abort_batch()
    assert reply is None or isinstance(reply, bytes), reply
    return reply


@pytest.fixture(params=["inline", "file"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotFiles | None:
    return SnapshotFiles(tmp_path / "snapshots") if request.param == "file" else None


def test_a_survivor_snapshot_waits_while_the_map_does_not_show_the_merge(
    files: SnapshotFiles | None,
) -> None:
    layout = initial_layout(MEMBERS, 2, 3)
    assert layout.shards[2].slot_ranges == ((8192, 16383),)
    driver, engine = node_one(layout, MEMBERS, now_ms=NOW_MS, files=files)

    deliver(driver, engine, survivor_snapshot(), files)

    assert driver.failed is None, "the node must keep running"
    assert driver.snapshots_refused == 1
    assert driver.snapshots_installed == 0
    assert driver.replica(1).machine.scope.slot_ranges == ((0, 8191),)
    assert not driver.replica(2).retired, "shard 2 still serves its slots here"


def test_once_the_map_shows_the_merge_the_snapshot_is_installed_and_the_absorbed_replica_retires(
    files: SnapshotFiles | None,
) -> None:
    layout = initial_layout(MEMBERS, 2, 3)
    merging = layout.with_shards([replace(layout.shards[2], merge_into=1, epoch=2)])
    driver, engine = node_one(merging, MEMBERS, now_ms=NOW_MS, files=files)

    deliver(driver, engine, survivor_snapshot(), files)

    assert driver.failed is None
    assert driver.snapshots_refused == 0
    assert driver.snapshots_installed == 1
    assert driver.replica(2).retired, "its slots are the survivor's now"
    assert {key: read(driver, 1, key) for key in KEYS} == KEYS
