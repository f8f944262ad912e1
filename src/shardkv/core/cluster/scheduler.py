"""The placement scheduler: where each shard's replicas and preferred leader should be.

Pure and deterministic (PD's balance and replica checkers are the model): `plan` looks at
the map and the set of live nodes and returns the shards to change in one decision round,
each with a new epoch. The placement group's leader proposes them; it calls `plan` again
only once the previous round applied. The rules, in order:

1. **Repair.** A shard with fewer live replicas than ``replicas`` (a node is dead: not
   heard from for ``dead_node_timeout_s``; or draining: ``shardkv node remove``) gets a
   ``target`` that keeps its live replicas and adds the least loaded live nodes. Its
   leader adds them as learners, promotes them, then removes the others; a shard without
   a quorum of live replicas cannot change its membership and is left alone.
2. **Replica balance.** While the most loaded live node holds at least two replicas more
   than the least loaded one, one replica moves from the first to the second (a shard
   on the first and not on the second). Every move narrows the spread by two, so the
   number of moves is the minimum the counts need.
2b. **Byte balance.** Once the counts are balanced, a large replica moves from the node
   with the most data bytes to the one with the fewest (alone if that node also holds
   more replicas, else swapped for a smaller one, so counts stay balanced), when their gap
   is above ``min_byte_gap_bytes`` and ``byte_gap_share`` of the mean. Each move narrows
   the gap it was made for, so the layout settles.
3. **Leader balance.** While one live node is the preferred leader (``replicas[0]``) of at
   least two shards more than another that also holds one of them, that shard's replicas
   are reordered to prefer the second. No membership changes; the shard's leader hands
   over (`NodeDriver._hand_to_preferred_leader`).

Failure domains (``--labels host=..,zone=..``): no move or repair puts two replicas of a
shard on one host, none lowers the number of zones a shard spans, and a shard whose
replicas share a host (or could span more zones) is moved apart as a repair (a new
cluster's first layout cannot know every node's labels).

A shard that has a ``target`` is left alone until it is reached (one move per shard at a
time), unless the target names a node that died or is draining: then that node is
replaced in the target (rule 0). At most ``max_concurrent_moves`` shards have one.
Over-replicated shards (more voters than ``replicas``, e.g. after ``shardkv member add``)
are left as they are.

A shard with a split or merge under way (``ShardInfo.frozen``) is never changed by
`plan`: those steps take the shard's next epochs.

**Splits** (`plan_splits`): a shard whose leader reports more data bytes than
``split_bytes``, or more client commands per second than ``split_ops_per_s``, is split
at the slot that halves its slots (one shard id never reused).

**Merges** (`plan_merges`): two shards whose slots touch, both cold, together smaller than
``max_bytes``, merge while there are more than ``min_shards`` shards: the right one
retires into the left one (`core/cluster/merge.py`). Both must be on the same nodes
first, so a pair that is not gets a move of the right shard onto the left one's nodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from shardkv.core.cluster.shardmap import NODE_REMOVED, NODE_UP, ShardInfo, ShardMap


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    #: Replicas every shard should have on live nodes.
    replicas: int = 3
    #: Shards with a target (a membership change under way) at once, cluster-wide.
    max_concurrent_moves: int = 4
    #: Preferred-leader reorders per round (cheap: no data moves, only leaderships).
    max_leader_moves: int = 16
    #: Rules 2 and 3 (``shardkv rebalance pause`` turns them off; repair stays on).
    balance: bool = True
    #: Rule 2b: the byte gap between the heaviest and the lightest live node that is
    #: worth moving data for: above both this many bytes and this share of a node's
    #: mean bytes.
    min_byte_gap_bytes: int = 64 << 20
    byte_gap_share: float = 0.1


def plan(
    shard_map: ShardMap,
    live: Collection[int],
    settings: SchedulerSettings,
    data_bytes: Mapping[int, int] | None = None,
) -> list[ShardInfo]:
    """The shards to change in this round (see the module docstring), ascending by id,
    each at most once and with its epoch raised by one. ``live``: nodes heard from
    recently; nodes the map marks removed never count as live. ``data_bytes``: each
    shard's size as its leader reports it (rule 2b; missing: 0)."""
    alive = sorted(n for n in live if n in shard_map.nodes and shard_map.nodes[n].state == NODE_UP)
    if not alive:
        return []
    alive_set = frozenset(alive)
    # Draining nodes still vote: they count towards a shard's quorum, never as a place.
    voting = frozenset(
        n for n in live if n in shard_map.nodes and shard_map.nodes[n].state != NODE_REMOVED
    )
    shards = shard_map.shards
    # A split or merge under way takes the shard's next epochs: no rule touches it.
    frozen = shard_map.frozen_ids()
    changed: dict[int, ShardInfo] = {}
    load = dict.fromkeys(alive, 0)
    for shard in shards.values():
        for n in shard.target or shard.replicas:
            if n in load:
                load[n] += 1
    budget = settings.max_concurrent_moves - sum(1 for s in shards.values() if s.target)

    domains = _Domains(shard_map)

    # 0. A move towards a node that died or started draining would never finish (and
    # would hold its slot of the budget forever): aim it at another node instead.
    for shard_id, shard in sorted(shards.items()):
        gone = [n for n in shard.target if n not in alive_set]
        if not gone or shard_id in frozen:
            continue
        retarget = [n for n in shard.target if n in alive_set]
        for _ in gone:
            # A replica the move was taking away may stay after all.
            candidates = [
                n
                for n in alive
                if n not in retarget and (n not in shard.placed or n in shard.replicas)
            ]
            best = domains.best(candidates, retarget, load)
            if best is None:
                break
            retarget.append(best)
            load[best] += 1
        quorum = sum(1 for n in shard.replicas if n in voting) * 2 > len(shard.replicas)
        if len(retarget) < min(settings.replicas, len(alive)) or not quorum:
            continue  # nowhere to go, or no quorum to change anything: wait
        # (A target equal to the replicas cancels the move: the leader removes whatever
        # it added already, and the reconciler then clears the target.)
        changed[shard_id] = replace(shard, epoch=shard.epoch + 1, target=tuple(retarget))

    # 1. Repair: live replicas first, then failure domains.
    want = min(settings.replicas, len(alive))
    for shard_id, shard in sorted(shards.items()):
        if budget <= 0:
            break
        if shard.target or shard_id in frozen:
            continue
        kept = [n for n in shard.replicas if n in alive_set]
        voters_alive = sum(1 for n in shard.replicas if n in voting)
        if voters_alive * 2 <= len(shard.replicas):
            continue  # without a quorum of live replicas: it cannot change its membership
        if len(kept) >= want:
            if len(kept) < len(shard.replicas):  # enough live ones: drop the others
                changed[shard_id] = replace(shard, epoch=shard.epoch + 1, target=tuple(kept))
                budget -= 1
            continue
        added: list[int] = []
        while len(kept) + len(added) < want:
            best = domains.best([n for n in alive if n not in shard.replicas], kept + added, load)
            if best is None:
                break
            added.append(best)
            load[best] += 1
        if not added:
            continue
        changed[shard_id] = replace(shard, epoch=shard.epoch + 1, target=(*kept, *added))
        budget -= 1
    for shard_id, shard in sorted(shards.items()):
        if budget <= 0:
            break
        if shard.target or shard_id in changed or shard_id in frozen:
            continue
        if any(n not in alive_set for n in shard.replicas):
            continue
        misplaced = domains.misplaced(shard.replicas, alive)
        if misplaced is None:
            continue
        others = [n for n in shard.replicas if n != misplaced]
        best = domains.best([n for n in alive if n not in shard.replicas], others, load)
        if best is None or domains.score(best, others) <= domains.score(misplaced, others):
            continue
        target = tuple(best if n == misplaced else n for n in shard.replicas)
        changed[shard_id] = replace(shard, epoch=shard.epoch + 1, target=target)
        load[misplaced] -= 1
        load[best] += 1
        budget -= 1

    if not settings.balance:
        return [changed[i] for i in sorted(changed)]

    # 2. Replica balance.
    on_node: dict[int, list[int]] = {n: [] for n in alive}
    for shard_id, shard in sorted(shards.items()):
        if not shard.target and shard_id not in changed and shard_id not in frozen:
            for n in shard.replicas:
                if n in on_node:
                    on_node[n].append(shard_id)
    counts_balanced = False
    while budget > 0:
        move = _next_move(shards, changed, load, on_node, alive_set, domains)
        if move is None:
            counts_balanced = True
            break
        shard, src, dst = move
        target = tuple(dst if n == src else n for n in shard.replicas)
        changed[shard.shard_id] = replace(shard, epoch=shard.epoch + 1, target=target)
        load[src] -= 1
        load[dst] += 1
        budget -= 1

    # 2b. Byte balance, once the counts are: one move, or a swap of two, from the node
    # with the most bytes to the one with the fewest, narrowing the gap between them.
    if counts_balanced and data_bytes and not any(s.target for s in shards.values()):
        byte_moves = _next_byte_moves(
            shards, changed, data_bytes, load, on_node, alive_set, domains, settings
        )
        for shard, src, dst in byte_moves if len(byte_moves) <= budget else []:
            target = tuple(dst if n == src else n for n in shard.replicas)
            changed[shard.shard_id] = replace(shard, epoch=shard.epoch + 1, target=target)
            load[src] -= 1
            load[dst] += 1
            budget -= 1

    # 3. Leader balance (over the layout the moves lead to).
    leads = dict.fromkeys(alive, 0)
    for shard_id, shard in shards.items():
        first = _layout(changed.get(shard_id, shard))[0]
        if first in leads:
            leads[first] += 1
    preferred_on: dict[int, list[int]] = {}
    for shard_id, shard in sorted(shards.items()):
        if not shard.target and shard_id not in changed and shard_id not in frozen:
            preferred_on.setdefault(shard.replicas[0], []).append(shard_id)
    for _ in range(settings.max_leader_moves):
        reorder = _next_leader_move(shards, changed, leads, preferred_on, alive_set)
        if reorder is None:
            break
        shard, dst = reorder
        src = shard.replicas[0]
        replicas = (dst, *(n for n in shard.replicas if n != dst))
        changed[shard.shard_id] = replace(shard, epoch=shard.epoch + 1, replicas=replicas)
        if src in leads:
            leads[src] -= 1
        leads[dst] += 1
    return [changed[i] for i in sorted(changed)]


