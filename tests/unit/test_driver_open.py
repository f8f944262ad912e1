"""What a node's driver starts from its disk: only the shards of the cluster's first
layout begin their Raft log on the node; a shard placed on it later waits for its
leader's snapshot, even when the node restarts before that snapshot arrived."""

from __future__ import annotations

import random
from dataclasses import replace

from shardkv.core.cluster.placement import SHARD_MAP_KEY
from shardkv.core.cluster.shardmap import ShardMap, initial_layout
from shardkv.core.engine import META, WriteBatch
from shardkv.node.driver import ClusterSettings, NodeDriver
from shardkv.storage import MemoryEngine
from shardkv.storage.raft_log import RaftLogStorage
from shardkv.storage.snapshot_files import SnapshotFiles

MEMBERS = {n: f"n{n}:7380" for n in (1, 2, 3, 4)}


def node_one(
    shard_map: ShardMap,
    members: dict[int, str],
    *,
    now_ms: int = 0,
    files: SnapshotFiles | None = None,
) -> tuple[NodeDriver, MemoryEngine]:
    """Node 1's driver, opened on a data dir that holds only ``shard_map`` (the map as the
    node last applied it), with a fixed clock and seed."""
    engine = MemoryEngine()
    batch = WriteBatch()
    batch.put(META, SHARD_MAP_KEY, shard_map.encode())
    engine.write(batch)
    driver = NodeDriver(
        ClusterSettings(node_id=1, initial_members=members, client_address="n1:6001"),
        engine,
        clock_ms=lambda: now_ms,
        monotonic_s=lambda: 0.0,
        rng=random.Random(1),
        snapshot_files=files,
    )
    driver.open()
    return driver, engine


def test_a_shard_moved_here_is_not_started_from_this_nodes_own_data() -> None:
    first = initial_layout(MEMBERS, 4, 3)
    assert 1 not in first.shards[2].replicas
    # The map as node 1 last applied it: shard 2 was moved onto it (epoch 2), and the
    # node stopped before the shard's snapshot reached it.
    moved = first.with_shards([replace(first.shards[2], replicas=(1, 3, 4), epoch=2)])
    _driver, engine = node_one(moved, MEMBERS)
    assert RaftLogStorage(engine, 2).last_index() == 0, "shard 2 must wait for a snapshot"
    assert RaftLogStorage(engine, 1).last_index() >= 1, "a first-layout shard starts here"
