"""The cluster map: a new cluster's layout, slot lookup, invariants, encoding; and the
slot a command is routed by."""

from __future__ import annotations

from collections import Counter

import pytest

from shardkv.core.cluster.routing import CROSSSLOT, KEYLESS, command_slot
from shardkv.core.cluster.shardmap import (
    NodeInfo,
    ShardInfo,
    ShardMap,
    ShardMapError,
    equal_slot_ranges,
    initial_layout,
)
from shardkv.core.cluster.slots import SLOT_COUNT, key_slot

MEMBERS = {1: "127.0.0.1:7480", 2: "127.0.0.1:7490", 3: "127.0.0.1:7500"}


def test_a_new_cluster_splits_the_slots_equally_and_spreads_preferred_leaders() -> None:
    m = initial_layout(MEMBERS, shard_count=16, replicas=3)
    assert len(m.shards) == 16
    sizes = [last - first + 1 for s in m.shards.values() for first, last in s.slot_ranges]
    assert sum(sizes) == SLOT_COUNT and max(sizes) - min(sizes) <= 1
    assert all(sorted(s.replicas) == [1, 2, 3] for s in m.shards.values())
    leaders = Counter(s.preferred_leader for s in m.shards.values())
    assert sorted(leaders.values()) == [5, 5, 6]
    for slot in (0, 1023, 1024, 8191, SLOT_COUNT - 1):
        shard = m.shard_of_slot(slot)
        assert any(a <= slot <= b for a, b in shard.slot_ranges)
        assert shard.scope.owns(slot)


def test_replicas_are_capped_by_the_member_count_and_every_node_hosts_its_share() -> None:
    five = {i: f"h:{i}" for i in range(1, 6)}
    m = initial_layout(five, shard_count=10, replicas=3)
    hosted = Counter(n for s in m.shards.values() for n in s.replicas)
    assert set(hosted.values()) == {6}
    one = initial_layout({1: "h:1"}, shard_count=4, replicas=3)
    assert all(s.replicas == (1,) for s in one.shards.values())


def test_every_member_computes_the_same_map_and_it_survives_encoding() -> None:
    a = initial_layout(MEMBERS, 16, 3)
    b = initial_layout(dict(reversed(MEMBERS.items())), 16, 3)
    assert a.encode() == b.encode()
    again = ShardMap.decode(a.encode())
    assert again.encode() == a.encode()
    assert again.shard_of_slot(5000).shard_id == a.shard_of_slot(5000).shard_id


def test_maps_that_break_an_invariant_are_refused_with_the_reason() -> None:
    nodes = {1: NodeInfo(1, "h:1")}
    with pytest.raises(ShardMapError, match="slot 10 is in shards 1 and 2"):
        ShardMap(nodes, {1: ShardInfo(1, ((0, 10),), (1,)), 2: ShardInfo(2, ((10, 16383),), (1,))})
    with pytest.raises(ShardMapError, match="slot 11 belongs to no shard"):
        ShardMap(nodes, {1: ShardInfo(1, ((0, 10),), (1,)), 2: ShardInfo(2, ((12, 16383),), (1,))})
    with pytest.raises(ShardMapError, match="unknown or removed nodes"):
        ShardMap(nodes, {1: ShardInfo(1, ((0, 16383),), (1, 9))})
    with pytest.raises(ShardMapError, match="unreadable"):
        ShardMap.decode(b"{not json")
    with pytest.raises(ShardMapError):
        equal_slot_ranges(0)


def test_commands_route_by_the_slot_of_their_keys_as_redis_cluster_does() -> None:
    assert command_slot([b"GET", b"user:1"]) == key_slot(b"user:1")
    assert command_slot([b"set", b"{u1}:a", b"v"]) == key_slot(b"u1")
    assert command_slot([b"MSET", b"{u1}:a", b"1", b"{u1}:b", b"2"]) == key_slot(b"u1")
    assert command_slot([b"MSET", b"a", b"1", b"b", b"2"]) is CROSSSLOT
    assert command_slot([b"DEL", b"a", b"b"]) is CROSSSLOT
    assert command_slot([b"DBSIZE"]) == KEYLESS
    assert command_slot([b"SCAN", b"0"]) == KEYLESS
    assert command_slot([b"FLUSHALL"]) == KEYLESS