def split_point(shard: ShardInfo) -> int | None:
    """The slot that halves ``shard``'s slots (the first slot of the upper half), or
    None for a shard of one slot (it cannot be split: a hot single slot stays whole)."""
    total = sum(last - first + 1 for first, last in shard.slot_ranges)
    if total < 2:
        return None
    before = total // 2
    for first, last in shard.slot_ranges:
        size = last - first + 1
        if before < size:
            return first + before
        before -= size
    return None  # unreachable: before < total


def order_split(shard: ShardInfo, child_id: int, first_slot: int) -> ShardInfo:
    """``shard`` with a split before ``first_slot`` into shard ``child_id`` ordered, at
    the next epoch (validated when the map applies it)."""
    return replace(shard, epoch=shard.epoch + 1, split=(child_id, first_slot))


@dataclass(frozen=True, slots=True)
class MergeSettings:
    #: Two shards merge only if together they hold fewer data bytes than this.
    max_bytes: int
    #: ... and each executes fewer client commands per second than this.
    max_ops_per_s: float
    #: Never fewer shards than this.
    min_shards: int
    #: Merges (and the moves that prepare them) under way at once, cluster-wide.
    max_pending: int


def plan_merges(
    shard_map: ShardMap,
    data_bytes: Mapping[int, int],
    ops_per_s: Mapping[int, float],
    settings: MergeSettings,
    *,
    live: Collection[int],
    busy: Collection[int] = (),
) -> list[ShardInfo]:
    """Merges to order in this round (module docstring), each the right shard of a pair
    with ``merge_into`` set at a new epoch, or, for a pair on different nodes, a move of
    the right shard onto the left one's nodes. Only shards with a reported size, no
    target, nothing under way, replicas all in ``live``, and not in ``busy``."""
    shards = shard_map.shards
    pending = len(shard_map.pending_merges()) + sum(
        1 for s in shards.values() if s.target and not s.frozen
    )
    room = min(settings.max_pending - pending, len(shards) - settings.min_shards)
    if room <= 0:
        return []

    frozen = shard_map.frozen_ids()

    def ready(shard: ShardInfo) -> bool:
        return (
            not shard.target
            and shard.shard_id not in frozen
            and shard.shard_id not in busy
            and shard.shard_id in data_bytes
            and ops_per_s.get(shard.shard_id, 0.0) < settings.max_ops_per_s
            and all(n in live for n in shard.replicas)
            and bool(shard.slot_ranges)
        )

    by_slot = sorted(shards.values(), key=lambda s: s.slot_ranges[0][0])
    ordered: list[ShardInfo] = []
    taken: set[int] = set()
    for left, right in itertools.pairwise(by_slot):
        if len(ordered) >= room:
            break
        if left.shard_id in taken or right.shard_id in taken or not (ready(left) and ready(right)):
            continue
        if left.slot_ranges[-1][1] + 1 != right.slot_ranges[0][0]:
            continue
        if data_bytes[left.shard_id] + data_bytes[right.shard_id] >= settings.max_bytes:
            continue
        if set(left.replicas) == set(right.replicas):
            ordered.append(replace(right, epoch=right.epoch + 1, merge_into=left.shard_id))
        else:
            ordered.append(replace(right, epoch=right.epoch + 1, target=left.replicas))
        taken |= {left.shard_id, right.shard_id}
    return sorted(ordered, key=lambda s: s.shard_id)


