"""The placement group's state machine: the map changes only by its commands, a change
that would break the map is refused on every replica alike, and every change is staged for
META so a restarted node routes by the map it applied."""

from __future__ import annotations

from dataclasses import replace

from shardkv.core.cluster.placement import (
    SHARD_MAP_KEY,
    PlacementMachine,
    join_node_command,
    placement_members,
    register_node_command,
    set_shards_command,
)
from shardkv.core.cluster.shardmap import NODE_REMOVED, NodeInfo, ShardMap, initial_layout
from shardkv.core.engine import META, Put, WriteBatch
from shardkv.core.resp import OK, ErrorReply, Reply

MEMBERS = {1: "h:7480", 2: "h:7490", 3: "h:7500"}


def apply(
    machine: PlacementMachine, *commands: list[bytes]
) -> tuple[list[Reply], dict[bytes, bytes]]:
    """One applied batch of commands: the replies and the META writes staged for it."""
    machine.begin_batch()
    replies = [machine.execute(c, now_ms=0) for c in commands]
    staged = {
        op.key: op.value
        for op in machine.finish_batch().ops
        if isinstance(op, Put) and op.column == META
    }
    return replies, staged


def test_five_voters_at_most_and_every_other_node_follows_as_a_learner() -> None:
    assert placement_members([3, 1, 2]) == ([1, 2, 3], [])
    assert placement_members(list(range(7, 0, -1))) == ([1, 2, 3, 4, 5], [6, 7])


def test_registering_a_node_and_recording_a_membership_change_are_staged_for_meta() -> None:
    machine = PlacementMachine(initial_layout(MEMBERS, 4, 3))
    node = NodeInfo(4, "h:7510", "h:6004", "h:8004")
    shard = machine.shard_map.shards[1]  # type: ignore[union-attr]
    moved = replace(shard, replicas=(*shard.replicas, 4), epoch=shard.epoch + 1)
    replies, staged = apply(machine, register_node_command(node), set_shards_command([moved]))
    assert replies == [OK, OK] and machine.changed
    stored = ShardMap.decode(staged[SHARD_MAP_KEY])
    assert stored.nodes[4] == node
    assert stored.shards[1].replicas == (1, 2, 3, 4) and stored.shards[1].epoch == 2
    assert stored.encode() == machine.shard_map.encode()  # type: ignore[union-attr]


def test_changes_that_would_break_the_map_are_refused_and_change_nothing() -> None:
    machine = PlacementMachine(initial_layout(MEMBERS, 4, 3))
    before = machine.shard_map.encode()  # type: ignore[union-attr]
    shard = machine.shard_map.shards[2]  # type: ignore[union-attr]
    same_epoch = replace(shard, replicas=(1, 2))
    overlapping = replace(shard, slot_ranges=((0, 9000),), epoch=shard.epoch + 1)
    on_unknown_node = replace(shard, replicas=(1, 9), epoch=shard.epoch + 1)
    removed_but_placed = replace(NodeInfo(1, "h:7480"), state=NODE_REMOVED)
    replies, staged = apply(
        machine,
        set_shards_command([same_epoch]),
        set_shards_command([overlapping]),
        set_shards_command([on_unknown_node]),
        register_node_command(removed_but_placed),
        [b"\x00place-nonsense"],
    )
    assert all(type(r) is ErrorReply for r in replies)
    assert "does not rise" in str(replies[0])
    assert "is in shards" in str(replies[1])
    assert "unknown or removed nodes [9]" in str(replies[2])
    assert "unknown or removed nodes [1]" in str(replies[3])
    assert staged == {} and not machine.changed
    assert machine.shard_map.encode() == before  # type: ignore[union-attr]


def test_a_snapshot_replaces_the_map_and_a_joining_replica_applies_nothing_before_it() -> None:
    joining = PlacementMachine(None)
    replies, _ = apply(joining, register_node_command(NodeInfo(4, "h:7510")))
    assert type(replies[0]) is ErrorReply
    snapshot = initial_layout(MEMBERS, 16, 3).encode()
    batch = WriteBatch()
    joining.restore(snapshot, batch)
    assert joining.changed and joining.shard_map.encode() == snapshot  # type: ignore[union-attr]
    assert batch.ops == [Put(META, SHARD_MAP_KEY, snapshot)]


def test_a_joining_node_gets_a_new_id_and_the_same_one_when_it_asks_again() -> None:
    machine = PlacementMachine(initial_layout(MEMBERS, 4, 3))
    replies, staged = apply(
        machine,
        join_node_command("h:7510", "h:6004", "h:8004"),
        join_node_command("h:7520", "h:6005", ""),
        join_node_command("h:7510", "h:6004", "h:8004"),  # a retry after a crash
    )
    assert replies == [4, 5, 4]
    stored = ShardMap.decode(staged[SHARD_MAP_KEY])
    assert stored.nodes[4] == NodeInfo(4, "h:7510", "h:6004", "h:8004")
    assert stored.nodes[5].peer_address == "h:7520"
    # A removed node's id is never given again, even to a node at its old address.
    gone = replace(stored.nodes[5], state=NODE_REMOVED)
    replies, _ = apply(machine, register_node_command(gone), join_node_command("h:7520", "x", ""))
    assert replies == [OK, 6]


def test_a_node_joining_under_mtls_gets_the_id_its_certificate_names_if_never_given() -> None:
    machine = PlacementMachine(initial_layout(MEMBERS, 4, 3))
    replies, _ = apply(
        machine,
        join_node_command("h:7510", "h:6004", "", wanted_node_id=7),
        join_node_command("h:7510", "h:6004", "", wanted_node_id=7),  # a retry
        join_node_command("h:7530", "h:6006", "", wanted_node_id=2),  # node 2's id
    )
    assert replies[:2] == [7, 7]
    assert isinstance(replies[2], ErrorReply) and "never given twice" in replies[2].message
