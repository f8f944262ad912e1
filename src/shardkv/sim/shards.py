"""Deterministic simulation of a sharded cluster running the shipped node driver.

Every simulated node is the real ``shardkv.node.driver.NodeDriver`` (the code the asyncio
runtime runs) over the real Raft log storage and KV state machine, on a `MemoryEngine`
whose ``crash()`` loses what was not synced. What is simulated: the clock (a tick count),
the network (`Network`: drops, delays, duplicates, reordering, partitions), crashes and
restarts (through ``NodeDriver.open``, the real recovery path), and Redis-cluster-like
clients that follow ``-MOVED`` redirects. One seed drives every random choice.

A run:

1. fault phase (``fault_phase_ticks``): clients SET and GET keys spread over every shard
   while the network misbehaves and nodes crash and restart; in some seeds a new node
   joins through the placement group's leader (``join_at_tick``), as ``--join`` does;
2. liveness phase: the network heals and every node is up; within
   ``liveness_bound_ticks`` every shard must elect a leader and commit a write; then
   every node, the joined one included, must follow the placement group (be a member of
   group 0) and hold the same map, in which every node registered its client address;
3. the history is checked for linearizability per key (a write whose outcome the client
   never learned may have happened at any time after it was sent, or never).

Checked throughout: each slot is served (a client command executed on it) only by the
group that owns it in the map, at that group's epoch, and never by two groups in one
epoch. A node's driver that raises (storage or Raft invariant) fails the run.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shardkv.core.cluster.scheduler import split_point
from shardkv.core.cluster.shardmap import ShardMap
from shardkv.core.cluster.slots import key_slot
from shardkv.core.kv.scope import merge_scopes, split_scope
from shardkv.core.raft import Message
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.node.driver import ClusterSettings, NodeDriver
from shardkv.sim.cluster import derive_rng
from shardkv.sim.invariants import (
    InvariantViolation,
    LinearizabilityViolation,
    LivenessViolation,
)
from shardkv.sim.linearizability import (
    INFINITY,
    UNKNOWN,
    CheckResult,
    KvInput,
    Operation,
    check_operations,
    kv_model,
)
from shardkv.sim.network import FaultSettings, Network
from shardkv.storage.memory import MemoryEngine

#: Simulated wall clock at tick 0 (ms), and ms per tick (the drivers' tick interval).
EPOCH_MS: Final = 1_700_000_000_000
TICK_MS: Final = 100
#: Bound on driver cycles one node runs per tick (more work waits for the next tick).
MAX_CYCLES_PER_TICK: Final = 8
#: Bound on redirects and retries one client operation follows before giving up.
MAX_ATTEMPTS_PER_OP: Final = 12
#: Wall-clock budget of the exhaustive linearizability check.
LINEARIZABILITY_TIMEOUT_S: Final = 10.0

#: A join not answered within this many ticks is asked again (same peer address, so the
#: placement group answers with the same id if the first ask was applied).
JOIN_RETRY_TICKS: Final = 60
#: How often group 0's leader polls every node's status (the balance interval).
STATUS_POLL_INTERVAL_TICKS: Final = 10

#: Client ids of the liveness phase's probes (one per shard) start here.
PROBE_CLIENT_BASE: Final = 1_000_000

Plant = Callable[[NodeDriver], None]
"""A deliberate bug applied to every driver after it opens (tests prove the checks catch
it)."""


@dataclass(frozen=True, slots=True)
class ShardSimSettings:
    node_count: int = 3
    shard_count: int = 8
    replicas: int = 3
    client_count: int = 6
    key_count: int = 32
    fault_phase_ticks: int = 300
    liveness_bound_ticks: int = 400
    #: Per tick: chance that a running node crashes (losing unsynced writes).
    crash_probability: float = 0.01
    crash_min_down_ticks: int = 5
    crash_max_down_ticks: int = 60
    #: Per cycle: chance that a node crashes between its write and its sync.
    crash_before_sync_probability: float = 0.002
    snapshot_interval_entries: int = 40
    compaction_margin_entries: int = 10
    faults: FaultSettings = field(default_factory=FaultSettings)
    #: From this tick on, a new node joins through the placement group's leader, as
    #: ``--join`` does (0: none joins).
    join_at_tick: int = 0
    #: Group 0's leader calls a node unheard of for this long dead and re-creates its
    #: replicas elsewhere. Not drawn yet: at 3 s (crashes then trigger repairs and moves
    #: back) seeds 174 and 217 fail liveness / map settling (no safety violation).
    dead_node_timeout_s: float = 60.0
    #: At each of these ticks, the placement group's leader is asked to split a shard
    #: (``shardkv shard split``; retried each tick until one is ordered).
    split_at_ticks: tuple[int, ...] = ()
    #: Whether the scheduler merges shards (every shard counts as small and cold) down
    #: to ``shard_count``: the splits above are then folded back, under the same faults.
    merges: bool = False

    @staticmethod
    def draw(seed: int) -> ShardSimSettings:
        rng = derive_rng(seed, "shards-settings")
        return ShardSimSettings(
            node_count=rng.choice((3, 3, 4, 5)),
            shard_count=rng.choice((2, 4, 8, 16)),
            replicas=3,
            client_count=rng.choice((3, 6, 9)),
            key_count=rng.choice((8, 32, 64)),
            crash_probability=rng.choice((0.0, 0.005, 0.01, 0.02)),
            crash_before_sync_probability=rng.choice((0.0, 0.002, 0.01)),
            snapshot_interval_entries=rng.choice((20, 40, 200)),
            faults=FaultSettings.draw(rng),
            join_at_tick=rng.choice((0, 0, 50, 150, 250)),
            split_at_ticks=rng.choice(((), (), (40,), (100, 200), (30, 60, 90, 220))),
            merges=rng.random() < 0.7,
        )


@dataclass(slots=True)
class _Node:
    node_id: int
    engine: MemoryEngine
    driver: NodeDriver | None = None
    down_until: int = 0
    incarnation: int = 0
    #: A node that joined through a seed: the map the placement leader answered with
    #: (what `--join` keeps in the data dir with the node id).
    join_map: ShardMap | None = None

    @property
    def client_address(self) -> str:
        return f"n{self.node_id}:{6000 + self.node_id}"


@dataclass(slots=True)
class _Op:
    client: int
    key: str
    value: str | None  # None: GET
    call: int
    target: int
    attempts: int = 0
    incarnation: int = 0  # of the target node when sent (a crash loses the reply)
    awaiting: bool = False  # submitted, no reply yet
    done: bool = False


@dataclass(slots=True)
class ShardSimStats:
    ops_ok: int = 0
    ops_unknown: int = 0
    ops_abandoned: int = 0
    redirects: int = 0
    crashes: int = 0
    served: int = 0
    #: Nodes that joined through the placement group (at most one per run).
    joins: int = 0
    #: Splits ordered through the placement group's leader.
    splits_ordered: int = 0
    #: Merges applied (absorbs, counted on every replica) and recorded in the map.
    absorbs_applied: int = 0
    merges_recorded: int = 0


@dataclass(slots=True)
class ShardSimResult:
    seed: int
    settings: ShardSimSettings
    failure: InvariantViolation | None
    stats: ShardSimStats
    ticks: int
    history_size: int
    linearizability: str

    @property
    def ok(self) -> bool:
        return self.failure is None


class ShardSim:
    """One seeded run; see the module docstring."""

    def __init__(
        self, seed: int, settings: ShardSimSettings | None = None, plant: Plant | None = None
    ) -> None:
        self.seed = seed
        self.settings = settings or ShardSimSettings.draw(seed)
        self.plant = plant
        self.tick = 0
        self.stats = ShardSimStats()
        s = self.settings
        self._rng_faults = derive_rng(seed, "shards-faults")
        self._rng_clients = derive_rng(seed, "shards-clients")
        self.network: Network[Message] = Network(derive_rng(seed, "shards-network"), s.faults)
        self.members = {i: f"n{i}:7380" for i in range(1, s.node_count + 1)}
        self.nodes = {i: _Node(i, MemoryEngine()) for i in self.members}
        self.keys = [f"key-{i}" for i in range(s.key_count)]
        self.history: list[Operation] = []
        self._pending: dict[int, _Op] = {}  # client -> its operation in flight
        self._retry_at: dict[int, int] = {}  # client -> tick its op is resent
        self._seq = 0
        self.shard_map: ShardMap | None = None
        self._probe_clients: list[int] = []
        self._probed_ok: set[int] = set()
        #: (slot, epoch) -> group that served it; a second group is a violation.
        self._served_by: dict[tuple[int, int], int] = {}
        #: (group, epoch) -> the slots the placement group gave that group at that epoch.
        self._epoch_slots: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
        self._last_recorded: dict[int, ShardMap] = {}
        self._poll_interval_ticks = STATUS_POLL_INTERVAL_TICKS
        self._joined = False
        self._splits_wanted = 0
        self._split_asked_at: int | None = None
        self._join_asked_at = -JOIN_RETRY_TICKS
        self.joined_node: int | None = None
        for node in self.nodes.values():
            self._start(node)

    # -- nodes -----------------------------------------------------------------------------

    def _fail(self, invariant: str, detail: str) -> InvariantViolation:
        return InvariantViolation(self.seed, self.tick, invariant, detail)

    def _start(self, node: _Node) -> None:
        s = self.settings
        node.incarnation += 1
        settings = ClusterSettings(
            node_id=node.node_id,
            initial_members=self.members,
            client_address=node.client_address,
            snapshot_interval_entries=s.snapshot_interval_entries,
            compaction_margin_entries=s.compaction_margin_entries,
            proposal_timeout_s=3.0,
            shard_count=s.shard_count,
            replicas=s.replicas,
            join=node.join_map is not None,
            join_map=node.join_map,
            dead_node_timeout_s=s.dead_node_timeout_s,
            # Simulated writes wait out partitions and crashes: the p99 back-off would
            # hold most balance moves back, and the moves are what the runs should cover.
            rebalance_max_p99_ms=0.0,
            shard_merge_bytes=1 << 40 if s.merges else 1,
            shard_split_bytes=1 << 42,
            shard_merge_ops_per_s=1e12,
            shard_min_count=s.shard_count,
        )
        driver = NodeDriver(
            settings,
            node.engine,
            clock_ms=lambda: EPOCH_MS + self.tick * TICK_MS,
            monotonic_s=lambda: self.tick * TICK_MS / 1000,
            rng=derive_rng(self.seed, f"shards-node-{node.node_id}-{node.incarnation}"),
        )
        driver.open()
        driver.on_serve = self._checker(node.node_id)
        if self.plant is not None:
            self.plant(driver)
        node.driver = driver
        # The transport's hello: connected peers tell each other their client addresses.
        for other in self.nodes.values():
            if other is not node and other.driver is not None:
                driver.learn_client_address(other.node_id, other.driver.settings.client_address)
                other.driver.learn_client_address(node.node_id, settings.client_address)
        if self.shard_map is None:
            self.shard_map = driver.shard_map

    def _ask_to_join(self) -> None:
        """A new node asks the placement group's leader to register it (the Admin `Join`
        call of `--join`); once it has an id it starts empty and follows group 0."""
        leader = next(
            (
                n
                for n in self.nodes.values()
                if n.driver is not None and n.driver.placement_status()[0].is_leader
            ),
            None,
        )
        if leader is None or leader.driver is None:
            return
        driver = leader.driver
        new_id = max(self.nodes) + 1 if self.joined_node is None else self.joined_node
        peer = f"n{new_id}:7380"
        self._join_asked_at = self.tick

        def done(replies: list[Reply]) -> None:
            node_id = replies[0]
            if self._joined and node_id == self.joined_node:
                return  # the answer to an earlier ask, after a retry succeeded
            if not isinstance(node_id, int):
                self._join_asked_at = -JOIN_RETRY_TICKS  # not applied: ask again at once
                return
            _, shard_map = driver.placement_status()
            if node_id in self.nodes or shard_map is None:
                raise self._fail("join", f"node id {node_id} given twice")
            node = _Node(node_id, MemoryEngine(), join_map=shard_map)
            self.members[node_id] = peer
            self.nodes[node_id] = node
            self.joined_node = node_id
            self._joined = True
            self.stats.joins += 1
            self._start(node)

        driver.join_node(peer, f"n{new_id}:{6000 + new_id}", "", done)

    def _placement_leader(self) -> NodeDriver | None:
        for n in self.nodes.values():
            if n.driver is not None and n.driver.placement_status()[0].is_leader:
                return n.driver
        return None

    def _ask_to_split(self) -> None:
        """The operator's ``shardkv shard split`` of a shard picked at random (one with
        more than one slot and no move or split under way)."""
        driver = self._placement_leader()
        if driver is None or driver.shard_map is None:
            return
        shards = [
            s
            for s in driver.shard_map.shards.values()
            if not s.target
            and s.shard_id not in driver.shard_map.frozen_ids()
            and split_point(s) is not None
        ]
        if not shards:
            return
        shard = self._rng_faults.choice(sorted(shards, key=lambda s: s.shard_id))
        self._split_asked_at = self.tick

        def done(replies: list[Reply]) -> None:
            self._split_asked_at = None
            if isinstance(replies[0], int):
                self._splits_wanted -= 1
                self.stats.splits_ordered += 1

        driver.split_shard(shard.shard_id, None, done)

    def _record_epochs(self) -> None:
        """Remember the slots every map any node holds gives each (shard, epoch): a
        replica may serve at an epoch the maps have all moved past (it had not applied
        the split or retire that ended it yet)."""
        for node in self.nodes.values():
            known = node.driver.shard_map if node.driver is not None else None
            if known is None or known is self._last_recorded.get(node.node_id):
                continue
            self._last_recorded[node.node_id] = known
            for shard in known.shards.values():
                self._epoch_slots.setdefault((shard.shard_id, shard.epoch), shard.slot_ranges)

    def _ranges_at(self, group: int, epoch: int) -> tuple[tuple[int, int], ...] | None:
        """The slots some node's map gives ``group`` at ``epoch``: its entry at that
        epoch, a split ordered at ``epoch - 1`` (both shards serve at ``epoch`` from
        the split entry on, before the map records them), or an absorb ordered at
        ``epoch - 1`` (the survivor serves both shards' slots from its absorb entry on)."""
        for node in self.nodes.values():
            known = node.driver.shard_map if node.driver is not None else None
            if known is None:
                continue
            shard = known.shards.get(group)
            if shard is not None and shard.epoch == epoch:
                return shard.slot_ranges
            if shard is not None and shard.absorb and shard.epoch + 1 == epoch:
                source = known.shards[shard.absorb]
                return merge_scopes(shard.scope, source.scope).slot_ranges
            if (
                shard is not None
                and (shard.absorb or shard.merge_into)
                and shard.epoch == epoch + 1
            ):
                # (Ordering a merge step raised the epoch and kept the slots: a replica
                # that has not applied that step yet serves them at the epoch before.)
                return shard.slot_ranges
            for parent in known.pending_splits():
                if (
                    parent.split
                    and parent.epoch + 1 == epoch
                    and group
                    in (
                        parent.shard_id,
                        parent.split[0],
                    )
                ):
                    kept, moved = split_scope(parent.scope, parent.split[1], parent.split[0])
                    return (kept if group == parent.shard_id else moved).slot_ranges
        return None

    def _checker(self, node_id: int) -> Callable[[int, int, int], None]:
        def served(group: int, epoch: int, slot: int) -> None:
            self.stats.served += 1
            # The slots the placement group gave ``group`` at ``epoch`` (epochs also rise
            # on membership and leader moves, which keep the slots).
            ranges = self._epoch_slots.get((group, epoch))
            if ranges is None:
                ranges = self._ranges_at(group, epoch)
                if ranges is not None:
                    self._epoch_slots[(group, epoch)] = ranges
            if ranges is None or not any(first <= slot <= last for first, last in ranges):
                raise self._fail(
                    "slot served by a group that does not own it",
                    f"node {node_id}: group {group} at epoch {epoch} served slot {slot}, "
                    f"which the map gives to shard {group} at epoch {epoch} only as "
                    f"{ranges}",
                )
            first = self._served_by.setdefault((slot, epoch), group)
            if first != group:
                raise self._fail(
                    "one slot served by two groups in one epoch",
                    f"slot {slot} epoch {epoch}: groups {first} and {group}",
                )

        return served

    def _count_merges(self, driver: NodeDriver) -> None:
        self.stats.absorbs_applied += driver.merges_applied
        self.stats.merges_recorded += driver.merges_recorded

    def _crash(self, node: _Node) -> None:
        s = self.settings
        if node.driver is not None:
            self._count_merges(node.driver)
        node.engine.crash()
        node.driver = None
        # The transport's part: the peers' streams to the dead process break.
        for other in self.nodes.values():
            if other.driver is not None:
                other.driver.report_unreachable(node.node_id)
        node.down_until = self.tick + self._rng_faults.randint(
            s.crash_min_down_ticks, s.crash_max_down_ticks
        )
        self.stats.crashes += 1

    # -- one tick --------------------------------------------------------------------------

    def step_tick(self, *, faults: bool, clients: bool) -> None:
        self.tick += 1
        for env in self.network.deliver_due(self.tick):
            node = self.nodes.get(env.dst)  # (None: a joining node not started yet)
            if node is not None and node.driver is not None:
                node.driver.step([env.payload])
        for node in self.nodes.values():
            if node.driver is None and self.tick >= node.down_until:
                self._start(node)
            if node.driver is not None:
                node.driver.tick()
        join_at = self.settings.join_at_tick
        # (An answer lost with a crashed leader never comes: ask again after a while.)
        if (
            join_at
            and self.tick >= join_at
            and not self._joined
            and self.tick - self._join_asked_at >= JOIN_RETRY_TICKS
        ):
            self._ask_to_join()
        self._record_epochs()
        if self.tick in self.settings.split_at_ticks:
            self._splits_wanted += 1
        asked = self._split_asked_at
        # (An answer lost with a crashed leader never comes: ask again after a while.)
        if self._splits_wanted and (asked is None or self.tick - asked >= JOIN_RETRY_TICKS):
            self._ask_to_split()
        if self.tick % self._poll_interval_ticks == 0:
            self._poll_statuses()
        if clients:
            self._run_clients()
        for node in list(self.nodes.values()):  # (a join applied here adds a node)
            self._run_cycles(node, faults)
        if faults:
            self._inject_faults()

    def _poll_statuses(self) -> None:
        """What `ClusterNode._poll_statuses` does over gRPC: group 0's leader asks every
        node it can reach (not partitioned, up) for its groups' status."""
        for node in self.nodes.values():
            driver = node.driver
            if driver is None:
                continue
            for target in driver.status_poll_targets():
                other = self.nodes.get(target)
                if other is None or other.driver is None:
                    continue
                if self.network.is_blocked(node.node_id, target) or self.network.is_blocked(
                    target, node.node_id
                ):
                    continue
                driver.record_status(
                    target, other.driver.group_reports(), other.driver.settings.labels
                )

    def _send(self, node: _Node, messages: list[Message]) -> None:
        for m in messages:
            self.network.send(self.tick, node.node_id, m.to, m)

    def _run_cycles(self, node: _Node, faults: bool) -> None:
        s = self.settings
        for _ in range(MAX_CYCLES_PER_TICK):
            driver = node.driver
            if driver is None:
                return
            cycle = driver.collect()
            self._send(node, driver.take_messages())
            if cycle is None:
                return
            node.engine.write(cycle.batch)
            driver.written(cycle)
            if faults and self._rng_faults.random() < s.crash_before_sync_probability:
                self._crash(node)  # written, not synced: the crash loses it
                return
            if cycle.must_sync:
                node.engine.sync()
            jobs = driver.synced(cycle)
            self._send(node, driver.take_messages())
            for job in jobs:
                driver.snapshot_built(job, job.build())
            # Snapshot and compaction writes are unsynced until the next cycle's sync.
        # Messages that SNAP carries are delivered like any other; report them sent.
        if node.driver is not None:
            for m in node.driver.take_messages():
                self.network.send(self.tick, node.node_id, m.to, m)

    def _inject_faults(self) -> None:
        s = self.settings
        rng = self._rng_faults
        up = [n for n in self.nodes.values() if n.driver is not None]
        down = len(self.nodes) - len(up)
        # Keep a majority up most of the time, so the run makes progress between faults.
        if up and down < (len(self.nodes) - 1) // 2 + 1 and rng.random() < s.crash_probability:
            self._crash(rng.choice(up))
        faults = s.faults
        if faults.partition_probability and rng.random() < faults.partition_probability:
            ids = list(self.nodes)
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.network.partition(ids[:cut], ids[cut:])
        elif rng.random() < 0.02:
            self.network.heal()

    # -- clients ---------------------------------------------------------------------------

    def _run_clients(self) -> None:
        rng = self._rng_clients
        for client in range(self.settings.client_count):
            op = self._pending.get(client)
            if op is not None:
                node = self.nodes[op.target]
                if op.awaiting and (node.incarnation != op.incarnation or node.driver is None):
                    self._finish(op, UNKNOWN, known=False)  # its node crashed: no reply
                elif self._retry_at.get(client) == self.tick:
                    self._send_op(op)
                continue
            if rng.random() < 0.5:
                continue
            key = rng.choice(self.keys)
            self._seq += 1
            value = f"c{client}-{self._seq}" if rng.random() < 0.5 else None
            op = _Op(client, key, value, self.tick, rng.choice(list(self.nodes)))
            self._pending[client] = op
            self._send_op(op)

    def _send_op(self, op: _Op) -> None:
        node = self.nodes[op.target]
        op.attempts += 1
        op.incarnation = node.incarnation
        if node.driver is None:
            self._retry(op, self._rng_clients.choice(list(self.nodes)))
            return
        args = (
            [b"SET", op.key.encode(), op.value.encode()] if op.value else [b"GET", op.key.encode()]
        )
        op.awaiting = True
        node.driver.submit([args], lambda replies: self._on_reply(op, replies[0]))

    def _retry(self, op: _Op, target: int) -> None:
        if op.attempts >= MAX_ATTEMPTS_PER_OP and op.client < PROBE_CLIENT_BASE:
            # Every attempt so far definitely failed (redirect, no leader): it never happened.
            self._pending.pop(op.client, None)
            self.stats.ops_abandoned += 1
            return
        op.target = target
        self._retry_at[op.client] = self.tick + 1 + self._rng_clients.randint(0, 3)

    def _on_reply(self, op: _Op, reply: Reply) -> None:
        if op.done:
            return
        op.awaiting = False
        if isinstance(reply, ErrorReply):
            text = reply.message
            if text.startswith("MOVED "):
                self.stats.redirects += 1
                address = text.split()[2]
                self._retry(op, int(address.split(":")[0].lstrip("n")))
            elif text.startswith("TRYAGAIN"):
                self._retry(op, op.target)
            elif text.startswith("UNKNOWN"):
                self._finish(op, UNKNOWN, known=False)
            else:
                raise self._fail("unexpected error reply", f"{op.key}: {text}")
            return
        if op.value is not None:
            if reply != OK:
                raise self._fail("unexpected SET reply", repr(reply))
            self._finish(op, None, known=True)
            if op.client >= PROBE_CLIENT_BASE:
                self._probed_ok.add(op.client)
        else:
            value = "" if reply is None else bytes(reply).decode()  # type: ignore[arg-type]
            self._finish(op, value, known=True)

    def _finish(self, op: _Op, output: object, *, known: bool) -> None:
        op.done = True
        self._pending.pop(op.client, None)
        self._retry_at.pop(op.client, None)
        if op.value is None and not known:
            return  # a read that returned nothing constrains nothing
        inp = KvInput("put", op.key, op.value) if op.value is not None else KvInput("get", op.key)
        ret = float(self.tick) + 0.5 if known else INFINITY
        if known:
            self.stats.ops_ok += 1
        else:
            self.stats.ops_unknown += 1
        self.history.append(Operation(op.client, inp, output if known else UNKNOWN, op.call, ret))

    # -- phases ----------------------------------------------------------------------------

    def run(self) -> None:
        s = self.settings
        for _ in range(s.fault_phase_ticks):
            self.step_tick(faults=True, clients=True)
        self.network.heal()
        self.network.settings = FaultSettings.healed()
        for node in self.nodes.values():
            node.down_until = min(node.down_until, self.tick)
        # Healed: the clients' last operations finish, then one write to every shard
        # (through a client that follows redirects) must succeed within the bound.
        probes = self._probe_ops()
        for _ in range(s.liveness_bound_ticks):
            self.step_tick(faults=False, clients=False)
            for op in list(self._pending.values()):
                node = self.nodes[op.target]
                if op.awaiting and (node.incarnation != op.incarnation or node.driver is None):
                    self._finish(op, UNKNOWN, known=False)  # its node crashed: no reply
                elif self._retry_at.get(op.client) == self.tick:
                    self._send_op(op)
            if not self._pending and probes:
                probe = probes.pop()
                probe.call = self.tick
                self._pending[probe.client] = probe
                self._send_op(probe)
            if not self._pending and not probes:
                break
        else:
            raise LivenessViolation(
                self.seed,
                self.tick,
                "liveness",
                f"after {s.liveness_bound_ticks} healed ticks: {len(self._pending)} ops "
                f"pending, {len(probes)} shards not probed, leaders {self._leaders()}",
            )
        for probe_client in self._probe_clients:
            if probe_client not in self._probed_ok:
                raise LivenessViolation(
                    self.seed, self.tick, "liveness", f"probe client {probe_client} gave up"
                )
        # The placement group: every node registered its client address, and every node
        # follows one map.
        for _ in range(s.liveness_bound_ticks):
            if self._placement_settled():
                break
            self.step_tick(faults=False, clients=False)
        else:
            maps = {
                n.node_id: n.driver.shard_map.encode().decode()
                for n in self.nodes.values()
                if n.driver is not None and n.driver.shard_map is not None
            }
            raise LivenessViolation(
                self.seed, self.tick, "placement", f"the maps did not settle: {maps}"
            )
        for node in self.nodes.values():
            if node.driver is not None:
                self._count_merges(node.driver)

    def _placement_settled(self) -> bool:
        encoded = set()
        for node in self.nodes.values():
            if node.driver is None:
                return False
            _, shard_map = node.driver.placement_status()
            if shard_map is None:
                return False
            if any(
                n not in self.nodes or info.client_address != self.nodes[n].client_address
                for n, info in shard_map.nodes.items()
            ):
                return False
            encoded.add(shard_map.encode())
            if node.driver.placement_status()[0].is_leader:
                conf = node.driver.placement_status()[0].raw.conf_state()
                if not all(conf.is_member(n) for n in self.nodes):
                    return False  # a node (the one that joined) does not follow group 0
        if self.settings.join_at_tick and not self._joined:
            return False
        # One map, in which every split and merge ordered was applied and recorded.
        if len(encoded) != 1:
            return False
        return not any(s.frozen for s in ShardMap.decode(encoded.pop()).shards.values())

    def _probe_ops(self) -> list[_Op]:
        """One SET per shard, on a key of that shard, for the liveness phase."""
        leader = self._placement_leader()
        if leader is not None and leader.shard_map is not None:
            self.shard_map = leader.shard_map  # (splits add shards)
        assert self.shard_map is not None
        probes = []
        for shard_id in sorted(self.shard_map.shards):
            i = 0
            while self.shard_map.shard_id_of_slot(key_slot(f"probe-{i}".encode())) != shard_id:
                i += 1
            client = PROBE_CLIENT_BASE + shard_id
            self._probe_clients.append(client)
            target = self._rng_clients.choice(list(self.nodes))
            probes.append(_Op(client, f"probe-{i}", f"probe-{shard_id}", self.tick, target))
        return probes

    def _leaders(self) -> dict[int, int]:
        leaders: dict[int, int] = {}
        for node in self.nodes.values():
            if node.driver is None:
                continue
            for shard, replica in node.driver.groups():
                if replica.is_leader:
                    leaders[shard.shard_id] = node.node_id
        return leaders

    def _every_shard_led(self) -> bool:
        assert self.shard_map is not None
        return len(self._leaders()) == len(self.shard_map.shards)

    def check_linearizability(self) -> str:
        report = check_operations(kv_model, self.history, timeout_s=LINEARIZABILITY_TIMEOUT_S)
        if report.result is CheckResult.ILLEGAL:
            raise LinearizabilityViolation(
                self.seed, self.tick, "linearizability", report.explanation or "illegal"
            )
        return report.result.name.lower()


def run_seed(
    seed: int, settings: ShardSimSettings | None = None, plant: Plant | None = None
) -> ShardSimResult:
    """Run one seed end to end; never raises for a failed run (see ``failure``)."""
    sim: ShardSim | None = None
    failure: InvariantViolation | None = None
    linearizability = "skipped"
    try:
        sim = ShardSim(seed, settings, plant)
        sim.run()
        linearizability = sim.check_linearizability()
    except InvariantViolation as exc:
        failure = exc
    except Exception as exc:  # a crash of the driver or the simulator fails the seed
        tick = sim.tick if sim is not None else 0
        failure = InvariantViolation(
            seed, tick, "exception", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        )
    return ShardSimResult(
        seed=seed,
        settings=sim.settings if sim is not None else (settings or ShardSimSettings.draw(seed)),
        failure=failure,
        stats=sim.stats if sim is not None else ShardSimStats(),
        ticks=sim.tick if sim is not None else 0,
        history_size=len(sim.history) if sim is not None else 0,
        linearizability=linearizability,
    )