def plan_splits(
    shard_map: ShardMap,
    data_bytes: Mapping[int, int],
    split_bytes: int,
    *,
    max_pending: int,
    busy: Collection[int] = (),
    ops_per_s: Mapping[int, float] | None = None,
    split_ops_per_s: float = 0.0,
) -> list[ShardInfo]:
    """Shards to split in this round (each with its split ordered at a new epoch),
    largest first: those whose reported ``data_bytes`` exceed ``split_bytes`` or whose
    ``ops_per_s`` exceed ``split_ops_per_s`` (when positive), that have no target, no
    split pending, more than one slot, and are not in ``busy`` (changed in this round
    already); at most ``max_pending`` splits pending at once. Each split takes the next
    unused shard id. (Halving the slots of a hot shard spreads its load only if its
    load spreads over its keys: one hot key stays one hot shard.)"""
    room = max_pending - len(shard_map.pending_splits())
    if room <= 0:
        return []
    hot = {
        shard_id
        for shard_id, rate in (ops_per_s or {}).items()
        if split_ops_per_s > 0 and rate > split_ops_per_s
    }
    large = {shard_id for shard_id, size in data_bytes.items() if size > split_bytes}
    candidates = sorted(
        (
            (data_bytes.get(shard_id, 0), shard_id)
            for shard_id in large | hot
            if shard_id in shard_map.shards and shard_id not in busy
        ),
        reverse=True,
    )
    ordered: list[ShardInfo] = []
    next_id = shard_map.next_shard_id()
    frozen = shard_map.frozen_ids()
    for _, shard_id in candidates:
        shard = shard_map.shards[shard_id]
        point = split_point(shard)
        if shard.target or shard_id in frozen or point is None:
            continue
        ordered.append(order_split(shard, next_id, point))
        next_id += 1
        if len(ordered) >= room:
            break
    return sorted(ordered, key=lambda s: s.shard_id)


