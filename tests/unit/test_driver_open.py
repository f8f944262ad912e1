"""What a node's driver starts from its disk: only the shards of the cluster's first
layout begin their Raft log on the node; a shard placed on it later waits for its
leader's snapshot, even when the node restarts before that snapshot arrived."""

from __future__ import annotations

import random
from dataclasses import replace

from shardkv.core.cluster.placement import SHARD_MAP_KEY
from shardkv.core.cluster.shardmap import initial_layout
from shardkv.core.engine import META, WriteBatch
from shardkv.node.driver import ClusterSettings, NodeDriver
from shardkv.storage import MemoryEngine
from shardkv.storage.raft_log import RaftLogStorage

MEMBERS = {n: f"n{n}:7380" for n in (1, 2, 3, 4)}


def test_a_shard_moved_here_is_not_started_from_this_nodes_own_data() -> None:
    first = initial_layout(MEMBERS, 4, 3)
    assert 1 not in first.shards[2].replicas
    # The map as node 1 last applied it: shard 2 was moved onto it (epoch 2), and the
    # node stopped before the shard's snapshot reached it.
    moved = first.with_shards([replace(first.shards[2], replicas=(1, 3, 4), epoch=2)])
    engine = MemoryEngine()
    batch = WriteBatch()
    batch.put(META, SHARD_MAP_KEY, moved.encode())
    engine.write(batch)
    driver = NodeDriver(
        ClusterSettings(node_id=1, initial_members=MEMBERS, client_address="n1:6001"),
        engine,
        clock_ms=lambda: 0,
        monotonic_s=lambda: 0.0,
        rng=random.Random(1),
    )
    driver.open()
    assert RaftLogStorage(engine, 2).last_index() == 0, "shard 2 must wait for a snapshot"
    assert RaftLogStorage(engine, 1).last_index() >= 1, "a first-layout shard starts here"
