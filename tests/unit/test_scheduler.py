"""The placement scheduler decides where replicas and leaders go; these scenarios run it
round after round, completing each round's moves at once (what the shards' leaders do
in a real cluster), and check where the layout settles and how many moves it took."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest

from shardkv.core.cluster.scheduler import (
    MergeSettings,
    SchedulerSettings,
    plan,
    plan_merges,
    plan_splits,
    split_point,
)
from shardkv.core.cluster.shardmap import (
    NODE_DRAINING,
    NodeInfo,
    ShardInfo,
    ShardMap,
    ShardMapError,
    initial_layout,
)
from shardkv.core.kv.scope import merge_scopes

SETTINGS = SchedulerSettings(replicas=3, max_concurrent_moves=4)


def cluster(nodes: int, shards: int) -> ShardMap:
    return initial_layout({n: f"127.0.0.1:{9000 + n}" for n in range(1, nodes + 1)}, shards)


def add_nodes(shard_map: ShardMap, count: int) -> ShardMap:
    first = max(shard_map.nodes) + 1
    for n in range(first, first + count):
        shard_map = shard_map.with_node(NodeInfo(n, f"127.0.0.1:{9000 + n}"))
    return shard_map


def complete_moves(shard_map: ShardMap) -> ShardMap:
    """Every target reached: recorded as the replicas, as the placement leader does."""
    done = [
        replace(s, replicas=s.target, target=(), epoch=s.epoch + 1)
        for s in shard_map.shards.values()
        if s.target
    ]
    return shard_map.with_shards(done) if done else shard_map


def converge(
    shard_map: ShardMap,
    live: set[int],
    settings: SchedulerSettings = SETTINGS,
    data_bytes: dict[int, int] | None = None,
) -> tuple[ShardMap, int, list[float]]:
    """Rounds until the scheduler has nothing to change: (map, moves, seconds per round)."""
    moves = 0
    timings = []
    for _ in range(10_000):
        started = time.perf_counter()
        changes = plan(shard_map, live, settings, data_bytes)
        timings.append(time.perf_counter() - started)
        for change in changes:
            assert change.epoch == shard_map.shards[change.shard_id].epoch + 1
            assert len(set(change.target or change.replicas)) == len(
                change.target or change.replicas
            )
        moves += sum(1 for c in changes if c.target)
        if not changes:
            return shard_map, moves, timings
        shard_map = shard_map.with_shards(changes)
        assert sum(1 for s in shard_map.shards.values() if s.target) <= (
            settings.max_concurrent_moves
        )
        shard_map = complete_moves(shard_map)
    raise AssertionError("the scheduler never settled")


def replicas_per_node(shard_map: ShardMap) -> Counter[int]:
    return Counter(n for s in shard_map.shards.values() for n in s.replicas)


def leaders_per_node(shard_map: ShardMap) -> Counter[int]:
    return Counter(s.replicas[0] for s in shard_map.shards.values())


def test_a_fourth_node_gets_a_quarter_of_the_replicas_and_leaders_in_minimal_moves() -> None:
    shard_map = add_nodes(cluster(3, 12), 1)
    settled, moves, _ = converge(shard_map, {1, 2, 3, 4})
    assert replicas_per_node(settled) == {1: 9, 2: 9, 3: 9, 4: 9}
    assert moves == 9  # node 4 needs 9 replicas, each move brings one
    assert sorted(leaders_per_node(settled).values()) == [3, 3, 3, 3]
    assert all(len(s.replicas) == 3 for s in settled.shards.values())


def test_a_dead_node_is_replaced_on_every_shard_it_held() -> None:
    shard_map = cluster(5, 20)
    dead = 2
    settled, moves, _ = converge(shard_map, {1, 3, 4, 5})
    # Each of the dead node's 12 replicas is re-created once; a shard can only go to a
    # node it is not on yet, so greedy repair may leave one move to rebalance.
    assert replicas_per_node(shard_map)[dead] <= moves <= 1.2 * replicas_per_node(shard_map)[dead]
    for shard in settled.shards.values():
        assert dead not in shard.replicas and len(shard.replicas) == 3
    counts = replicas_per_node(settled)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert dead not in leaders_per_node(settled)


def test_a_draining_node_is_emptied_and_receives_nothing() -> None:
    shard_map = cluster(5, 20)
    draining = replace(shard_map.nodes[3], state=NODE_DRAINING)
    shard_map = shard_map.with_node(draining)
    settled, moves, _ = converge(shard_map, set(shard_map.nodes))  # alive, yet leaving
    assert moves == replicas_per_node(shard_map)[3]
    assert 3 not in replicas_per_node(settled) and 3 not in leaders_per_node(settled)
    counts = replicas_per_node(settled)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_shard_without_a_quorum_of_live_replicas_is_left_alone() -> None:
    shard_map = cluster(3, 1)
    assert plan(shard_map, {1}, SETTINGS) == []  # 2 of 3 replicas dead: cannot change


def test_a_shard_being_moved_is_not_touched_again_and_the_budget_holds() -> None:
    shard_map = add_nodes(cluster(3, 12), 3)
    first = plan(shard_map, set(shard_map.nodes), SETTINGS)
    assert sum(1 for c in first if c.target) == SETTINGS.max_concurrent_moves
    moving = shard_map.with_shards(first)
    again = plan(moving, set(shard_map.nodes), SETTINGS)
    assert not any(c.target for c in again)  # no budget left while those run
    assert not any(moving.shards[c.shard_id].target for c in again)


@pytest.mark.parametrize(
    ("change", "live_after"),
    [
        (lambda m: add_nodes(m, 10), lambda m: set(m.nodes)),
        (lambda m: m, lambda m: set(m.nodes) - {7, 42, 99}),
    ],
    ids=["add-10-nodes", "lose-3-nodes"],
)
def test_100_nodes_and_10000_shards_converge_to_a_balanced_layout(
    change: Callable[[ShardMap], ShardMap],
    live_after: Callable[[ShardMap], set[int]],
    record_property: Callable[[str, object], None],
) -> None:
    settings = SchedulerSettings(replicas=3, max_concurrent_moves=256, max_leader_moves=256)
    shard_map = change(cluster(100, 10_000))
    live = live_after(shard_map)
    before = replicas_per_node(shard_map)
    mean = 30_000 / len(live)
    # The least any plan can do: every replica on a dead node is re-created, and every
    # live node under the mean is brought up to its floor, one replica per move (a
    # re-created replica can do both).
    minimum = max(
        sum(c for n, c in before.items() if n not in live),
        sum(max(0, int(mean) - before.get(n, 0)) for n in live),
    )
    settled, moves, timings = converge(shard_map, live, settings)
    replicas = replicas_per_node(settled)
    leaders = leaders_per_node(settled)
    assert set(replicas) == live
    for n in live:
        assert abs(replicas[n] - mean) <= 0.05 * mean, (n, replicas[n], mean)
        assert abs(leaders[n] - 10_000 / len(live)) <= 0.05 * 10_000 / len(live)
    assert moves <= 1.2 * minimum, (moves, minimum)
    record_property("moves", moves)
    record_property("minimum_moves", minimum)
    record_property("max_decision_ms", round(max(timings) * 1000, 1))
    median_ms = sorted(timings)[len(timings) // 2] * 1000
    print(
        f"moves {moves} (minimum {minimum}), rounds {len(timings)}, decision "
        f"max {max(timings) * 1000:.1f} ms, median {median_ms:.1f} ms"
    )


def test_paused_balancing_still_repairs_but_moves_nothing_else() -> None:
    shard_map = add_nodes(cluster(4, 12), 1)  # node 5 is new and empty; node 2 is dead
    paused = SchedulerSettings(replicas=3, max_concurrent_moves=100, balance=False)
    changes = plan(shard_map, {1, 3, 4, 5}, paused)
    assert changes and all(2 in shard_map.shards[c.shard_id].replicas for c in changes)
    assert all(2 not in c.target for c in changes)
    settled, _, _ = converge(shard_map, {1, 3, 4, 5}, paused)
    assert 2 not in replicas_per_node(settled)  # repaired...
    assert plan(settled, {1, 3, 4, 5}, paused) == []  # ...and not balanced further


def labelled(shard_map: ShardMap, labels: dict[int, dict[str, str]]) -> ShardMap:
    for n, node_labels in labels.items():
        info = shard_map.nodes[n]
        shard_map = shard_map.with_node(replace(info, labels=tuple(sorted(node_labels.items()))))
    return shard_map


def hosts_shared(shard_map: ShardMap) -> list[int]:
    """Shards with two replicas on one host."""
    host = {n: i.label("host") for n, i in shard_map.nodes.items()}
    return [
        s.shard_id
        for s in shard_map.shards.values()
        if len({host[n] for n in s.replicas}) < len(s.replicas)
    ]


def test_six_processes_on_three_hosts_never_share_a_host_after_join_and_repair() -> None:
    # Two processes per host (one per core), ids 1-6 on hosts h1 h1 h2 h2 h3 h3: the first
    # layout (round-robin over ids) puts replicas of most shards twice on one host.
    shard_map = labelled(cluster(6, 12), {n: {"host": f"h{(n + 1) // 2}"} for n in range(1, 7)})
    assert hosts_shared(shard_map)
    settled, _, _ = converge(shard_map, set(shard_map.nodes))
    assert hosts_shared(settled) == []
    counts = replicas_per_node(settled)
    assert max(counts.values()) - min(counts.values()) <= 1
    # A 7th process on a 4th host joins; then one process of h2 dies.
    joined = labelled(add_nodes(settled, 1), {7: {"host": "h4"}})
    after_join, _, _ = converge(joined, set(joined.nodes))
    assert hosts_shared(after_join) == [] and 7 in replicas_per_node(after_join)
    after_repair, _, _ = converge(after_join, set(joined.nodes) - {3})
    assert hosts_shared(after_repair) == [] and 3 not in replicas_per_node(after_repair)


def test_replicas_spread_over_zones_when_there_are_enough() -> None:
    zones = {n: {"host": f"h{n}", "zone": f"z{(n - 1) // 2 + 1}"} for n in range(1, 7)}
    shard_map = labelled(cluster(6, 12), zones)  # z1: 1 2, z2: 3 4, z3: 5 6
    settled, _, _ = converge(shard_map, set(shard_map.nodes))
    zone = {n: i.label("zone") for n, i in settled.nodes.items()}
    for s in settled.shards.values():
        assert len({zone[n] for n in s.replicas}) == 3, s


def test_a_move_towards_a_node_that_dies_is_aimed_elsewhere_and_repair_goes_on() -> None:
    shard_map = add_nodes(cluster(4, 12), 1)
    first = plan(shard_map, set(shard_map.nodes), SETTINGS)
    moving = shard_map.with_shards(first)
    assert {n for c in first if c.target for n in c.target} >= {5}
    # Node 5 dies before any move finished, and node 4 too: every move is re-aimed (or
    # cancelled), and the shards on node 4 are repaired as the budget frees up.
    settled, _, _ = converge(moving, {1, 2, 3})
    assert 5 not in replicas_per_node(settled) and 4 not in replicas_per_node(settled)
    assert all(len(s.replicas) == 3 for s in settled.shards.values())
    assert not any(s.target for s in settled.shards.values())


def test_draining_and_dead_replicas_of_one_shard_are_both_replaced() -> None:
    shard_map = cluster(6, 6)
    shard_map = shard_map.with_node(replace(shard_map.nodes[3], state=NODE_DRAINING))
    live = set(shard_map.nodes) - {2}  # node 2 dead; shard 1 is on 1, 2, 3
    assert shard_map.shards[1].replicas == (1, 2, 3)
    settled, _, _ = converge(shard_map, live)
    for s in settled.shards.values():
        assert not {2, 3} & set(s.replicas) and len(s.replicas) == 3


def test_shards_past_the_size_limit_split_largest_first_into_ids_never_used() -> None:
    """Splits take the next unused ids, at most ``max_pending`` are pending at once, a
    shard changed this round or already splitting is skipped, and while a split is
    pending `plan` leaves that shard alone."""
    m = cluster(3, 4)
    sizes = {1: 10, 2: 300, 3: 200, 4: 500}
    orders = plan_splits(m, sizes, 100, max_pending=2, busy=())
    assert [(s.shard_id, s.split) for s in orders] == [(2, (6, 6144)), (4, (5, 14336))]
    assert all(s.epoch == m.shards[s.shard_id].epoch + 1 for s in orders)
    m = m.with_shards(orders)
    assert m.next_shard_id() == 7
    assert plan_splits(m, sizes, 100, max_pending=2) == []  # two pending already
    assert [s.shard_id for s in plan_splits(m, sizes, 100, max_pending=3)] == [3]
    assert [s.shard_id for s in plan_splits(m, sizes, 100, max_pending=3, busy={3})] == []
    # A leader reorder would take a splitting shard's epoch: plan leaves it alone.
    skewed = m.with_shards([replace(m.shards[2], replicas=(1, 2, 3), epoch=m.shards[2].epoch + 1)])
    assert all(not s.split for s in plan(skewed, {1, 2, 3}, SETTINGS))


def test_a_shard_of_one_slot_is_never_split() -> None:
    one = ShardMap(
        {1: NodeInfo(1, "a")},
        {1: ShardInfo(1, ((0, 0),), (1,)), 2: ShardInfo(2, ((1, 16383),), (1,))},
    )
    assert split_point(one.shards[1]) is None
    assert plan_splits(one, {1: 10**9}, 1, max_pending=4) == []
    assert split_point(one.shards[2]) == 1 + 16383 // 2


def test_a_hot_shard_splits_even_when_small() -> None:
    m = cluster(3, 4)
    orders = plan_splits(m, {1: 10}, 100, max_pending=4, ops_per_s={1: 9000.0, 2: 10.0},
                         split_ops_per_s=5000.0)  # fmt: skip
    assert [s.shard_id for s in orders] == [1]
    assert plan_splits(m, {}, 100, max_pending=4, ops_per_s={1: 9000.0}) == []  # 0: off


MERGE = MergeSettings(max_bytes=100, max_ops_per_s=50.0, min_shards=2, max_pending=4)


def test_small_cold_neighbours_merge_right_into_left_until_the_floor() -> None:
    """Pairs whose slots touch, both cold, together under the size limit: the right one
    is ordered to retire into the left one. Hot, large or busy shards stay; the floor
    and the pending budget hold."""
    m = cluster(3, 6)  # every shard on nodes 1-3
    sizes = dict.fromkeys(range(1, 7), 10)
    orders = plan_merges(m, sizes, {}, MERGE, live={1, 2, 3})
    assert [(s.shard_id, s.merge_into) for s in orders] == [(2, 1), (4, 3), (6, 5)]
    assert all(s.epoch == m.shards[s.shard_id].epoch + 1 for s in orders)
    floor = replace(MERGE, min_shards=5)
    assert [s.shard_id for s in plan_merges(m, sizes, {}, floor, live={1, 2, 3})] == [2]
    hot = plan_merges(m, sizes, {2: 500.0}, MERGE, live={1, 2, 3})
    assert [(s.shard_id, s.merge_into) for s in hot] == [(4, 3), (6, 5)]
    large = plan_merges(m, {**sizes, 1: 95}, {}, MERGE, live={1, 2, 3})
    assert [(s.shard_id, s.merge_into) for s in large] == [(3, 2), (5, 4)]
    assert plan_merges(m, {1: 10}, {}, MERGE, live={1, 2, 3}) == []  # sizes unknown
    assert plan_merges(m, sizes, {}, MERGE, live={1, 2}) == []  # a replica's node is dead
    # While a merge is under way, neither shard moves, splits or merges again.
    m = m.with_shards(orders[:1])
    assert m.frozen_ids() == {1, 2}
    assert not {s.shard_id for s in plan(add_nodes(m, 1), {1, 2, 3, 4}, SETTINGS)} & {1, 2}
    assert plan_splits(m, {1: 10**9, 2: 10**9}, 100, max_pending=4) == []
    assert 1 not in {s.merge_into for s in plan_merges(m, sizes, {}, MERGE, live={1, 2, 3})}


def test_neighbours_on_different_nodes_are_first_moved_together() -> None:
    m = cluster(4, 4)
    assert set(m.shards[1].replicas) != set(m.shards[2].replicas)
    sizes = dict.fromkeys(range(1, 5), 10)
    orders = plan_merges(m, sizes, {}, MERGE, live={1, 2, 3, 4})
    assert orders[0].shard_id == 2 and orders[0].target == m.shards[1].replicas
    assert not orders[0].merge_into
    moved = complete_moves(m.with_shards(orders))
    again = plan_merges(moved, sizes, {}, MERGE, live={1, 2, 3, 4})
    assert (2, 1) in [(s.shard_id, s.merge_into) for s in again]


def test_a_merge_is_recorded_only_as_ordered_and_leaves_one_owner_per_slot() -> None:
    m = cluster(3, 3)
    retiring = replace(m.shards[2], merge_into=1, epoch=2)
    m = m.with_shards([retiring])
    with pytest.raises(ShardMapError):  # the survivor has not absorbed: nothing to record
        m.with_merge(replace(m.shards[1], epoch=5), 2)
    absorbing = replace(m.shards[1], absorb=2, epoch=3)
    m = m.with_shards([absorbing])
    with pytest.raises(ShardMapError):  # the survivor must hold both shards' slots
        m.with_merge(replace(absorbing, absorb=0, epoch=4), 2)
    with pytest.raises(ShardMapError):  # a survivor under a merge cannot move meanwhile
        m.with_shards([replace(absorbing, target=(1, 2, 3), epoch=4)])
    merged = merge_scopes(absorbing.scope, retiring.scope)
    done = m.with_merge(replace(absorbing, slot_ranges=merged.slot_ranges, absorb=0, epoch=4), 2)
    assert sorted(done.shards) == [1, 3] and done.shards[1].slot_ranges == ((0, 10922),)
    assert done.shard_of_slot(8000).shard_id == 1
    assert ShardMap.decode(m.encode()).encode() == m.encode()  # merge fields survive


def bytes_per_node(shard_map: ShardMap, sizes: dict[int, int]) -> dict[int, int]:
    held = dict.fromkeys(shard_map.nodes, 0)
    for shard in shard_map.shards.values():
        for n in shard.replicas:
            held[n] += sizes[shard.shard_id]
    return held


def test_bytes_balance_once_counts_do_by_moves_that_narrow_the_gap() -> None:
    """Equal replica counts can hide very unequal data: large replicas then move from the
    node with the most bytes to the one with the fewest (swapped for smaller ones, so
    counts stay balanced) until no move narrows the gap; a small gap moves nothing."""
    m = cluster(4, 8)
    sizes = {1: 800, 2: 10, 3: 10, 4: 10, 5: 800, 6: 10, 7: 10, 8: 10}
    by_bytes = replace(SETTINGS, min_byte_gap_bytes=50, byte_gap_share=0.05)
    before = bytes_per_node(m, sizes)
    assert max(before.values()) - min(before.values()) == 1580  # one node holds no big one
    settled, moves, _ = converge(m, set(m.nodes), by_bytes, sizes)
    after = bytes_per_node(settled, sizes)
    counts = replicas_per_node(settled)
    assert max(counts.values()) - min(counts.values()) <= 1
    # Six big replicas on four nodes: the best is two, two, one, one.
    assert sorted(after.values()) == [850, 850, 1640, 1640], after
    assert 0 < moves <= 8
    # Below the gap worth moving data for, nothing moves.
    assert plan(m, set(m.nodes), replace(by_bytes, min_byte_gap_bytes=10**6), sizes) == []


def test_a_merge_under_way_never_blocks_the_repair_of_other_shards() -> None:
    """A dead node: the merging pair waits (its steps take its epochs), every other shard
    is repaired, paused or not, and the round is one the map accepts."""
    m = add_nodes(cluster(3, 4), 1)
    m = m.with_shards([replace(m.shards[2], merge_into=1, epoch=m.shards[2].epoch + 1)])
    for settings in (SETTINGS, replace(SETTINGS, balance=False)):
        changes = plan(m, {1, 2, 4}, settings)
        assert {c.shard_id for c in changes} == {3, 4}
        assert all(3 not in c.target for c in changes)
        m.with_shards(changes)  # valid: no target on a merging shard