class _Domains:
    """Failure domains from the nodes' labels: ``host`` (a node without one is its own
    host) and ``zone`` (optional)."""

    def __init__(self, shard_map: ShardMap) -> None:
        self._host = {n: i.label("host") or f"node:{n}" for n, i in shard_map.nodes.items()}
        self._zone = {n: i.label("zone") for n, i in shard_map.nodes.items()}

    def score(self, node: int, others: Sequence[int]) -> int:
        """How well ``node`` joins ``others`` as a replica: -1 if it shares a host with
        one, 1 if it brings a zone they lack, else 0."""
        if any(self._host[node] == self._host[o] for o in others):
            return -1
        zone = self._zone[node]
        return 1 if zone is not None and all(self._zone[o] != zone for o in others) else 0

    def best(
        self, candidates: Sequence[int], others: Sequence[int], load: dict[int, int]
    ) -> int | None:
        """The candidate to join ``others``: on a host of its own, in a new zone if
        possible, least loaded; None if every candidate shares a host with them."""
        fitting = [n for n in candidates if self.score(n, others) >= 0]
        if not fitting:
            return None
        return min(fitting, key=lambda n: (-self.score(n, others), load[n], n))

    def misplaced(self, replicas: Sequence[int], alive: Sequence[int]) -> int | None:
        """A replica to move for the domains' sake: the later of two on one host, else
        (when zones are labelled and alive nodes span more of them) the later of two in
        one zone; None if the replicas are spread as well as they can be."""
        seen_hosts: set[str] = set()
        for n in replicas:
            if self._host[n] in seen_hosts:
                return n
            seen_hosts.add(self._host[n])
        zones_alive = {self._zone[n] for n in alive} - {None}
        used = [self._zone[n] for n in replicas]
        if len(set(used) - {None}) >= min(len(replicas), len(zones_alive)):
            return None
        seen_zones: set[str | None] = set()
        for n in replicas:
            if self._zone[n] in seen_zones:
                return n
            seen_zones.add(self._zone[n])
        return None


def _layout(shard: ShardInfo) -> tuple[int, ...]:
    return shard.target or shard.replicas


def _next_move(
    shards: dict[int, ShardInfo],
    changed: dict[int, ShardInfo],
    load: dict[int, int],
    on_node: dict[int, list[int]],
    alive: frozenset[int],
    domains: _Domains,
) -> tuple[ShardInfo, int, int] | None:
    """(shard, from, to) narrowing the replica spread, or None once it is at most 1. A
    move never puts two replicas on one host, nor lowers the number of zones used."""
    by_load = sorted(load, key=lambda n: (load[n], n))
    for src in reversed(by_load):
        for dst in by_load:
            if load[src] - load[dst] <= 1:
                break
            for shard_id in on_node[src]:
                if shard_id in changed:
                    continue
                shard = shards[shard_id]
                if dst in shard.replicas:
                    continue
                if any(n not in alive for n in shard.replicas):
                    continue  # repair's job (it waits for a budget)
                others = [n for n in shard.replicas if n != src]
                if domains.score(dst, others) < domains.score(src, others):
                    continue
                on_node[src].remove(shard_id)
                return shard, src, dst
        if load[src] - load[by_load[0]] <= 1:
            return None
    return None


def _next_byte_moves(
    shards: dict[int, ShardInfo],
    changed: dict[int, ShardInfo],
    data_bytes: Mapping[int, int],
    load: dict[int, int],
    on_node: dict[int, list[int]],
    alive: frozenset[int],
    domains: _Domains,
    settings: SchedulerSettings,
) -> list[tuple[ShardInfo, int, int]]:
    """Rule 2b: [(shard, from, to)] moving bytes from the heaviest live node to the
    lightest: one replica (if the heaviest also holds more replicas) or a swap of a
    larger replica for a smaller one (counts stay as they are), the pair whose size
    difference comes closest to half the gap, which narrows it. [] when the gap is below
    ``min_byte_gap_bytes`` or ``byte_gap_share`` of the mean, or nothing narrows it."""
    node_bytes = dict.fromkeys(alive, 0)
    for shard_id, shard in shards.items():
        now = changed.get(shard_id, shard)
        for n in now.target or now.replicas:
            if n in node_bytes:
                node_bytes[n] += data_bytes.get(shard_id, 0)
    if len(node_bytes) < 2:
        return []
    heavy = max(node_bytes, key=lambda n: (node_bytes[n], -n))
    light = min(node_bytes, key=lambda n: (node_bytes[n], n))
    gap = node_bytes[heavy] - node_bytes[light]
    mean = sum(node_bytes.values()) / len(node_bytes)
    if gap <= max(settings.min_byte_gap_bytes, settings.byte_gap_share * mean):
        return []

    def movable(shard_id: int, src: int, dst: int) -> bool:
        shard = shards[shard_id]
        if shard_id in changed or dst in shard.replicas:
            return False
        if any(n not in alive for n in shard.replicas):
            return False
        others = [n for n in shard.replicas if n != src]
        return domains.score(dst, others) >= domains.score(src, others)

    outgoing = [i for i in on_node[heavy] if movable(i, heavy, light)]
    incoming: list[int | None] = [i for i in on_node[light] if movable(i, light, heavy)]
    if load[heavy] > load[light]:
        incoming.append(None)  # a single move keeps the counts within one
    best: tuple[int, int, int | None] | None = None
    for x in outgoing:
        for y in incoming:
            delta = data_bytes.get(x, 0) - (data_bytes.get(y, 0) if y is not None else 0)
            if not 0 < delta < gap:
                continue
            miss = abs(gap - 2 * delta)
            if best is None or miss < best[0]:
                best = (miss, x, y)
    if best is None:
        return []
    _, x, y = best
    moves = [(shards[x], heavy, light)]
    on_node[heavy].remove(x)
    if y is not None:
        moves.append((shards[y], light, heavy))
        on_node[light].remove(y)
    return moves


def _next_leader_move(
    shards: dict[int, ShardInfo],
    changed: dict[int, ShardInfo],
    leads: dict[int, int],
    preferred_on: dict[int, list[int]],
    alive: frozenset[int],
) -> tuple[ShardInfo, int] | None:
    """(shard, new preferred leader) moving a preference off a dead node, or narrowing
    the spread of preferred leaders; None once it is at most 1. ``preferred_on``: node ->
    ids of the shards it is preferred for that may be reordered (consumed)."""
    for node, shard_ids in preferred_on.items():
        if node in alive:
            continue
        while shard_ids:
            shard = shards[shard_ids.pop()]
            live_replicas = [n for n in shard.replicas if n in alive]
            if live_replicas and shard.shard_id not in changed:
                return shard, min(live_replicas, key=lambda n: (leads[n], n))
    for src in sorted(leads, key=lambda n: (-leads[n], n)):
        for shard_id in preferred_on.get(src, []):
            if shard_id in changed:
                continue
            shard = shards[shard_id]
            others = [n for n in shard.replicas[1:] if n in alive]
            if not others:
                continue
            dst = min(others, key=lambda n: (leads[n], n))
            if leads[src] - leads[dst] > 1:
                preferred_on[src].remove(shard_id)
                return shard, dst
    return None


__all__ = ["SchedulerSettings", "plan"]
