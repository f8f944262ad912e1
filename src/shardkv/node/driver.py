"""The multi-group node driver: every Raft group hosted by one node, without I/O.

The same object runs inside the asyncio node runtime (``node/runtime.py``) and inside the
deterministic simulator (``sim/shards.py``). It owns the replicas, routes client commands
by slot, and gathers every group's Ready into one batch per cycle, but it never sleeps,
syncs, or touches a socket or a clock: the caller does, in this order:

1. Inputs, at any time: ``step`` (peer messages), ``tick``, ``submit`` (client commands),
   ``report_unreachable`` / ``report_snapshot`` (transport outcomes). Each one that makes
   work calls ``on_work`` so the caller knows to run a cycle.
2. ``cycle = collect()``: propose the writes and start the ReadIndex rounds queued since
   the last cycle, then take the Ready of every group that may have work (it tracks them;
   it never scans every group) and stage their durable parts and applied effects into
   ONE ``WriteBatch``. ``None``: nothing to do.
3. Send ``take_messages()``: every group's messages that may leave before the sync,
   together, so the transport sends one stream message per peer node.
4. Write ``cycle.batch`` to the engine (unsynced), then ``written(cycle)``: answers the
   clients whose entries were applied (committed, so durable on a quorum that includes
   the leader; see ``node/replica.py``).
5. If ``cycle.must_sync``, sync the engine: the one fsync of the cycle, for all groups.
6. ``jobs = synced(cycle)``: send what promised durable state, serve reads, advance every
   group. Send ``take_messages()`` again. Each returned `SnapshotJob` serialises a
   snapshot (``job.build()``, slow: run it off the loop) and is finished with
   ``snapshot_built(job, data)`` (or ``snapshot_failed``).

Time comes in: ``clock_ms`` (wall milliseconds, stamped into proposals by leaders) and
``monotonic_s`` (proposal timeouts); randomness as ``rng``. A storage error raised by any
step is fatal: the caller must stop the node (fail-stop), never retry.

Shards: the node hosts one replica of every shard the cluster map places on it, and a
replica of the placement group (group 0, `core/cluster/placement.py`), whose applied state
IS the map: a new cluster's first map is computed by every member alike from
``--initial-cluster`` and ``--shards`` and becomes group 0's first snapshot; from then on
the map changes only through group 0's log, and every node follows it by applying that
log (as a voter, or as a learner beyond the first five nodes). A request goes to the group
that owns its slot; a replica serves a slot only while its own scope (its shard at its
epoch) holds it.

Group 0's leader keeps the map true to the cluster (`NodeDriver._reconcile_placement`):
it registers the addresses nodes announce (their own, and their peers' through the
transport's hello), records membership changes of the shards it hosts (with a new epoch),
marks a node that lost its last replica as removed, and keeps every live node a member of
group 0.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from shardkv.core.cluster.merge import (
    AbsorbOrder,
    RetireOrder,
    absorb_command,
    retire_command,
)
from shardkv.core.cluster.placement import (
    ACL_COMMANDS,
    SHARD_MAP_KEY,
    PlacementMachine,
    join_node_command,
    merge_shards_command,
    placement_members,
    rebalance_command,
    register_node_command,
    set_shards_command,
)
from shardkv.core.cluster.routing import CROSSSLOT, KEYLESS, command_slot
from shardkv.core.cluster.scheduler import (
    MergeSettings,
    SchedulerSettings,
    order_split,
    plan,
    plan_merges,
    plan_splits,
    split_point,
)
from shardkv.core.cluster.shardmap import (
    DEFAULT_SHARD_COUNT,
    NODE_DRAINING,
    NODE_REMOVED,
    NODE_UP,
    PLACEMENT_GROUP_ID,
    NodeInfo,
    ShardInfo,
    ShardMap,
    initial_layout,
)
from shardkv.core.cluster.slots import SLOT_COUNT
from shardkv.core.cluster.split import (
    SPLIT_INIT_INDEX,
    SPLIT_INIT_TERM,
    SPLIT_PENDING_SNAPSHOT_DATA,
    SplitOrder,
    split_command,
)
from shardkv.core.commands import CommandKind, CommandSpec, lookup
from shardkv.core.engine import DATA, META, WriteBatch
from shardkv.core.kv import KVStateMachine
from shardkv.core.kv.codec import scope_key
from shardkv.core.kv.machine import parse_scan_cursor
from shardkv.core.kv.scope import (
    KeyScope,
    SlotRange,
    encode_scope_record,
    merge_scopes,
    scope_record_changed_at,
    split_scope,
)
from shardkv.core.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
)
from shardkv.core.raft import StorageError as RaftStorageError
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.node import crashpoints
from shardkv.node.replica import (
    SWEEP_COMMAND,
    ReadyWork,
    Replica,
    ReplyCallback,
)
from shardkv.node.shard_snapshots import ShardSnapshots
from shardkv.observability.logging import get_logger
from shardkv.storage import Engine
from shardkv.storage.engine import ConsistentView
from shardkv.storage.kv_snapshot import (
    KVSnapshotError,
    check_covered,
    read_applied_index,
    stage_applied_index,
    stage_delete_scope,
)
from shardkv.storage.raft_log import RaftLogStorage
from shardkv.storage.snapshot_files import SnapshotFileError, SnapshotFiles

log = get_logger(__name__)

#: The first shard: the only one of a one-shard cluster (and of one joined by `member add`).
DEFAULT_GROUP_ID: Final = 1
#: Context of the heartbeat with which a leader tells its followers it hibernates.
HIBERNATE_CONTEXT: Final = b"\x00hibernate"
#: Balance checks in a row a hosted shard must be absent from the map's placement before
#: its replica here is destroyed (its removal was recorded from the shard's committed
#: membership; the wait covers a membership change not recorded yet).
UNPLACED_CHECKS_BEFORE_DESTROY: Final = 10
#: Balance intervals between sweeps of snapshot files no snapshot refers to.
FILE_SWEEP_INTERVALS: Final = 60
#: Client write latencies kept for `NodeDriver.write_p99_ms`: at most this many, and
#: only those answered within the window count.
WRITE_P99_SAMPLES: Final = 4096
WRITE_P99_WINDOW_S: Final = 10.0
#: A shard leader's report older than this many balance intervals is not used.
REPORT_MAX_AGE_INTERVALS: Final = 5
#: Answer to requests a destroyed replica still held.
REPLICA_GONE: Final = ErrorReply("TRYAGAIN this shard moved away from this node; retry it")
#: Answer for a slot of a shard that retired here and whose survivor has not taken it yet.
HANDING_OVER: Final = ErrorReply(
    "TRYAGAIN the slot is being handed over to another shard (a merge); retry in a moment"
)
#: META keys: node id (8 bytes) -> its client address, from applied leader announcements.
CLIENT_ADDRESS_PREFIX: Final = b"cluster/client/"
CLIENT_ADDRESS_PREFIX_END: Final = b"cluster/client0"
#: META keys: member node id (8 bytes) -> its peer address, kept as changes apply.
MEMBER_PREFIX: Final = b"raft/member/"
MEMBER_PREFIX_END: Final = b"raft/member0"


class MembershipError(Exception):
    """A membership change was refused or did not complete; the message says why."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How this node takes part in its Raft group(s)."""

    node_id: int
    #: node id -> peer (gRPC) address of every initial member, this node included.
    initial_members: dict[int, str]
    #: host:port clients should be sent to for this node (-MOVED replies).
    client_address: str
    #: host:port of this node's admin HTTP endpoint ("" if none), for the node registry.
    admin_address: str = ""
    tick_interval_ms: int = 100
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    #: Take a snapshot and compact the log after this many applied entries, or after
    #: this many bytes of applied entries (or the shard's own size, if larger: a
    #: snapshot copies the whole shard, so one per shard-size of writes keeps its cost
    #: linear in the writes), whichever comes first: the log is bounded in both.
    snapshot_interval_entries: int = 10_000
    snapshot_interval_bytes: int = 64 << 20
    #: Entries kept behind a snapshot, so a slightly lagging follower needs no snapshot.
    compaction_margin_entries: int = 1_000
    max_pending_reads: int = 10_000
    #: Join an existing cluster instead of creating one: added with ``shardkv member add``,
    #: or through a seed (then ``join_map`` is the map the seed answered with, used for
    #: routing until the placement group's snapshot arrives).
    join: bool = False
    join_map: ShardMap | None = None
    #: A learner is promoted once its log is within this many entries of the commit index.
    promote_lag_entries: int = 100
    #: A write not committed within this is answered -UNKNOWN (it may still commit).
    proposal_timeout_s: float = 5.0
    #: Shards and replicas per shard of a NEW cluster (ignored once the map exists).
    shard_count: int = 1
    replicas: int = 3
    #: How often a leader checks whether to hand its shard to the preferred replica.
    leader_balance_interval_ticks: int = 10
    #: A shard with nothing to do (every entry committed and on every replica, no client
    #: waiting) hibernates after this many ticks: no ticks, no heartbeats, on any replica,
    #: until a message or a request wakes it. 0: never.
    hibernate_after_ticks: int = 30
    #: Placement (group 0's leader): a node not heard from for this long is dead.
    dead_node_timeout_s: float = 60.0
    #: Placement: shards with a membership change under way at once, cluster-wide.
    max_concurrent_moves: int = 4
    #: Placement: the scheduler moves replicas and leaders by itself.
    rebalance: bool = True
    #: Placement: a shard whose leader reports more data bytes than this is split.
    shard_split_bytes: int = 64 << 20
    #: Placement: a shard whose leader executes more client commands per second than
    #: this is split too (0: never by load).
    shard_split_ops_per_s: float = 0.0
    #: Placement: two adjacent shards merge when together they hold fewer data bytes than
    #: this (and than a quarter of ``shard_split_bytes``, so a merge never splits again
    #: soon) and each executes fewer client commands per second than
    #: ``shard_merge_ops_per_s``, while there are more than ``shard_min_count`` shards
    #: (0: the number the cluster was created with).
    shard_merge_bytes: int = 8 << 20
    shard_merge_ops_per_s: float = 50.0
    shard_min_count: int = 0
    #: Placement: no balance move or split starts while a live node's write p99 is above
    #: this (ms; 0: never back off). Repairs and drains go on.
    rebalance_max_p99_ms: float = 500.0
    #: This node's failure domains (``--labels``), registered in the map.
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _GroupState:
    replica: Replica
    storage: RaftLogStorage
    shard: ShardInfo
    last_snapshot_index: int = 0
    last_snapshot_bytes: int = 0
    #: The term this replica was last seen to lead in (a new leadership starts a clock).
    leader_term: int = 0
    #: Tick count when this replica last became leader (leader balancing waits a while,
    #: so a node handing its leaders away on shutdown does not get them straight back).
    leader_since_tick: int = 0
    #: A membership change was applied: snapshot soon, so a new member's first snapshot
    #: already lists it.
    snapshot_due: bool = False
    snapshot_running: bool = False
    #: Not ticked (see ``ClusterSettings.hibernate_after_ticks``).
    hibernating: bool = False
    #: This leader proposed its shard's split and awaits the outcome.
    split_proposed: bool = False
    #: Ticks this leader has had nothing to do, and its last log index meanwhile.
    quiet_ticks: int = 0
    quiet_index: int = 0


@dataclass(slots=True)
class Cycle:
    """One cycle's staged work (see the module docstring)."""

    batch: WriteBatch = field(default_factory=WriteBatch)
    works: list[ReadyWork] = field(default_factory=list)

    @property
    def must_sync(self) -> bool:
        return any(w.must_sync for w in self.works)


@dataclass(frozen=True, slots=True)
class GroupReport:
    """One group as a node reported it to the placement group's leader (`record_status`)."""

    group_id: int
    term: int
    is_leader: bool
    voters: tuple[int, ...]
    learners: tuple[int, ...]
    #: The reporter applied everything it knows committed: its membership is committed.
    settled: bool
    reported_s: float = 0.0
    #: The shard's key and value bytes as the reporter counts them, and the client
    #: commands the reporter's replica executed since it opened.
    data_bytes: int = 0
    commands_applied: int = 0
    #: The epoch of the reporter's applied scope, and whether its replica retired (a
    #: merge: the placement group waits for every replica's before the next step).
    scope_epoch: int = 0
    retired: bool = False


@dataclass(slots=True)
class SnapshotJob:
    """A snapshot to serialise from ``view`` (taken at ``index``); see `NodeDriver`."""

    shard: ShardInfo
    index: int
    conf_state: ConfState
    view: ConsistentView
    snapshots: ShardSnapshots
    #: The group's log storage when the job started (a group destroyed and opened again
    #: has another one: the snapshot is then dropped).
    storage: RaftLogStorage

    def build(self) -> bytes:
        """Serialise the snapshot and close the view (slow: it reads every key). Returns
        the Raft snapshot data: a file reference when the node keeps snapshot files."""
        if self.shard.shard_id == PLACEMENT_GROUP_ID:
            try:
                data = self.view.get(META, SHARD_MAP_KEY)
            finally:
                self.view.close()
            assert data is not None
            return data
        return self.snapshots.build(self.view, self.shard.scope)


class NodeDriver:
    """See the module docstring. Single-threaded: call every method from one thread."""

    def __init__(
        self,
        settings: ClusterSettings,
        engine: Engine,
        *,
        clock_ms: Callable[[], int],
        monotonic_s: Callable[[], float],
        rng: random.Random,
        on_work: Callable[[], None] = lambda: None,
        add_peer: Callable[[int, str], None] = lambda node_id, address: None,
        remove_peer: Callable[[int], None] = lambda node_id: None,
        snapshot_files: SnapshotFiles | None = None,
    ) -> None:
        self.settings = settings
        #: How shard snapshots are kept: in files (``snapshot_files``) or inline.
        self.snapshots = ShardSnapshots(snapshot_files)
        self.node_id = settings.node_id
        self._engine = engine
        self.add_peer = add_peer
        self.remove_peer = remove_peer
        self._clock_ms = clock_ms
        self._monotonic_s = monotonic_s
        self._rng = rng
        self.on_work = on_work
        #: Every group hosted here: the placement group (0) and the data groups (shards).
        self._groups: dict[int, _GroupState] = {}
        self._placement: _GroupState | None = None
        #: Set by `set_disk_full`.
        self.disk_full_reply: ErrorReply | None = None
        #: The map this node routes by: group 0's applied map (a provisional guess only on
        #: a node that joined and has not received group 0's snapshot yet).
        self.shard_map: ShardMap | None = None
        #: Slot -> group hosted here that owns it (None: another node's shard).
        self._slot_group: list[_GroupState | None] = [None] * SLOT_COUNT
        self._ticks = 0
        #: node id -> client address, from applied announcements of every group (kept in
        #: META, so it survives restarts and log compaction).
        self._known_clients: dict[int, str] = {}
        #: Bumped whenever ``_known_clients`` learns something: leaders re-announce.
        #: node id -> admin address, from the transport's hello (registered by group 0).
        self._known_admins: dict[int, str] = {}
        #: node id -> peer address, from membership changes and the map.
        self._peer_addresses: dict[int, str] = dict(settings.initial_members)
        #: A placement change proposed by this node (as group 0's leader) is in flight.
        self._placement_inflight = False
        #: Group 0's leader: when each node last answered a status poll, and each shard's
        #: membership as its leader last reported it (`record_status`).
        self._heard_s: dict[int, float] = {}
        self._reports: dict[int, GroupReport] = {}
        #: Group 0's leader: node id -> group id -> that node's last report of its replica
        #: (merges wait for every replica's retire and absorb).
        self._replica_reports: dict[int, dict[int, GroupReport]] = {}
        #: node id -> failure-domain labels it reported (registered by `_registry_updates`).
        self._known_labels: dict[int, tuple[tuple[str, str], ...]] = {}
        #: When this node last became group 0's leader (liveness needs a full timeout of
        #: polls before it calls a node dead).
        self._placement_leader_since_s: float | None = None
        #: Data groups hosted here that the map no longer places here: balance checks
        #: in a row (destroyed after `UNPLACED_CHECKS_BEFORE_DESTROY`).
        self._unplaced_checks: dict[int, int] = {}
        self._to_destroy: list[int] = []
        #: Groups that may have work: the loop visits these, never every group per wake.
        self._active: dict[int, _GroupState] = {}
        #: Messages produced in this iteration by every group, sent together: one stream
        #: message per peer node, however many groups talk to it.
        self._outbox: list[Message] = []
        self.stopping = False
        #: Set once a step failed (storage, invariant): the node serves nothing more.
        self.failed: BaseException | None = None
        #: Test and simulator hook: (group id, shard epoch, slot) for every command a
        #: replica here executes for a client (applied writes, reads, stale reads).
        self.on_serve: Callable[[int, int, int], None] | None = None
        #: Observer for metrics (seconds): each applied proposal.
        self.observe_proposal_s: Callable[[float], None] = lambda seconds: None
        self.leader_changes = 0
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        #: Snapshots dropped on arrival: slots this replica may not take yet, or a bad
        #: header (`_snapshot_fits`).
        self.snapshots_refused = 0
        self.proposals = 0
        #: As group 0's leader: moves proposed, and moves recorded as reached.
        self.moves_scheduled = 0
        self.moves_finished = 0
        self.moves_failed = 0
        self.replicas_destroyed = 0
        #: (answered at, seconds) of recent client writes (`write_p99_ms`).
        self._recent_writes: deque[tuple[float, float]] = deque(maxlen=WRITE_P99_SAMPLES)
        #: Group 0's leader: each node's reported write p99 (ms), and whether the
        #: scheduler holds balance moves back because one is above rebalance_max_p99_ms.
        self._write_p99_ms: dict[int, float] = {}
        #: Group 0's leader: shard id -> (reporting node, commands, when), and the rate.
        self._load_samples: dict[int, tuple[int, int, float]] = {}
        self._ops_per_s: dict[int, float] = {}
        self.backing_off = False
        #: Split entries applied here (children started), and splits recorded as group
        #: 0's leader.
        self.splits_applied = 0
        self.splits_recorded = 0
        #: Absorbs applied here, and merges recorded as group 0's leader.
        self.merges_applied = 0
        self.merges_recorded = 0

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Open (or bootstrap) the node's groups from the engine. Call before ``start``.

        A new cluster's map comes from the settings (every member computes the same one)
        and is the placement group's first snapshot. A node that joins with ``member add``
        hosts the placement group and the single shard of a one-shard cluster, both empty,
        until their snapshots arrive (its map meanwhile is a provisional guess from its
        flags, used for routing only, never stored)."""
        s = self.settings
        # A snapshot install the process died in left part of a shard: finish it first.
        self.snapshots.finish_interrupted_installs(self._engine)
        raw_map = self._engine.get(META, SHARD_MAP_KEY)
        stored = raw_map is not None
        if raw_map is not None:
            shard_map = ShardMap.decode(raw_map)
        elif s.join and s.join_map is not None:  # joined through a seed: the map it gave
            shard_map = s.join_map
        elif s.join:  # `member add`: the one shard, on every member it lists
            shard_map = initial_layout(s.initial_members, 1, len(s.initial_members))
        elif self._engine.scan(DATA, b"", None, 1):
            # A standalone node's data (one keyspace, one expiry index) grows into a
            # one-shard cluster; splitting it is the elastic cluster's job.
            log.warning("standalone_data_grows_into_one_shard", requested_shards=s.shard_count)
            shard_map = initial_layout(s.initial_members, 1, s.replicas)
        else:
            shard_map = initial_layout(s.initial_members, s.shard_count, s.replicas)
        if not stored and not s.join:
            batch = WriteBatch()
            batch.put(META, SHARD_MAP_KEY, shard_map.encode())
            self._engine.write(batch)
            stored = True
        self.shard_map = shard_map
        # Group 0 first: a data group's replica reads the map's epochs.
        placement, _ = self._open_group(self._placement_shard(shard_map), bootstrap=not s.join)
        assert isinstance(placement.replica.machine, PlacementMachine)
        self._placement = placement
        if stored:
            placement.replica.machine.shard_map = shard_map
        fresh: set[int] = set()
        for shard in shard_map.shards_on(self.node_id):
            # Only a shard of the cluster's first layout (epoch 1: never moved or split)
            # starts its log here; one placed here later gets its state from its leader
            # (a node that restarts before that snapshot arrived must not invent one).
            _, new = self._open_group(shard, bootstrap=not s.join and shard.epoch == 1)
            if new:
                fresh.add(shard.shard_id)
        # Replicas kept on disk that the map no longer places here (a move finished while
        # this node was down, or a destroy did not reach the disk): open them too, so
        # they are destroyed by the usual check, not left behind.
        for group_id in RaftLogStorage.stored_groups(self._engine):
            if group_id in self._groups or group_id == PLACEMENT_GROUP_ID:
                continue
            shard = shard_map.shards.get(group_id)
            if shard is None:
                # A split child the map does not record yet: its scope record and Raft
                # state are its own (the map learns of it from its leader's report).
                storage = RaftLogStorage(self._engine, group_id)
                voters = tuple(storage.initial_state()[1].voters)
                shard = ShardInfo(group_id, (), voters or (self.node_id,))
            self._open_group(shard, bootstrap=False)
        for key, value in self._engine.scan(
            META, CLIENT_ADDRESS_PREFIX, CLIENT_ADDRESS_PREFIX_END, 10_000
        ):
            self._known_clients[int.from_bytes(key[len(CLIENT_ADDRESS_PREFIX) :], "big")] = (
                value.decode()
            )
        for key, value in self._engine.scan(META, MEMBER_PREFIX, MEMBER_PREFIX_END, 1000):
            # (Dialled by `dial_known_peers` once the transport runs.)
            node_id = int.from_bytes(key[len(MEMBER_PREFIX) :], "big")
            self._peer_addresses[node_id] = value.decode()
        if self.snapshots.files is not None:
            for group_id, g in self._groups.items():
                if not g.storage.placeholder:
                    self.snapshots.track(group_id, g.storage.stored_snapshot_data())
            self.snapshots.remove_unreferenced(min_age_s=0)  # nothing is in flight yet
        for g in list(self._groups.values()):
            self._retire_overlapped(g)  # (a crash between an install and its retire)
        for g in self._groups.values():
            if not g.replica.retired:
                self._route(g)
        for g in self._groups.values():
            voters = g.replica.raw.conf_state().voters
            # A one-node group elects itself at once; a new cluster's preferred leaders
            # stand first, which spreads leaders without waiting for an election timeout.
            alone = len(voters) == 1 and self.node_id in voters
            if alone or (g.shard.shard_id in fresh and g.shard.preferred_leader == self.node_id):
                g.replica.raw.campaign()

    def _placement_shard(self, shard_map: ShardMap) -> ShardInfo:
        """Group 0 described as a shard (no slots) for the code shared with data groups:
        its replicas are its voters, the lowest id its preferred leader."""
        voters, _ = placement_members(shard_map.up_nodes())
        return ShardInfo(PLACEMENT_GROUP_ID, (), tuple(voters))

    def _open_group(self, shard: ShardInfo, *, bootstrap: bool) -> tuple[_GroupState, bool]:
        """Open the replica of ``shard`` kept in the engine; one never started is created
        from the map (``bootstrap``: the cluster is new) or left empty to receive its
        first snapshot from the group's leader (a node added to an existing group)."""
        group_id = shard.shard_id
        storage = RaftLogStorage(self._engine, group_id)
        new = storage.last_index() == 0 and storage.hard_state.term == 0
        if new and bootstrap:
            if group_id == PLACEMENT_GROUP_ID:
                storage = self._bootstrap_placement()
            else:
                storage = self._bootstrap(shard)
        return self._make_group(shard, storage), new

    def _make_group(self, shard: ShardInfo, storage: RaftLogStorage) -> _GroupState:
        """The replica of ``shard`` over ``storage`` (written), registered and routed. A
        data group's slots are those of its own scope record when it has one (its log
        split it; the map may not say so yet), else the map's."""
        group_id = shard.shard_id
        applied = read_applied_index(self._engine, group_id)
        s = self.settings
        config = Config(
            node_id=s.node_id,
            group_id=group_id,
            election_timeout_ticks=s.election_timeout_ticks,
            heartbeat_interval_ticks=s.heartbeat_interval_ticks,
            applied_index=applied,
            eager_commit=False,
        )
        machine: KVStateMachine | PlacementMachine
        scope_epoch = shard.epoch
        retired = False
        record = None
        if group_id == PLACEMENT_GROUP_ID:
            machine = PlacementMachine(None)
        else:
            machine = KVStateMachine(self._engine, scope=shard.scope)
            record = machine.stored_scope()
            if record is not None:
                scope_epoch, ranges = record
                machine = machine.narrowed(KeyScope(group_id, ranges))
                retired = not ranges  # (only a retire leaves a shard no slots)
        replica = Replica(
            config,
            storage,
            machine,
            random.Random(self._rng.getrandbits(64)),
            self._outbox.extend,
            self._clock_ms,
            self._monotonic_s,
            max_pending_reads=s.max_pending_reads,
            snapshots=self.snapshots,
        )
        replica.scope_epoch = scope_epoch
        replica.retired = retired
        replica.source_retired = self._source_retired
        replica.install_may_take = lambda: self._install_may_take(group_id)
        replica.on_absorbed = self._on_absorbed
        replica.on_conf_change = lambda change, batch: self._on_conf_change(group_id, change, batch)
        replica.on_announce = self._on_announce
        g = _GroupState(replica, storage, _local_view(shard, replica), last_snapshot_index=applied)
        replica.on_serve = self._serve_hook(g)
        replica.on_split = self._split_hook(g)
        replica.on_scope_change = lambda: self._on_scope_change(g)
        raw_record = self._engine.get(META, scope_key(group_id)) if record is not None else None
        changed_at = scope_record_changed_at(raw_record) if raw_record is not None else 0
        if changed_at > storage.snapshot_index:
            # Its slots changed after its last snapshot: send none older (it would bring
            # slots the shard no longer owns, or miss ones it took).
            storage.snapshot_stale_below = changed_at
        if storage.snapshot_pending:
            g.snapshot_due = True  # a split child, or slots changed: a snapshot soon
        self._groups[group_id] = g
        self._route(g)
        return g

    def _route(self, g: _GroupState, previous: tuple[SlotRange, ...] = ()) -> None:
        """Route the slots of ``g``'s applied scope to it; of its ``previous`` slots, those
        it no longer owns are routed nowhere (unless another group took them already)."""
        scope = g.replica.machine.scope
        slot_group = self._slot_group
        for first, last in previous:
            for slot in range(first, last + 1):
                if slot_group[slot] is g and not scope.owns(slot):
                    slot_group[slot] = None
        for first, last in scope.slot_ranges:
            slot_group[first : last + 1] = [g] * (last - first + 1)

    def _bootstrap_placement(self) -> RaftLogStorage:
        """Create group 0's log; its first snapshot is the map (already in META)."""
        engine = self._engine
        data = engine.get(META, SHARD_MAP_KEY)
        assert data is not None
        voters, learners = placement_members(ShardMap.decode(data).up_nodes())
        boot_index = max(1, read_applied_index(engine, PLACEMENT_GROUP_ID))
        batch = WriteBatch()
        stage_applied_index(PLACEMENT_GROUP_ID, boot_index, batch)
        storage = RaftLogStorage.bootstrap(
            engine,
            PLACEMENT_GROUP_ID,
            ConfState.of(voters, learners),
            batch,
            index=boot_index,
            data=data,
        )
        engine.write(batch)
        storage.on_written()
        engine.sync()
        log.info("placement_group_bootstrapped", voters=voters, learners=learners)
        return storage

    def _bootstrap(self, shard: ShardInfo) -> RaftLogStorage:
        """Create the shard's log. Its first snapshot is the KV data already on disk: empty
        for a new cluster, or a restored backup (``shardkv backup restore``), whose applied
        index becomes the log's starting point on every member alike."""
        engine = self._engine
        group_id = shard.shard_id
        boot_index = max(1, read_applied_index(engine, group_id))
        batch = WriteBatch()
        stage_applied_index(group_id, boot_index, batch)
        if engine.get(META, scope_key(group_id)) is None:
            # Every shard's replicas know their slots from their own state, never from a
            # map that may be newer than what they applied (a merge they missed).
            batch.put(
                META, scope_key(group_id), encode_scope_record(shard.epoch, shard.slot_ranges)
            )
        engine.write(batch)
        data = self.snapshots.build(engine.consistent_view(), shard.scope)
        voters = ConfState.of(list(shard.replicas))
        batch = WriteBatch()
        storage = RaftLogStorage.bootstrap(
            engine, group_id, voters, batch, index=boot_index, data=data
        )
        engine.write(batch)
        storage.on_written()
        engine.sync()
        log.info(
            "raft_group_bootstrapped", group=group_id, index=boot_index, voters=list(voters.voters)
        )
        return storage

    # -- inputs --------------------------------------------------------------------------

    def set_disk_full(self, reply: ErrorReply | None) -> None:
        """The shell's disk guard (`node.disk_guard`): with a reply, this node's disk is
        nearly full: writes to groups led here get ``reply``, leaderships are handed
        away, and incoming entries with data and snapshots are dropped until it is
        called with None."""
        self.disk_full_reply = reply
        if reply is not None:
            for g in self._groups.values():
                if g.hibernating and g.replica.is_leader:
                    self._wake(g)  # it must tick to hand its leadership over

    def step(self, messages: list[Message]) -> None:
        groups = self._groups
        active = self._active
        full = self.disk_full_reply is not None
        for m in messages:
            g = groups.get(m.group_id)
            if g is None:
                continue
            if full and (
                m.type is MessageType.SNAP
                or (m.type is MessageType.APP and any(e.data for e in m.entries))
            ):
                # A full disk takes no new data (the write could fail the node). Empty
                # entries still go through: a new leader's first entry must commit even
                # if most of its group's disks are full, or no read could be served.
                continue
            if m.type is MessageType.SNAP and not self._snapshot_fits(g, m):
                continue
            raw = g.replica.raw
            raw.step(m)
            if m.context == HIBERNATE_CONTEXT:
                # The leader's last heartbeat before it hibernates: a follower that accepts
                # it as its leader's stops ticking too. (Its answer wakes nobody.)
                if m.type is MessageType.HEARTBEAT and raw.lead == m.from_:
                    g.hibernating = True
            elif g.hibernating and m.type is not MessageType.HEARTBEAT_RESP:
                # (A late answer to a heartbeat sent before hibernating is no news.)
                self._wake(g)
            active[m.group_id] = g
        self.on_work()

    def _snapshot_fits(self, g: _GroupState, m: Message) -> bool:
        """Whether the snapshot in ``m`` may be installed by ``g``'s replica now. One that
        names slots the replica neither holds nor may take (a survivor's, taken after a
        merge that this node's map does not show yet), or whose header cannot be read, is
        dropped here like a lost message: installing it would stop the node. The leader
        sends a snapshot again once the follower refuses its next append, by when this
        node's map has caught up with the merge."""
        snapshot = m.snapshot
        if snapshot is None or m.group_id == PLACEMENT_GROUP_ID:
            return True
        try:
            check_covered(
                self.snapshots.scope_of(snapshot.data),
                g.replica.machine.scope,
                self._install_may_take(m.group_id),
            )
        except (KVSnapshotError, SnapshotFileError) as exc:
            self.snapshots_refused += 1
            log.warning(
                "snapshot_refused",
                group=m.group_id,
                sender=m.from_,
                index=snapshot.metadata.index,
                reason=str(exc),
            )
            return False
        return True

    def report_unreachable(self, node_id: int) -> None:
        """The transport lost ``node_id`` (its stream broke or a connection failed). The
        groups it leads that hibernate here wake up: their election timers run again, so
        a dead leader is replaced even though it sent no heartbeats."""
        for g in self._groups.values():
            g.replica.raw.report_unreachable(node_id)
            if g.hibernating and g.replica.leader_id == node_id:
                self._wake(g)
                self._active[g.replica.group_id] = g

    def report_snapshot(self, to: int, group_id: int, ok: bool) -> None:
        g = self._groups.get(group_id)
        if g is not None:
            g.replica.raw.report_snapshot(to, success=ok)
            self._active[group_id] = g
            self.on_work()

    def _activate(self, g: _GroupState) -> None:
        if g.hibernating:
            self._wake(g)
        self._active[g.replica.group_id] = g
        self.on_work()

    @staticmethod
    def _wake(g: _GroupState) -> None:
        g.hibernating = False
        g.quiet_ticks = 0

    def _maybe_hibernate(self, g: _GroupState) -> None:
        """Count a leader's quiet ticks; past ``hibernate_after_ticks``, if every replica
        holds every entry and knows it committed, tell them (one last heartbeat) and stop
        ticking. Followers stop when that heartbeat arrives."""
        replica = g.replica
        raw = replica.raw
        last_index = raw.raft.log.last_index()
        if (
            raw.role is not Role.LEADER
            or not replica.idle
            or last_index != g.quiet_index
            or g.shard.target  # membership changes to make (`_drive_to_target`)
            or g.shard.frozen  # a split or merge step to propose
        ):
            g.quiet_ticks = 0
            g.quiet_index = last_index
            return
        balance_ticks = self.settings.leader_balance_interval_ticks
        if (
            g.shard.preferred_leader != self.node_id
            and self._ticks - g.leader_since_tick < 4 * balance_ticks
        ):
            # A new leader that is not the preferred one stays awake long enough to hand
            # the shard back (see `_hand_to_preferred_leader`).
            g.quiet_ticks = 0
            return
        g.quiet_ticks += 1
        if g.quiet_ticks < self.settings.hibernate_after_ticks:
            return
        st = raw.status()
        last = st.last_index
        if st.commit != last or any(pr.match != last for pr in st.progress.values()):
            g.quiet_ticks = 0  # someone lags: stay awake, check again later
            return
        for node_id in st.progress:
            if node_id != self.node_id:
                self._outbox.append(
                    Message(
                        MessageType.HEARTBEAT,
                        g.replica.group_id,
                        to=node_id,
                        from_=self.node_id,
                        term=raw.term,
                        commit=st.commit,
                        context=HIBERNATE_CONTEXT,
                    )
                )
        g.hibernating = True
        self.on_work()

    def hibernating_groups(self) -> int:
        return sum(1 for g in self._groups.values() if g.hibernating)

    def submit(
        self,
        commands: list[list[bytes]],
        on_done: ReplyCallback,
        *,
        allow_stale: bool = False,
        has_write: bool | None = None,
    ) -> None:
        """Route a connection's group of data commands (in order) to its Raft group.

        ``allow_stale`` (a connection that sent READONLY, as in Redis Cluster): a group of
        reads on a follower is served from this replica's state at once, possibly behind
        the leader; writes are still redirected. ``has_write``: whether any command writes,
        when the caller already knows it from the command table (the client connection
        does); None looks it up here."""
        if self.failed is not None:
            on_done([ErrorReply("ERR storage failure: this node stopped serving")] * len(commands))
            return
        if len(commands) == 1:
            slot = command_slot(commands[0])
            if type(slot) is int and slot != KEYLESS:
                self._submit_to_slot(slot, commands, on_done, allow_stale, has_write)
                return
        self._submit_split(commands, on_done, allow_stale)

    def _submit_to_slot(
        self,
        slot: int,
        commands: list[list[bytes]],
        on_done: ReplyCallback,
        allow_stale: bool,
        has_write: bool | None,
    ) -> None:
        """Commands whose slots all belong to the shard of ``slot``: run by that shard, here
        if this node leads it, else answered ``-MOVED`` (or ``-TRYAGAIN``), each with its
        own slot."""
        g = self._slot_group[slot]
        if g is None:
            on_done([self._moved(slot)] * len(commands))
            return
        if g.hibernating:
            # A client is here: let the election timer run, so a dead leader is noticed.
            self._activate(g)
        replica = g.replica
        if has_write is None:
            has_write = any(_is_write(args) for args in commands)
        if not replica.is_leader:
            if allow_stale and not has_write:
                now_ms = self._clock_ms()
                on_done([replica.execute_owned(args, now_ms) for args in commands])
                return
            on_done([self._moved(_slot_of(args)) for args in commands])
            return
        if has_write and self.disk_full_reply is not None:
            on_done([self.disk_full_reply] * len(commands))
            return
        if has_write:
            self.proposals += 1
            replica.queue_write(commands, self._timed(on_done))
        else:
            replica.read(commands, on_done)
        self._activate(g)

    def _submit_split(
        self, commands: list[list[bytes]], on_done: ReplyCallback, allow_stale: bool
    ) -> None:
        """A pipeline of several commands (or a keyless command): each run of consecutive
        commands for one shard hosted here (or for one slot of a shard that is not) goes to
        it as one group; replies are joined back in the order of ``commands``. Commands to
        different shards may run in parallel, as they would on different Redis Cluster
        nodes; those to one shard keep their order."""
        replies: list[Reply | None] = [None] * len(commands)
        # (run key, first slot, first position, run); the key is the hosted group's id, or
        # -1 - slot for a slot whose shard is elsewhere (each such slot has its own -MOVED).
        parts: list[tuple[int, int, int, list[list[bytes]]]] = []
        slot_group = self._slot_group
        for pos, args in enumerate(commands):
            slot = command_slot(args)
            if type(slot) is ErrorReply:
                replies[pos] = slot
                continue
            if slot == KEYLESS:
                parts.append((KEYLESS, KEYLESS, pos, [args]))
                continue
            g = slot_group[slot]
            key = g.replica.group_id if g is not None else -1 - slot
            last = parts[-1] if parts else None
            if last is not None and last[0] == key and last[2] + len(last[3]) == pos:
                last[3].append(args)
            else:
                parts.append((key, int(slot), pos, [args]))
        pending = len(parts)

        def part_done(first: int, results: list[Reply]) -> None:
            nonlocal pending
            replies[first : first + len(results)] = results
            pending -= 1
            if pending == 0:
                on_done([r if r is not None else CROSSSLOT for r in replies])

        if pending == 0:
            on_done([r if r is not None else CROSSSLOT for r in replies])
            return
        for _, slot, first, run in parts:
            callback = _at(part_done, first)
            if slot == KEYLESS:
                self._submit_keyless(run[0], callback, allow_stale)
            else:
                self._submit_to_slot(slot, run, callback, allow_stale, None)

    def _submit_keyless(self, args: list[bytes], on_done: ReplyCallback, allow_stale: bool) -> None:
        """DBSIZE, KEYS, SCAN, FLUSHALL: over the shards this node leads (those it hosts,
        with READONLY), as a Redis Cluster master answers for its own slots."""
        name = args[0].lower()
        groups = [
            g
            for g in self._data_groups()
            if g.replica.is_leader or (allow_stale and not _is_write(args))
        ]
        if name == b"scan":
            self._scan(args, groups, on_done)
            return
        if not groups:
            on_done([0 if name == b"dbsize" else [] if name == b"keys" else OK])
            return
        results: list[Reply] = []

        def one_done(replies: list[Reply]) -> None:
            results.append(replies[0])
            if len(results) < len(groups):
                return
            errors = [r for r in results if type(r) is ErrorReply]
            if errors:
                on_done([errors[0]])
            elif name == b"dbsize":
                on_done([sum(r for r in results if isinstance(r, int))])
            elif name == b"keys":
                on_done([k for r in results if isinstance(r, list) for k in r])
            else:
                on_done([results[0]])

        for g in groups:
            self._run_on_group(g, [args], one_done, allow_stale)

    def _scan(self, args: list[bytes], groups: list[_GroupState], on_done: ReplyCallback) -> None:
        """SCAN's cursor is the next slot to visit (see the KV machine): run it on the led
        shard holding that slot (or the next one), and when that shard is done continue at
        the first slot of the next led shard."""
        cursor = parse_scan_cursor(args[1])
        if cursor is None or not groups:
            on_done([ErrorReply("ERR invalid cursor")] if cursor is None else [[b"0", []]])
            return
        starts = sorted((first, last, g) for g in groups for first, last in g.shard.slot_ranges)
        for i, (first, last, g) in enumerate(starts):
            if cursor > last:
                continue
            next_range = starts[i + 1][0] if i + 1 < len(starts) else 0
            shard_args = [args[0], str(max(cursor, first)).encode(), *args[2:]]

            def done(replies: list[Reply], last: int = last, next_range: int = next_range) -> None:
                # The shard's cursor, unless it left this range: then the next led range.
                # (A shard that ran into its own next range is revisited there: SCAN may
                # return a key twice, never miss one.)
                reply = replies[0]
                if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes):
                    returned = int(reply[0])
                    if returned == 0 or returned > last:
                        reply = [str(next_range).encode(), reply[1]]
                on_done([reply])

            self._run_on_group(g, [shard_args], done, True)
            return
        on_done([[b"0", []]])

    def _run_on_group(
        self, g: _GroupState, commands: list[list[bytes]], on_done: ReplyCallback, stale: bool
    ) -> None:
        replica = g.replica
        writes = any(_is_write(args) for args in commands)
        if replica.is_leader:
            if writes:
                self.proposals += 1
                replica.queue_write(commands, self._timed(on_done))
            else:
                replica.read(commands, on_done)
            self._activate(g)
        elif stale and not writes:
            now_ms = self._clock_ms()
            on_done([replica.execute_owned(args, now_ms) for args in commands])
        else:
            on_done([self._no_leader()] * len(commands))

    # -- membership ------------------------------------------------------------------------

    def learn_client_address(self, node_id: int, address: str, admin_address: str = "") -> None:
        """A peer said where clients (and operators) reach it: the transport's hello. Used
        at once for ``-MOVED`` replies; group 0's leader registers it in the map, so every
        node learns it durably, even one that shares no shard with that peer."""
        if node_id == self.node_id:
            return
        if address:
            self._known_clients[node_id] = address
        if admin_address:
            self._known_admins[node_id] = admin_address

    # -- splits ------------------------------------------------------------------------------

    def _split_hook(
        self, parent: _GroupState
    ) -> Callable[
        [SplitOrder, KeyScope, tuple[int, ...], tuple[int, ...], WriteBatch],
        Callable[[], None] | None,
    ]:
        def on_split(
            order: SplitOrder,
            scope: KeyScope,
            voters: tuple[int, ...],
            learners: tuple[int, ...],
            batch: WriteBatch,
        ) -> Callable[[], None] | None:
            return self._start_child(parent, order, scope, (voters, learners), batch)

        return on_split

    def _start_child(
        self,
        parent: _GroupState,
        order: SplitOrder,
        scope: KeyScope,
        members: tuple[tuple[int, ...], tuple[int, ...]],
        batch: WriteBatch,
    ) -> Callable[[], None] | None:
        """``parent``'s split entry applies here: stage the child group (its log starts at
        `SPLIT_INIT_INDEX` over the data already on disk, with the parent's members) in
        ``batch``, and return what opens it once ``batch`` is written."""
        child_id = order.child
        if child_id in self._groups:
            # Never expected: a hosted replica overlapping the parent's slots is not opened.
            log.error("split_child_already_hosted", shard=parent.replica.group_id, child=child_id)
            return None
        voters, learners = members
        storage = RaftLogStorage.bootstrap(
            self._engine,
            child_id,
            ConfState.of(voters, learners),
            batch,
            index=SPLIT_INIT_INDEX,
            term=SPLIT_INIT_TERM,
            data=SPLIT_PENDING_SNAPSHOT_DATA,
        )
        stage_applied_index(child_id, SPLIT_INIT_INDEX, batch)
        rank = {n: i for i, n in enumerate(parent.shard.replicas)}
        replicas = tuple(sorted(voters, key=lambda n: (rank.get(n, len(rank)), n)))
        shard = ShardInfo(child_id, scope.slot_ranges, replicas, epoch=order.epoch)

        def written() -> None:
            storage.on_written()
            g = self._make_group(shard, storage)
            self._active[child_id] = g
            self.splits_applied += 1
            if parent.replica.is_leader:
                g.replica.raw.campaign()  # the parent's leader stands first: no timeout

        return written

    def _on_scope_change(self, g: _GroupState) -> None:
        """``g``'s replica narrowed its scope (a split, or a snapshot taken after one)."""
        shard_map = self.shard_map
        shard = shard_map.shards.get(g.shard.shard_id) if shard_map is not None else None
        previous = g.shard.slot_ranges
        g.shard = _local_view(shard or g.shard, g.replica)
        self._route(g, previous)
        if g.replica.scope_changed_index > g.storage.snapshot_stale_below:
            g.storage.snapshot_stale_below = g.replica.scope_changed_index
            g.snapshot_due = True
        if not g.replica.retired:
            self._retire_overlapped(g)

    def _drive_split(self, g: _GroupState) -> None:
        """A shard leader whose map entry orders a split: propose the split entry (alone
        in its entry, with the members it applies under), once no membership change is
        pending; again later if it did not apply."""
        replica = g.replica
        raw = replica.raw
        shard_map = self.shard_map
        shard = shard_map.shards.get(replica.group_id) if shard_map is not None else None
        if shard is None or not shard.split or raw.role is not Role.LEADER or g.split_proposed:
            return
        order = SplitOrder(shard.shard_id, shard.split[0], shard.split[1], shard.epoch + 1)
        if replica.scope_epoch >= order.epoch:
            return  # applied: the placement group records it once the child reports
        if raw.raft.pending_conf_index > replica.applied_index:
            return
        conf = raw.conf_state()
        g.split_proposed = True

        def done(replies: list[Reply]) -> None:
            g.split_proposed = False
            if isinstance(replies[0], ErrorReply):
                log.info("split_not_applied", shard=shard.shard_id, reply=str(replies[0]))

        log.info(
            "shard_split_proposed", shard=shard.shard_id, child=order.child, slot=order.first_slot
        )
        try:
            replica.propose_alone(split_command(order, conf.voters, conf.learners), done)
        except (NotLeaderError, ProposalDroppedError):
            g.split_proposed = False
        self._activate(g)

    # -- merges ------------------------------------------------------------------------------

    def _source_retired(self, group_id: int) -> bool:
        """Whether this node's replica of ``group_id`` applied its retire (an absorb of
        that shard may apply here only then)."""
        g = self._groups.get(group_id)
        return g is not None and g.replica.retired

    def _install_may_take(self, group_id: int) -> KeyScope | None:
        """Slots beyond its scope a snapshot of ``group_id`` may bring here: those the map
        gives the group, or a shard merging into it, that no replica here serves except
        one merged away (retired, retiring into this group, or dropped from the map). A
        survivor's snapshot taken after an absorb this replica missed holds them; its
        install then retires the absorbed shard's replica here (`_retire_overlapped`)."""
        shard_map = self.shard_map
        g = self._groups.get(group_id)
        if shard_map is None or g is None:
            return None
        owners = {group_id} | {
            s.shard_id for s in shard_map.shards.values() if s.merge_into == group_id
        }
        mapped = shard_map.shards.get(group_id)
        if len(owners) == 1 and (
            mapped is None or g.replica.machine.scope.slot_ranges == mapped.slot_ranges
        ):
            return None  # (the common case: no merge under way, nothing missed)
        scope = g.replica.machine.scope
        slot_group = self._slot_group
        taken = [
            slot
            for slot in range(SLOT_COUNT)
            if not scope.owns(slot)
            and shard_map.shard_id_of_slot(slot) in owners
            and (slot_group[slot] is None or self._merged_away(slot_group[slot], group_id))
        ]
        return KeyScope(group_id, _ranges_of(taken)) if taken else None

    def _merged_away(self, h: _GroupState, survivor: int) -> bool:
        """Whether the replica ``h`` belongs to a shard merged (or merging) into
        ``survivor``, or merged away entirely: the map no longer has it and it is no
        split child waiting to be recorded."""
        shard_map = self.shard_map
        if h.replica.retired or shard_map is None:
            return True
        group_id = h.replica.group_id
        shard = shard_map.shards.get(group_id)
        if shard is not None:
            return shard.merge_into == survivor
        return not shard_map.awaits_child(group_id)

    def _retire_overlapped(self, g: _GroupState) -> None:
        """``g``'s scope grew (an absorb, or a snapshot taken after one): any other replica
        here still naming some of its slots at an older epoch missed its shard's retire.
        It is retired here at once, durably (its shard retired on a quorum, or the
        survivor could not hold the slots), so it never writes into them again."""
        scope = g.replica.machine.scope
        mask = scope.slot_mask()
        for h in list(self._groups.values()):
            replica = h.replica
            if h is g or replica.retired or replica.group_id == PLACEMENT_GROUP_ID:
                continue
            if not self._merged_away(h, g.replica.group_id):
                continue  # (e.g. a parent whose split child was opened here from the map)
            if not any(
                mask[slot]
                for first, last in replica.machine.scope.slot_ranges
                for slot in range(first, last + 1)
            ):
                continue
            if replica.scope_epoch >= g.replica.scope_epoch:
                log.error(
                    "replicas_overlap",
                    shard=g.replica.group_id,
                    other=replica.group_id,
                    epoch=g.replica.scope_epoch,
                    other_epoch=replica.scope_epoch,
                )
                continue
            batch = WriteBatch()
            batch.put(
                META, scope_key(replica.group_id), encode_scope_record(replica.scope_epoch, ())
            )
            self._engine.write(batch)
            replica.retire_here(replica.scope_epoch)
            log.warning(
                "replica_retired_by_survivor", shard=replica.group_id, survivor=g.replica.group_id
            )

    def _on_absorbed(self, order: AbsorbOrder) -> None:
        self.merges_applied += 1

    def _drive_merge(self, g: _GroupState) -> None:
        """A shard leader whose map entry orders a merge step: propose the retire (the
        shard to be absorbed) or the absorb (the survivor), alone in its entry, once no
        membership change is pending; again later if it did not apply."""
        replica = g.replica
        raw = replica.raw
        shard_map = self.shard_map
        shard = shard_map.shards.get(replica.group_id) if shard_map is not None else None
        if shard is None or raw.role is not Role.LEADER or g.split_proposed:
            return
        if raw.raft.pending_conf_index > replica.applied_index:
            return
        if shard.merge_into and not replica.retired:
            args = retire_command(RetireOrder(shard.shard_id, shard.merge_into, shard.epoch + 1))
        elif shard.absorb and replica.scope_epoch <= shard.epoch:
            source = shard_map.shards.get(shard.absorb) if shard_map is not None else None
            if source is None:
                return
            epoch = shard.epoch + 1
            args = absorb_command(
                AbsorbOrder(shard.shard_id, source.shard_id, epoch, source.slot_ranges)
            )
        else:
            return
        g.split_proposed = True

        def done(replies: list[Reply]) -> None:
            g.split_proposed = False
            if isinstance(replies[0], ErrorReply):
                log.info("merge_step_not_applied", shard=shard.shard_id, reply=str(replies[0]))

        log.info("merge_step_proposed", shard=shard.shard_id, step=args[0][1:].decode())
        try:
            replica.propose_alone(args, done)
        except (NotLeaderError, ProposalDroppedError):
            g.split_proposed = False
        self._activate(g)

    def _replica_report(self, node_id: int, group_id: int) -> GroupReport | None:
        """Group 0's leader: ``node_id``'s last report of its replica of ``group_id``
        (this node's own, current)."""
        if node_id == self.node_id:
            return next((r for r in self.group_reports() if r.group_id == group_id), None)
        return self._replica_reports.get(node_id, {}).get(group_id)

    def _replicas_report(
        self, shard: ShardInfo, holds: Callable[[GroupReport], bool], live: set[int]
    ) -> bool:
        """Whether every live replica of ``shard`` reported a replica for which ``holds``,
        and those are a majority of its replicas (a dead one is left behind: its replica
        of the survivor waits for its own retire, or is replaced by a repair)."""
        done = 0
        for node_id in shard.replicas:
            report = self._replica_report(node_id, shard.shard_id)
            if report is not None and holds(report):
                done += 1
            elif node_id in live:
                return False
        return done * 2 > len(shard.replicas)

    def _merge_updates(self, shard_map: ShardMap) -> list[list[bytes]]:
        """Group 0's leader: the next step of each merge under way (see
        ``core/cluster/merge.py``): order the survivor to absorb once the retiring
        shard's replicas report it retired; record the merge once the survivor's
        replicas report the absorb applied."""
        pending = shard_map.pending_merges()
        if not pending:
            return []
        live = self.live_nodes()
        commands: list[list[bytes]] = []
        for source in pending:
            survivor = shard_map.shards[source.merge_into]
            if not survivor.absorb:
                if self._replicas_report(source, lambda r: r.retired, live):
                    epoch = max(survivor.epoch, source.epoch) + 1
                    absorbing = replace(survivor, epoch=epoch, absorb=source.shard_id)
                    commands.append(set_shards_command([absorbing]))
                    log.info(
                        "merge_absorb_ordered", shard=survivor.shard_id, source=source.shard_id
                    )
                continue
            epoch = survivor.epoch + 1
            if self._replicas_report(survivor, _absorbed_at(epoch), live):
                merged = merge_scopes(survivor.scope, source.scope)
                recorded = replace(survivor, slot_ranges=merged.slot_ranges, epoch=epoch, absorb=0)
                commands.append(merge_shards_command(recorded, source.shard_id))
                self.merges_recorded += 1
                log.info(
                    "shard_merge_recorded",
                    shard=survivor.shard_id,
                    source=source.shard_id,
                    slots=merged.describe(),
                    epoch=epoch,
                )
        return commands

    def _split_updates(self, shard_map: ShardMap) -> list[list[bytes]]:
        """Group 0's leader: record each ordered split whose child reported a leader (so
        its split entry committed): the parent keeps the slots before the cut, the child
        holds the rest on the members the child reports, both at the split's epoch."""
        changed: list[ShardInfo] = []
        pending = shard_map.pending_splits()
        memberships = self._committed_memberships() if pending else {}
        for parent in pending:
            assert parent.split
            child_id, first_slot = parent.split
            if not memberships.get(child_id, ((), ()))[0]:
                continue
            kept, moved = split_scope(parent.scope, first_slot, child_id)
            epoch = parent.epoch + 1
            rank = {n: i for i, n in enumerate(parent.replicas)}
            voters = memberships[child_id][0]
            replicas = tuple(sorted(voters, key=lambda n: (rank.get(n, len(rank)), n)))
            changed.append(replace(parent, slot_ranges=kept.slot_ranges, epoch=epoch, split=()))
            changed.append(ShardInfo(child_id, moved.slot_ranges, replicas, epoch))
            self.splits_recorded += 1
            log.info(
                "shard_split_recorded",
                shard=parent.shard_id,
                child=child_id,
                kept=kept.describe(),
                moved=moved.describe(),
                epoch=epoch,
            )
        return [set_shards_command(changed)] if changed else []

    def _on_announce(self, node_id: int, address: bytes, batch: WriteBatch) -> None:
        """An announcement entry in a data group's log (written by earlier versions, which
        spread client addresses that way; the node registry in group 0 does it now)."""
        if self._known_clients.get(node_id) != address.decode():
            self._known_clients[node_id] = address.decode()
            batch.put(META, CLIENT_ADDRESS_PREFIX + node_id.to_bytes(8, "big"), address)

    def _on_conf_change(self, group_id: int, change: ConfChange, batch: WriteBatch) -> None:
        changed = self._groups.get(group_id)
        if changed is not None:
            changed.snapshot_due = True
        key = MEMBER_PREFIX + change.node_id.to_bytes(8, "big")
        if change.type is ConfChangeType.REMOVE_NODE:
            batch.delete(META, key)
            if change.node_id == self.node_id:
                log.warning("this_node_removed_from_group", node_id=self.node_id, group=group_id)
            elif not any(
                g.replica.raw.conf_state().is_member(change.node_id)
                for gid, g in self._groups.items()
                if gid != group_id
            ):
                self.remove_peer(change.node_id)
        elif change.context:
            address = change.context.decode()
            batch.put(META, key, change.context)
            self._peer_addresses[change.node_id] = address
            if change.node_id != self.node_id:
                self.add_peer(change.node_id, address)
        log.info(
            "membership_changed",
            group=group_id,
            change=change.type.name.lower(),
            node=change.node_id,
            address=change.context.decode(errors="replace"),
        )

    # -- the placement group -----------------------------------------------------------------

    def _follow_map(self) -> None:
        """Group 0 applied a new map: route by it, and host what it places here. A shard
        placed here that is not hosted yet is opened empty (its leader sends a snapshot);
        a hosted shard takes its new epoch and replicas (its slots are its own scope's:
        only its log changes them, by a split)."""
        placement = self._placement
        assert placement is not None and isinstance(placement.replica.machine, PlacementMachine)
        machine = placement.replica.machine
        machine.changed = False
        new_map = machine.shard_map
        if new_map is None:
            return
        self.shard_map = new_map
        placement.shard = self._placement_shard(new_map)
        # Shards placed here, and hosted ones the map moved away (still members until
        # their removal applies: they serve and apply at the map's current epoch).
        leaving = [
            new_map.shards[group_id]
            for group_id in self._groups
            if group_id in new_map.shards and self.node_id not in new_map.shards[group_id].placed
        ]
        self._host_placed(new_map, leaving)
        self._follow_map_peers(new_map)

    def _host_placed(self, shard_map: ShardMap, leaving: Iterable[ShardInfo] = ()) -> None:
        """Open the shards ``shard_map`` places here that are not hosted yet (empty: the
        leader sends a snapshot), and bring hosted ones to the map's epoch and replicas.
        A shard whose slots a hosted replica still holds is not opened yet: that replica
        has not applied the split that made the shard (it does soon, and starts the
        shard itself), or it installs a snapshot without those slots; checked again at
        every balance interval. ``leaving``: hosted shards the map moved away (members
        until their removal applies: they serve and apply at the map's epoch)."""
        for shard in (*shard_map.shards_on(self.node_id), *leaving):
            g = self._groups.get(shard.shard_id)
            if g is None:
                if any(
                    self._slot_group[slot] is not None
                    for first, last in shard.slot_ranges
                    for slot in range(first, last + 1)
                ):
                    continue
                g, _ = self._open_group(shard, bootstrap=False)
                self._active[shard.shard_id] = g
                log.info("shard_opened_from_map", shard=shard.shard_id, epoch=shard.epoch)
                continue
            local = _local_view(shard, g.replica)
            if local != g.shard:
                if (
                    (shard.target and shard.target != g.shard.target)
                    or (shard.preferred_leader != g.shard.preferred_leader)
                    or shard.frozen
                ):
                    self._activate(g)  # membership changes, a hand-over, a split or merge
                g.shard = local

    def _follow_map_peers(self, shard_map: ShardMap) -> None:
        """Dial the nodes the map knows and this node does not (the flags and membership
        changes name the others; they win: a restored cluster runs on new addresses, which
        its group 0 leader then registers)."""
        for node in shard_map.nodes.values():
            if node.node_id == self.node_id or not node.peer_address:
                continue
            if node.state == NODE_REMOVED or node.node_id in self._peer_addresses:
                continue
            self._peer_addresses[node.node_id] = node.peer_address
            self.add_peer(node.node_id, node.peer_address)

    def _reconcile_placement(self) -> None:
        """Group 0's leader, every balance interval: bring the map in line with what this
        node knows (see the module docstring), one change at a time."""
        p = self._placement
        if p is None or self._placement_inflight or self.stopping:
            return
        replica = p.replica
        machine = replica.machine
        if not replica.is_leader or not isinstance(machine, PlacementMachine):
            self._placement_leader_since_s = None
            self._reports.clear()
            return
        if self._placement_leader_since_s is None:
            self._placement_leader_since_s = self._monotonic_s()
        shard_map = machine.shard_map
        if shard_map is None or replica.applied_index < replica.raw.raft.log.committed:
            return
        commands = self._registry_updates(shard_map) + self._split_updates(shard_map)
        commands += self._merge_updates(shard_map)
        commands += self._membership_updates(shard_map)
        commands += self._drained_updates(shard_map)
        if commands:
            self._propose_placement(commands)
            return
        self._reconcile_placement_members(shard_map)
        if not self._placement_inflight:
            commands = self._schedule(shard_map)
            if commands:
                self._propose_placement(commands)

    def _propose_placement(self, commands: list[list[bytes]]) -> None:
        p = self._placement
        assert p is not None
        self._placement_inflight = True
        p.replica.queue_write(commands, self._placement_done)
        self._activate(p)

    def _schedule(self, shard_map: ShardMap) -> list[list[bytes]]:
        """One round of the placement scheduler (`core.cluster.scheduler`), once every
        node had a chance to report since this node became group 0's leader."""
        s = self.settings
        since = self._placement_leader_since_s
        now = self._monotonic_s()
        interval_s = s.leader_balance_interval_ticks * s.tick_interval_ms / 1000
        if not s.rebalance or since is None or now - since < 3 * interval_s:
            return []
        self._update_back_off()
        settings = SchedulerSettings(
            replicas=s.replicas,
            max_concurrent_moves=s.max_concurrent_moves,
            balance=not shard_map.rebalance_paused and not self.backing_off,
        )
        changes = plan(shard_map, self.live_nodes(), settings, self._shard_sizes())
        if settings.balance:
            changes += plan_splits(
                shard_map,
                self._shard_sizes(),
                s.shard_split_bytes,
                max_pending=s.max_concurrent_moves,
                busy={c.shard_id for c in changes},
                ops_per_s=self._shard_loads(),
                split_ops_per_s=s.shard_split_ops_per_s,
            )
            changes += plan_merges(
                shard_map,
                self._shard_sizes(),
                self._shard_loads(),
                MergeSettings(
                    max_bytes=min(s.shard_merge_bytes, s.shard_split_bytes // 4),
                    max_ops_per_s=s.shard_merge_ops_per_s,
                    min_shards=(
                        s.shard_min_count or shard_map.initial_shards or DEFAULT_SHARD_COUNT
                    ),
                    max_pending=s.max_concurrent_moves,
                ),
                live=self.live_nodes(),
                busy={c.shard_id for c in changes},
            )
        if not changes:
            return []
        self.moves_scheduled += sum(1 for c in changes if c.target)
        # A move re-aimed or cancelled (its node died or started draining) failed.
        self.moves_failed += sum(
            1
            for c in changes
            if shard_map.shards[c.shard_id].target
            and c.target != shard_map.shards[c.shard_id].target
        )
        log.info(
            "placement_scheduled",
            moves=[(c.shard_id, c.target) for c in changes if c.target],
            splits=[(c.shard_id, c.split) for c in changes if c.split],
            merges=[(c.shard_id, c.merge_into) for c in changes if c.merge_into],
            leader_moves=sum(1 for c in changes if not c.target),
        )
        return [set_shards_command(changes)]

    def _update_back_off(self) -> None:
        """Hold balance moves and splits back while a live node's write p99 is above
        ``rebalance_max_p99_ms`` (repairs and drains go on)."""
        limit = self.settings.rebalance_max_p99_ms
        p99s = {**self._write_p99_ms, self.node_id: self.write_p99_ms()}
        live = self.live_nodes()
        slow = sorted(n for n, p99 in p99s.items() if n in live and limit and p99 > limit)
        if bool(slow) != self.backing_off:
            self.backing_off = bool(slow)
            log.info(
                "rebalance_backing_off" if slow else "rebalance_back_off_over",
                nodes=slow,
                max_p99_ms=limit,
            )

    def _sample_load(self, group_id: int, node_id: int, commands: int, now: float) -> None:
        """A shard leader's count of executed commands: its rate since the same leader's
        previous report (a new leader, or a restarted one, starts over)."""
        previous = self._load_samples.get(group_id)
        self._load_samples[group_id] = (node_id, commands, now)
        if previous is None or previous[0] != node_id or commands < previous[1]:
            return
        elapsed = now - previous[2]
        if elapsed > 0:
            self._ops_per_s[group_id] = (commands - previous[1]) / elapsed

    def _shard_loads(self) -> dict[int, float]:
        """Shard id -> client commands per second at its leader (this node's own
        leaderships sampled here, at each scheduling round)."""
        now = self._monotonic_s()
        for gid, g in self._groups.items():
            if gid != PLACEMENT_GROUP_ID and g.replica.is_leader:
                self._sample_load(gid, self.node_id, g.replica.commands_applied, now)
        return dict(self._ops_per_s)

    def _shard_sizes(self) -> dict[int, int]:
        """Shard id -> data bytes, as its leader last reported it (this node's own
        leaderships read directly)."""
        sizes = {gid: r.data_bytes for gid, r in self._reports.items() if r.is_leader}
        for gid, g in self._groups.items():
            if gid != PLACEMENT_GROUP_ID and g.replica.is_leader:
                sizes[gid] = _data_bytes(g)
        return sizes

    def _leading_placement(self) -> tuple[_GroupState, ShardMap]:
        """Group 0 and its applied map, on group 0's leader; `NotLeaderError` elsewhere
        (its ``leader_id`` says whom to ask)."""
        p = self._placement
        assert p is not None
        if not p.replica.is_leader or self.shard_map is None:
            raise NotLeaderError(
                f"node {self.node_id} does not lead the placement group", p.replica.leader_id
            )
        return p, self.shard_map

    def split_shard(self, shard_id: int, first_slot: int | None, on_done: ReplyCallback) -> None:
        """Group 0's leader: order a split of ``shard_id`` before ``first_slot`` (None:
        the slot halving its slots) (``shardkv shard split``). ``on_done`` gets the new
        shard's id once the order applies, or an error: unknown shard, one slot, a
        move or split under way, a slot that does not cut it. Raises `NotLeaderError`
        elsewhere."""
        p, shard_map = self._leading_placement()
        shard = shard_map.shards.get(shard_id)
        if shard is None:
            on_done([ErrorReply(f"ERR shard {shard_id} does not exist")])
            return
        if shard.target or shard_id in shard_map.frozen_ids():
            on_done(
                [ErrorReply(f"ERR shard {shard_id} is moving, splitting or merging; retry later")]
            )
            return
        point = split_point(shard) if first_slot is None else first_slot
        if point is None:
            on_done([ErrorReply(f"ERR shard {shard_id} has one slot: it cannot be split")])
            return
        child_id = shard_map.next_shard_id()
        try:
            split_scope(shard.scope, point, child_id)
        except ValueError as exc:
            on_done([ErrorReply(f"ERR cannot split shard {shard_id}: {exc}")])
            return

        def applied(replies: list[Reply]) -> None:
            on_done([replies[0] if isinstance(replies[0], ErrorReply) else child_id])

        p.replica.queue_write([set_shards_command([order_split(shard, child_id, point)])], applied)
        self._activate(p)

    def live_nodes(self) -> set[int]:
        """Group 0's leader: the map's up nodes heard from within ``dead_node_timeout_s``
        (every up node counts as heard at the moment this node became the leader)."""
        shard_map = self.shard_map
        since = self._placement_leader_since_s
        if shard_map is None or since is None:
            return set()
        now = self._monotonic_s()
        timeout_s = self.settings.dead_node_timeout_s
        return {
            n
            for n in shard_map.up_nodes()
            if n == self.node_id or now - max(self._heard_s.get(n, since), since) < timeout_s
        }

    def under_replicated_shards(self) -> int:
        """Group 0's leader: shards with fewer replicas on live nodes than the cluster can
        give them (``replicas``, capped by the live nodes); 0 elsewhere."""
        p = self._placement
        shard_map = self.shard_map
        if p is None or not p.replica.is_leader or shard_map is None:
            return 0
        live = self.live_nodes()
        wanted = min(self.settings.replicas, len(live))
        return sum(
            1
            for shard in shard_map.shards.values()
            if sum(1 for n in shard.replicas if n in live) < wanted
        )

    def status_poll_targets(self) -> list[int]:
        """Nodes whose status group 0's leader should ask for now (`record_status`); none
        elsewhere."""
        p = self._placement
        if p is None or not p.replica.is_leader or self.shard_map is None:
            return []
        return [n for n in self.shard_map.up_nodes() if n != self.node_id]

    def record_status(
        self,
        node_id: int,
        reports: list[GroupReport],
        labels: tuple[tuple[str, str], ...] = (),
        write_p99_ms: float = 0.0,
    ) -> None:
        """``node_id`` answered a status poll with its groups, labels and write p99: it is
        alive, the groups it leads report their membership, its labels are registered."""
        now = self._monotonic_s()
        self._heard_s[node_id] = now
        self._write_p99_ms[node_id] = write_p99_ms
        self._known_labels[node_id] = labels
        self._replica_reports[node_id] = {r.group_id: r for r in reports}
        for report in reports:
            if not report.is_leader or report.group_id == PLACEMENT_GROUP_ID:
                continue
            old = self._reports.get(report.group_id)
            self._sample_load(report.group_id, node_id, report.commands_applied, now)
            if old is None or report.term >= old.term or self._report_stale(old, now):
                self._reports[report.group_id] = replace(report, reported_s=now)

    def _report_stale(self, report: GroupReport, now: float) -> bool:
        s = self.settings
        max_age_s = REPORT_MAX_AGE_INTERVALS * s.leader_balance_interval_ticks * s.tick_interval_ms
        return now - report.reported_s > max_age_s / 1000

    def _drive_to_target(self, g: _GroupState) -> None:
        """A shard leader whose map entry has a target: one membership change towards it
        at a time. Add the target's missing nodes as learners, promote them once caught
        up, then remove what is not in the target (handing leadership to a target voter
        first if this node is to go). The placement group's leader records the result."""
        replica = g.replica
        raw = replica.raw
        shard_map = self.shard_map
        target = g.shard.target
        if raw.role is not Role.LEADER or shard_map is None or not target:
            return
        if raw.raft.pending_conf_index > replica.applied_index:
            return  # one change at a time
        conf = raw.conf_state()
        status = raw.status()
        change: ConfChange | None = None
        for n in target:
            node = shard_map.nodes.get(n)
            if not conf.is_member(n) and node is not None and node.peer_address:
                change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, n, node.peer_address.encode())
                break
        if change is None:
            for n in conf.learners:
                progress = status.progress.get(n)
                if n not in target:
                    change = ConfChange(ConfChangeType.REMOVE_NODE, n)
                    break
                lag = self.settings.promote_lag_entries
                if progress is not None and progress.match + lag >= status.commit:
                    change = ConfChange(ConfChangeType.ADD_NODE, n)
                    break
        if change is None and all(n in conf.voters for n in target):
            for n in conf.voters:
                if n in target:
                    continue
                if n == self.node_id:
                    transferee = self._best_transferee(g, among=target)
                    if transferee:
                        raw.transfer_leader(transferee)
                        self._activate(g)
                    return
                change = ConfChange(ConfChangeType.REMOVE_NODE, n)
                break
        if change is None:
            return
        log.info(
            "shard_membership_step",
            shard=replica.group_id,
            change=change.type.name.lower(),
            node=change.node_id,
            target=list(target),
        )
        replica.propose_conf_change(change, lambda replies: None)
        self._activate(g)

    def _check_unplaced(self) -> None:
        """Destroy (at the next cycle) replicas of shards the map has not placed here for
        `UNPLACED_CHECKS_BEFORE_DESTROY` balance checks in a row, unless they lead."""
        shard_map = self.shard_map
        if shard_map is None or self._placement is None or self.stopping:
            return
        self._host_placed(shard_map)  # those a hosted replica's slots held back
        for group_id, g in self._groups.items():
            if group_id == PLACEMENT_GROUP_ID:
                continue
            if not self._may_destroy(g):
                self._unplaced_checks.pop(group_id, None)
                continue
            checks = self._unplaced_checks.get(group_id, 0) + 1
            self._unplaced_checks[group_id] = checks
            if checks >= UNPLACED_CHECKS_BEFORE_DESTROY and group_id not in self._to_destroy:
                self._to_destroy.append(group_id)

    def _may_destroy(self, g: _GroupState) -> bool:
        """Whether this node's replica of ``g`` may go: the map does not place it here,
        it does not lead, no snapshot of it is being built, and either its own applied
        membership no longer lists this node, or it knows no leader (a removed replica
        that never applied its removal: its leader stopped talking to it). A replica
        that is a member and hears a leader stays, whatever a lagging map says."""
        shard_map = self.shard_map
        if shard_map is None:
            return False
        group_id = g.shard.shard_id
        shard = shard_map.shards.get(group_id)
        if shard is not None and self.node_id in shard.placed:
            return False
        if shard is None and g.replica.retired:
            # Merged: the survivor holds its slots, data and counters on every node that
            # applied the absorb. Kept while a replica here has not applied all the slots
            # the map gives its shard: it may be the survivor, still to absorb this data.
            return not g.snapshot_running and not self._survivor_lags()
        if shard is None and shard_map.awaits_child(group_id):
            return False  # a split child the map does not record yet
        replica = g.replica
        if replica.is_leader or g.snapshot_running:
            return False
        member = replica.raw.conf_state().is_member(self.node_id)
        return not member or replica.leader_id == 0

    def _survivor_lags(self) -> bool:
        """Whether a replica here has not applied every slot the map gives its shard (an
        absorb it has not reached yet)."""
        shard_map = self.shard_map
        if shard_map is None:
            return True
        for group_id, h in self._groups.items():
            shard = shard_map.shards.get(group_id)
            if shard is None or h.replica.retired or group_id == PLACEMENT_GROUP_ID:
                continue
            have = h.replica.machine.scope.slot_ranges
            if not all(
                any(first <= a and b <= last for first, last in have) for a, b in shard.slot_ranges
            ):
                return True
        return False

    def _destroy_group(self, group_id: int) -> None:
        """Delete this node's replica of ``group_id``: its log, Raft state, KV data and
        counters, in one batch (synced with the next cycle; a crash before that leaves
        the replica, destroyed again at the next check)."""
        g = self._groups.get(group_id)
        if g is None or not self._may_destroy(g):  # placed here again meanwhile, ...
            self._unplaced_checks.pop(group_id, None)
            return
        del self._groups[group_id]
        self._active.pop(group_id, None)
        self._unplaced_checks.pop(group_id, None)
        g.replica.fail_pending(REPLICA_GONE)
        slot_group = self._slot_group
        for slot, owner in enumerate(slot_group):
            if owner is g:
                slot_group[slot] = None
        batch = WriteBatch()
        RaftLogStorage.stage_destroy(group_id, batch)
        machine = g.replica.machine
        if isinstance(machine, KVStateMachine):
            # Never the data of a slot another replica here serves (a replica that missed
            # its shard's retire still names the slots the survivor took).
            slot_group = self._slot_group
            mine = [
                slot
                for first, last in machine.scope.slot_ranges
                for slot in range(first, last + 1)
                if slot_group[slot] is None or slot_group[slot] is g
            ]
            stage_delete_scope(KeyScope(group_id, _ranges_of(mine)), batch)
        self._engine.write(batch)
        self.snapshots.dropped(group_id)
        self.replicas_destroyed += 1
        log.info("shard_replica_destroyed", shard=group_id)

    def _placement_done(self, replies: list[Reply]) -> None:
        self._placement_inflight = False
        for reply in replies:
            if type(reply) is ErrorReply:
                log.warning("placement_change_refused", error=reply.message)

    def _registry_updates(self, shard_map: ShardMap) -> list[list[bytes]]:
        """Register addresses nodes announced that the map does not hold yet."""
        commands = []
        own = (self.settings.client_address, self.settings.admin_address)
        for node_id, info in sorted(shard_map.nodes.items()):
            if info.state != NODE_UP:
                continue
            if node_id == self.node_id:
                client, admin = own
                labels: tuple[tuple[str, str], ...] | None = self.settings.labels
            else:
                client = self._known_clients.get(node_id, "")
                admin = self._known_admins.get(node_id, "")
                labels = self._known_labels.get(node_id)
            updated = replace(
                info,
                peer_address=self._peer_addresses.get(node_id) or info.peer_address,
                client_address=client or info.client_address,
                admin_address=admin or info.admin_address,
                labels=info.labels if labels is None else labels,
            )
            if updated != info:
                commands.append(register_node_command(updated))
        return commands

    def _membership_updates(self, shard_map: ShardMap) -> list[list[bytes]]:
        """Record in the map (with a new epoch) each shard's committed voters where they
        changed, once no split or merge of it is under way: a shard that reached its
        ``target`` gets ``replicas = target`` and no target; one without a target gets
        its voters as they are (``shardkv member add/remove``); one still moving is left
        as it is. Voters come from the replicas
        hosted here that applied everything committed, and from the shard leaders'
        reports (`record_status`). A node that thereby lost its last replica, and is in
        no target, is marked removed."""
        changed: list[ShardInfo] = []
        joined: list[int] = []
        frozen = shard_map.frozen_ids()
        for shard_id, (voters, learners) in sorted(self._committed_memberships().items()):
            shard = shard_map.shards.get(shard_id)
            if shard is None or shard_id in frozen:
                continue  # (a split or merge takes the shard's next epochs: later)
            if shard.target:
                if set(voters) == set(shard.target) and not learners:
                    changed.append(
                        replace(shard, replicas=shard.target, target=(), epoch=shard.epoch + 1)
                    )
                    self.moves_finished += 1
                continue
            if set(shard.replicas) == set(voters):
                continue
            kept = [n for n in shard.replicas if n in voters]
            added = sorted(n for n in voters if n not in shard.replicas)
            changed.append(replace(shard, replicas=tuple(kept + added), epoch=shard.epoch + 1))
            joined += [n for n in added if n not in shard_map.nodes and n in self._peer_addresses]
        if not changed:
            return []
        commands = [
            register_node_command(NodeInfo(n, self._peer_addresses[n])) for n in sorted(joined)
        ]
        commands.append(set_shards_command(changed))
        after = {**shard_map.shards, **{s.shard_id: s for s in changed}}
        still_placed = {n for s in after.values() for n in s.placed}
        for shard in changed:
            if shard_map.shards[shard.shard_id].target:
                # A move: a node it took the last replica from (drained, repaired away
                # while down) stays in the cluster; only `node remove` removes one.
                continue
            for n in shard_map.shards[shard.shard_id].replicas:
                if n not in still_placed and shard_map.nodes[n].state == NODE_UP:
                    still_placed.add(n)
                    gone = replace(shard_map.nodes[n], state=NODE_REMOVED)
                    commands.append(register_node_command(gone))
        return commands

    def _drained_updates(self, shard_map: ShardMap) -> list[list[bytes]]:
        """Mark removed each draining node that holds no replica and is in no target."""
        placed = {n for s in shard_map.shards.values() for n in s.placed}
        return [
            register_node_command(replace(info, state=NODE_REMOVED))
            for n, info in sorted(shard_map.nodes.items())
            if info.state == NODE_DRAINING and n not in placed
        ]

    def decommission_node(self, node_id: int, on_done: ReplyCallback) -> None:
        """Group 0's leader: start draining ``node_id`` (``shardkv node remove``): the
        scheduler moves its replicas away, then it is marked removed. ``on_done`` gets
        ``[OK]`` once the state is applied, or an error: unknown or removed node, or too
        few other up nodes to keep ``replicas`` copies of every shard. Raises
        `NotLeaderError` elsewhere (its ``leader_id`` says whom to ask)."""
        p, shard_map = self._leading_placement()
        info = shard_map.nodes.get(node_id)
        if info is None or info.state == NODE_REMOVED:
            on_done([ErrorReply(f"ERR node {node_id} is not in the cluster")])
            return
        if info.state == NODE_DRAINING:
            on_done([OK])
            return
        others = [n for n, i in shard_map.nodes.items() if n != node_id and i.state == NODE_UP]
        if len(others) < self.settings.replicas:
            on_done(
                [
                    ErrorReply(
                        f"ERR removing node {node_id} would leave {len(others)} nodes for "
                        f"{self.settings.replicas} replicas of each shard; add a node first"
                    )
                ]
            )
            return
        p.replica.queue_write([register_node_command(replace(info, state=NODE_DRAINING))], on_done)
        self._activate(p)

    def set_rebalance_paused(self, paused: bool, on_done: ReplyCallback) -> None:
        """Group 0's leader: pause or resume the scheduler's balance and leader moves
        (``shardkv rebalance pause|resume``); ``on_done`` gets ``[OK]`` once applied.
        Raises `NotLeaderError` elsewhere."""
        p, _ = self._leading_placement()
        p.replica.queue_write([rebalance_command(paused)], on_done)
        self._activate(p)

    def propose_acl(self, command: list[bytes], on_done: ReplyCallback) -> None:
        """Group 0's leader: propose an ACL change (``ACL SETUSER`` / ``DELUSER``, one of
        `ACL_COMMANDS`); ``on_done`` gets the machine's reply once applied. Raises
        `NotLeaderError` elsewhere and ValueError for any other placement command."""
        if command[0] not in ACL_COMMANDS:
            raise ValueError("only ACL changes may be forwarded to the placement group")
        p, _ = self._leading_placement()
        p.replica.queue_write([command], on_done)
        self._activate(p)

    def placement_applied_index(self) -> int:
        assert self._placement is not None
        return self._placement.replica.applied_index

    def map_follows(self, index: int) -> bool:
        """Whether this node routes and authenticates by a map that has applied group 0
        up to ``index`` (an entry applies at collect; the map is followed after the sync)."""
        p = self._placement
        assert p is not None
        machine = p.replica.machine
        changed = isinstance(machine, PlacementMachine) and machine.changed
        return p.replica.applied_index >= index and not changed

    def rebalance_status(self) -> dict[str, object]:
        """Whether balancing is paused or backing off (a node's write p99 is too high), each
        split ordered and not yet recorded, and each move under way: the shard, where it is
        (``replicas``) and goes (``target``), its membership as its leader last reported
        (exact on group 0's leader, which receives the reports), and the next step."""
        shard_map = self.shard_map
        if shard_map is None:
            return {"paused": False, "backing_off": False, "operators": [], "splits": []}
        memberships = self._committed_memberships()
        operators = []
        for shard_id, shard in sorted(shard_map.shards.items()):
            if not shard.target:
                continue
            voters, learners = memberships.get(shard_id, (shard.replicas, ()))
            operators.append(
                {
                    "shard": shard_id,
                    "replicas": list(shard.replicas),
                    "target": list(shard.target),
                    "voters": list(voters),
                    "learners": list(learners),
                    "step": _move_step(shard.target, voters, learners),
                    "done_steps": _move_steps_done(shard, voters, learners),
                    "total_steps": _move_steps_total(shard),
                }
            )
        splits = [
            {"shard": s.shard_id, "child": s.split[0], "first_slot": s.split[1]}
            for s in shard_map.pending_splits()
            if s.split
        ]
        return {
            "paused": shard_map.rebalance_paused,
            "backing_off": self.backing_off,
            "operators": operators,
            "splits": splits,
        }

    def _committed_memberships(self) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
        """shard id -> (voters, learners) as committed, from the shards' leaders: the ones
        here (once they applied everything committed), and the others' reports
        (`record_status`; the newest term's wins)."""
        found: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for group_id, g in self._groups.items():
            if group_id == PLACEMENT_GROUP_ID:
                continue
            raw = g.replica.raw
            if not g.replica.is_leader or g.replica.applied_index < raw.raft.log.committed:
                continue  # a follower's view of its membership may be behind
            conf = raw.conf_state()
            found[group_id] = (conf.voters, conf.learners)
        now = self._monotonic_s()
        for group_id, report in self._reports.items():
            if group_id not in found and report.settled and not self._report_stale(report, now):
                found[group_id] = (report.voters, report.learners)
        return found

    def _reconcile_placement_members(self, shard_map: ShardMap) -> None:
        """Keep group 0's membership the map's live nodes: add a missing one as a learner,
        promote learners while there are fewer than five voters (once caught up), remove
        nodes marked removed. One membership change at a time."""
        p = self._placement
        assert p is not None
        raw = p.replica.raw
        conf = raw.conf_state()
        up = shard_map.up_nodes()
        want_voters, _ = placement_members(up)
        change: ConfChange | None = None
        for node_id in up:
            address = shard_map.nodes[node_id].peer_address or self._peer_addresses.get(node_id)
            if not conf.is_member(node_id) and address:
                change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, node_id, address.encode())
                break
        if change is None:
            status = raw.status()
            for node_id in conf.learners:
                progress = status.progress.get(node_id)
                if (
                    len(conf.voters) < len(want_voters)
                    and progress is not None
                    and progress.match >= status.commit
                ):
                    change = ConfChange(ConfChangeType.ADD_NODE, node_id)
                    break
        if change is None:
            for node_id in (*conf.voters, *conf.learners):
                if node_id not in up and node_id != self.node_id:
                    change = ConfChange(ConfChangeType.REMOVE_NODE, node_id)
                    break
        if change is None and self.node_id not in up:
            # This node was removed: hand group 0 to a caught-up voter, which removes it.
            target = self._best_transferee(p)
            if target:
                raw.transfer_leader(target)
                self._activate(p)
            return
        if change is None or raw.raft.pending_conf_index > p.replica.applied_index:
            return
        self._placement_inflight = True
        p.replica.propose_conf_change(change, self._placement_done)
        self._activate(p)

    def join_node(
        self,
        peer_address: str,
        client_address: str,
        admin_address: str,
        on_done: ReplyCallback,
        wanted_node_id: int = 0,
    ) -> None:
        """Group 0's leader: register a node joining through a seed; ``on_done`` gets
        ``[node id]`` once applied (or an error). Raises `NotLeaderError` elsewhere (its
        ``leader_id`` says whom to ask)."""
        p, _ = self._leading_placement()
        p.replica.queue_write(
            [join_node_command(peer_address, client_address, admin_address, wanted_node_id)],
            on_done,
        )
        self._activate(p)

    def dial_known_peers(self) -> None:
        """Once the transport runs: dial every peer the node knows, from its flags, the
        memberships applied here (a node added by a move since the flags were written)
        and the map (a node restarted with only its data dir knows its peers from it)."""
        for node_id, address in sorted(self._peer_addresses.items()):
            if node_id != self.node_id:
                self.add_peer(node_id, address)
        if self.shard_map is not None:
            self._follow_map_peers(self.shard_map)

    def placement_status(self) -> tuple[Replica, ShardMap | None]:
        """Group 0's replica here and its applied map."""
        assert self._placement is not None
        machine = self._placement.replica.machine
        assert isinstance(machine, PlacementMachine)
        return self._placement.replica, machine.shard_map

    def propose_conf_change(self, change: ConfChange, on_done: ReplyCallback) -> None:
        """Propose a membership change of the one group of a one-shard cluster; ``on_done``
        gets ``[0]`` once applied or an error. Raises `MembershipError` on a sharded
        cluster and `NotLeaderError` on a follower."""
        self.single_group()
        self.propose_group_conf_change(DEFAULT_GROUP_ID, change, on_done)

    def propose_group_conf_change(
        self, group_id: int, change: ConfChange, on_done: ReplyCallback
    ) -> None:
        """Propose a membership change of any group led here (the Admin service's
        AddMember/RemoveMember); group 0's leader then records it in the map. Raises
        KeyError for a group not hosted here and `NotLeaderError` on a follower."""
        g = self._groups[group_id]
        g.replica.propose_conf_change(change, on_done)
        self._activate(g)

    def transfer_leader(self, group_id: int, to_node: int) -> None:
        """Start handing ``group_id`` (led here) to ``to_node``. Raises KeyError for a
        group not hosted here and `NotLeaderError` on a follower."""
        g = self._groups[group_id]
        if not g.replica.is_leader:
            raise NotLeaderError(
                f"node {self.node_id} does not lead group {group_id}", g.replica.leader_id
            )
        g.replica.raw.transfer_leader(to_node)
        self._activate(g)

    def group_reports(self) -> list[GroupReport]:
        """This node's answer to a status poll (what the Admin ``Status`` call carries)."""
        reports = []
        for group_id, g in sorted(self._groups.items()):
            raw = g.replica.raw
            conf = raw.conf_state()
            reports.append(
                GroupReport(
                    group_id=group_id,
                    term=raw.term,
                    is_leader=raw.role is Role.LEADER,
                    voters=conf.voters,
                    learners=conf.learners,
                    settled=g.replica.applied_index >= raw.raft.log.committed,
                    data_bytes=_data_bytes(g),
                    commands_applied=g.replica.commands_applied,
                    scope_epoch=g.replica.scope_epoch,
                    retired=g.replica.retired,
                )
            )
        return reports

    def group_sizes(self) -> dict[int, tuple[int, int, int, bool]]:
        """group id -> (data bytes, client commands executed, scope epoch, retired) of
        every data group: what a status report carries besides Raft's view."""
        return {
            r.group_id: (r.data_bytes, r.commands_applied, r.scope_epoch, r.retired)
            for r in self.group_reports()
            if r.group_id != PLACEMENT_GROUP_ID
        }

    def all_replicas(self) -> list[Replica]:
        """Every group's replica here, the placement group's first."""
        return [g.replica for _, g in sorted(self._groups.items())]

    def single_group(self) -> Replica:
        """The replica of a one-shard cluster's group; raises `MembershipError` else."""
        if len(self._data_groups()) != 1 or DEFAULT_GROUP_ID not in self._groups:
            raise MembershipError(
                "member add/remove works on one-shard clusters only; nodes of a sharded "
                "cluster join and leave through the placement scheduler"
            )
        return self._groups[DEFAULT_GROUP_ID].replica

    def _timed(self, on_done: ReplyCallback) -> ReplyCallback:
        started = self._monotonic_s()

        def done(replies: list[Reply]) -> None:
            now = self._monotonic_s()
            self.observe_proposal_s(now - started)
            self._recent_writes.append((now, now - started))
            on_done(replies)

        return done

    def write_p99_ms(self) -> float:
        """p99 of this node's client writes answered within the last
        `WRITE_P99_WINDOW_S` (of at most `WRITE_P99_SAMPLES`), in ms; 0 without any."""
        since = self._monotonic_s() - WRITE_P99_WINDOW_S
        recent = sorted(d for at, d in self._recent_writes if at >= since)
        if not recent:
            return 0.0
        return recent[min(len(recent) - 1, int(len(recent) * 0.99))] * 1000

    def read_barrier(self, group_id: int, on_done: ReplyCallback) -> None:
        """``on_done`` runs once a ReadIndex round confirmed this node leads ``group_id``
        and applied everything committed before the call (an error reply if not).
        Raises `NotLeaderError` (and KeyError for a shard not hosted here)."""
        g = self._groups[group_id]
        replica = g.replica
        if not replica.is_leader:
            raise NotLeaderError(
                f"node {self.node_id} does not lead group {group_id}", replica.leader_id
            )
        replica.read([[b"DBSIZE"]], on_done)
        self._activate(g)

    def submit_sweep(self, max_keys: int) -> None:
        """Leader only: propose an expiry sweep stamped with this node's time."""
        for g in self._data_groups():
            # Only when something can expire: an idle cluster writes no log entries.
            if g.replica.is_leader and g.replica.machine.expires_count() > 0:
                g.replica.queue_write([[SWEEP_COMMAND, str(max_keys).encode()]], _ignore)
                self._activate(g)

    # -- views -----------------------------------------------------------------------------

    def replica(self, group_id: int = DEFAULT_GROUP_ID) -> Replica:
        return self._groups[group_id].replica

    def leader_client_address(self, group_id: int = DEFAULT_GROUP_ID) -> str | None:
        replica = self._groups[group_id].replica
        if replica.leader_id == 0:
            return None
        if replica.leader_id == self.node_id:
            return self.settings.client_address
        known = self._known_clients.get(replica.leader_id)
        # (A leader of no group hosted here announced nothing here: the map knows it.)
        return known if known is not None else self.client_addresses().get(replica.leader_id)

    def _moved(self, slot: int) -> ErrorReply:
        """Where a client should send a command for ``slot`` (which this node does not
        lead): ``-MOVED`` to the leader of its shard, or ``-TRYAGAIN`` when none is known."""
        g = self._slot_group[slot]
        shard_map = self.shard_map
        if g is None and shard_map is not None:
            shard = shard_map.shard_of_slot(slot)
            if shard.merge_into and self.node_id in shard.placed:
                return HANDING_OVER  # retired here (or about to): the survivor takes it
            survivor = shard_map.shards.get(shard.merge_into)
            if survivor is not None and survivor.absorb:
                address = self.client_addresses().get(survivor.preferred_leader)
                return ErrorReply(f"MOVED {slot} {address}") if address else HANDING_OVER
        if g is not None and g.replica.raw.conf_state().is_member(self.node_id):
            address = self.leader_client_address(g.replica.group_id)
        else:
            # Not hosted here, or a replica being added (empty, not a member yet): the
            # map's view of the shard's leader.
            address = self._remote_leader_address(slot)
            if address == self.settings.client_address:
                address = None
        if address is None:
            return self._no_leader()
        return ErrorReply(f"MOVED {slot} {address}")

    @staticmethod
    def _no_leader() -> ErrorReply:
        return ErrorReply("TRYAGAIN no leader is elected for this shard yet; retry in a moment")

    def _remote_leader_address(self, slot: int) -> str | None:
        """A shard with no replica here: send the client to its preferred leader, whose
        node then redirects precisely (a hint, like Redis Cluster's slot map)."""
        if self.shard_map is None:
            return None
        shard = self.shard_map.shard_of_slot(slot)
        return self.client_addresses().get(shard.preferred_leader)

    def client_addresses(self) -> dict[int, str]:
        """node id -> client address, as learned from every group's leader announcements
        (and the cluster map), this node's own included."""
        known: dict[int, str] = {}
        removed: set[int] = set()
        if self.shard_map is not None:
            for n in self.shard_map.nodes.values():
                if n.state == NODE_REMOVED:
                    removed.add(n.node_id)
                elif n.client_address:
                    known[n.node_id] = n.client_address
        known.update((n, a) for n, a in self._known_clients.items() if n not in removed)
        known[self.node_id] = self.settings.client_address
        return known

    def routing_ready(self) -> bool:
        """Whether every hosted shard knows its leader and that leader's client address,
        so a request is served or redirected at once (`/healthz` says ``ok`` from then)."""
        if self.shard_map is None:
            return False
        if self._ticks >= 3 * self.settings.election_timeout_ticks:
            return True  # a shard still without a leader has none: -TRYAGAIN is its answer
        addresses = self.client_addresses()
        return all(
            g.replica.leader_id != 0 and g.replica.leader_id in addresses
            for g in self._data_groups()
        )

    def groups(self) -> list[tuple[ShardInfo, Replica]]:
        """The shards (data groups) hosted here, by id, with their replicas."""
        return [(g.shard, g.replica) for g in self._data_groups()]

    def _data_groups(self) -> list[_GroupState]:
        return [g for gid, g in sorted(self._groups.items()) if gid != PLACEMENT_GROUP_ID]

    # -- the loop --------------------------------------------------------------------------

    def tick(self) -> None:
        """One tick of every group (``tick_interval_ms`` of the caller's time)."""
        timeout_s = self.settings.proposal_timeout_s
        self._ticks += 1
        balance = self._ticks % self.settings.leader_balance_interval_ticks == 0
        active = self._active
        hibernate = self.settings.hibernate_after_ticks > 0
        shard_map = self.shard_map
        split_pending = (
            {s.shard_id for s in shard_map.pending_splits()} if balance and shard_map else set()
        )
        merging = (
            {s.shard_id for s in shard_map.shards.values() if s.merge_into or s.absorb}
            if balance and shard_map
            else set()
        )
        full = self.disk_full_reply is not None
        for group_id, g in list(self._groups.items()):
            if g.hibernating:
                continue
            raw = g.replica.raw
            if hibernate:
                self._maybe_hibernate(g)
                if g.hibernating:
                    continue
            if balance and not self.stopping:
                if (g.replica.holding or full) and raw.role is Role.LEADER:
                    # A leader that cannot apply (its absorb waits) serves nobody; one
                    # whose disk is full can take no writes.
                    transferee = self._best_transferee(g)
                    if transferee:
                        raw.transfer_leader(transferee)
                # Before the tick: the tick may run check-quorum, which clears every
                # follower's recent_active flag that this check relies on.
                self._hand_to_preferred_leader(g)
                if g.shard.target:
                    self._drive_to_target(g)
                elif shard_map is not None and group_id in split_pending:
                    self._drive_split(g)
                elif group_id in merging:
                    self._drive_merge(g)
            raw.tick()
            g.replica.expire_waiters(timeout_s)
            if raw.has_ready() or g.replica.holding:
                active[group_id] = g
        if balance:
            # Even while group 0 hibernates: a change to make wakes it.
            self._reconcile_placement()
            self._check_unplaced()
            sweep_ticks = FILE_SWEEP_INTERVALS * self.settings.leader_balance_interval_ticks
            if self._ticks % sweep_ticks == 0:
                self.snapshots.remove_unreferenced()
        self.on_work()

    def _hand_to_preferred_leader(self, g: _GroupState) -> None:
        """Leaders spread by the map: a leader that is not its shard's preferred replica
        hands over once that replica is alive and caught up (so a restarted node gets its
        share of leaders back). Only ever towards the preferred replica: no ping-pong."""
        raw = g.replica.raw
        preferred = g.shard.preferred_leader
        if raw.role is not Role.LEADER or preferred == self.node_id:
            return
        if self._ticks - g.leader_since_tick < 3 * self.settings.leader_balance_interval_ticks:
            return
        status = raw.status()
        progress = status.progress.get(preferred)
        if (
            progress is not None
            and not progress.is_learner
            and progress.recent_active
            and progress.match >= status.last_index
        ):
            raw.transfer_leader(preferred)

    def collect(self) -> Cycle | None:
        """Steps 2-3 of the module docstring. Raises on a storage failure (fatal)."""
        if self.failed is not None:
            return None
        try:
            if self._to_destroy:  # between cycles: no Ready of theirs is in flight
                for group_id in self._to_destroy:
                    self._destroy_group(group_id)
                self._to_destroy = []
            active, self._active = self._active, {}
            cycle = Cycle()
            now_ms = self._clock_ms()
            for g in active.values():
                g.replica.flush_writes(now_ms)
                g.replica.flush_reads()
                if g.replica.raw.has_ready():
                    cycle.works.append(g.replica.collect(cycle.batch, self._write_now))
                elif g.replica.held_ready():
                    cycle.works.append(g.replica.apply_held(cycle.batch, self._write_now))
            return cycle if cycle.works else None
        except Exception as exc:
            self._fail(exc)
            raise

    def written(self, cycle: Cycle) -> None:
        """Step 4: ``cycle.batch`` is in the engine (not yet synced)."""
        try:
            for w in cycle.works:
                w.replica.storage.on_written()
            for w in cycle.works:
                w.answer()  # committed entries: no need to wait for this node's sync
        except Exception as exc:
            self._fail(exc)
            raise

    def synced(self, cycle: Cycle) -> list[SnapshotJob]:
        """Step 6: the engine is synced (if ``cycle.must_sync``). Returns the snapshots
        to build."""
        try:
            for w in cycle.works:
                if w.ready is not None and w.ready.soft_state is not None:
                    self.leader_changes += 1
                if w.ready is not None and w.ready.snapshot is not None:
                    self.snapshots_installed += 1
            for w in cycle.works:
                w.finish()
            if cycle.must_sync:
                self.snapshots.synced()
            jobs = []
            placement = self._placement
            if placement is not None:
                machine = placement.replica.machine
                if isinstance(machine, PlacementMachine) and machine.changed:
                    self._follow_map()
            for w in cycle.works:
                g = self._groups[w.replica.group_id]
                job = self._after_iteration(g)
                if job is not None:
                    jobs.append(job)
                # advance can produce new work (entries to apply, messages to send).
                self._active[w.replica.group_id] = g
            self.on_work()
            return jobs
        except Exception as exc:
            self._fail(exc)
            raise

    def take_messages(self) -> list[Message]:
        """Every message produced since the last call, for the transport."""
        # Replicas hold ``self._outbox.extend``: empty the list in place, never rebind it.
        messages = self._outbox[:]
        self._outbox.clear()
        return messages

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            log.critical("node_runtime_failed", error=repr(exc))

    def _write_now(self, batch: WriteBatch) -> None:
        self._engine.write(batch)
        crashpoints.reached("snapshot_install")

    def _after_iteration(self, g: _GroupState) -> SnapshotJob | None:
        replica = g.replica
        raw = replica.raw
        if raw.role is Role.LEADER and g.leader_term != raw.term:
            g.leader_term = raw.term
            g.leader_since_tick = self._ticks
        interval = self.settings.snapshot_interval_entries
        grown_bytes = replica.applied_bytes - g.last_snapshot_bytes
        if (
            g.snapshot_due
            or replica.applied_index - g.last_snapshot_index >= interval
            # (The shard's size is a META read: only asked once past the fixed bound.)
            or (
                grown_bytes >= self.settings.snapshot_interval_bytes
                and grown_bytes >= _data_bytes(g)
            )
        ):
            g.snapshot_due = False
            job = self._snapshot(g)
            if job is None and g.storage.snapshot_pending:
                g.snapshot_due = True  # a split child's first: as soon as it applied one
            return job
        return None

    def _snapshot(self, g: _GroupState) -> SnapshotJob | None:
        """A snapshot of the applied state to serialise (the log is then compacted behind
        it), or None. The view is taken now, right after a write, so it holds exactly the
        applied index. One snapshot per group at a time."""
        replica = g.replica
        index = replica.applied_index
        if g.snapshot_running or replica.retired:
            # (A retired replica's data now belongs to the survivor: a snapshot of it
            # would carry the survivor's writes into a lagging replica of this shard.)
            return None
        if index <= g.storage.snapshot_index:
            # Nothing newer to save (e.g. the applied state IS a snapshot just installed from
            # the leader); count the interval from here.
            g.last_snapshot_index = index
            g.last_snapshot_bytes = replica.applied_bytes
            return None
        view = self._engine.consistent_view()
        if read_applied_index(view, replica.group_id) != index:
            view.close()
            return None
        g.snapshot_running = True
        g.last_snapshot_index = index  # do not start another for this interval
        g.last_snapshot_bytes = replica.applied_bytes
        return SnapshotJob(
            g.shard, index, replica.raw.conf_state(), view, self.snapshots, g.storage
        )

    def snapshot_failed(self, job: SnapshotJob, exc: BaseException) -> None:
        """Building ``job`` raised: fatal, as every storage failure."""
        g = self._groups.get(job.shard.shard_id)
        if g is not None:
            g.snapshot_running = False
        self._fail(exc)

    def snapshot_built(self, job: SnapshotJob, data: bytes) -> None:
        """Record the snapshot ``job.build()`` returned and compact the log behind it."""
        g = self._groups.get(job.shard.shard_id)
        if g is None or g.storage is not job.storage:  # destroyed (and maybe re-opened)
            self.snapshots.discard(data)
            return
        g.snapshot_running = False
        index = job.index
        try:
            batch = WriteBatch()
            g.storage.stage_create_snapshot(index, job.conf_state, data, batch)
            compact_to = index - self.settings.compaction_margin_entries
            if compact_to > g.storage.first_index():
                g.storage.stage_compact(compact_to, batch)
        except RaftStorageError as exc:  # e.g. a newer snapshot was installed meanwhile
            log.info("snapshot_skipped", group=g.replica.group_id, index=index, reason=str(exc))
            self.snapshots.discard(data)
            return
        except Exception as exc:
            self._fail(exc)
            raise
        self._engine.write(batch)
        crashpoints.reached("compaction")
        g.storage.on_written()
        self.snapshots.recorded(g.replica.group_id, data)
        self.snapshots_taken += 1
        log.info(
            "snapshot_taken",
            group=g.replica.group_id,
            index=index,
            bytes=self.snapshots.size_of(data),
        )

    def begin_stop(self) -> dict[int, int]:
        """Stop leader balancing and hand every leadership this node holds to the most
        caught-up voter. Returns group id -> transferee."""
        self.stopping = True
        transfers: dict[int, int] = {}
        for g in self._groups.values():
            raw = g.replica.raw
            if raw.role is Role.LEADER and len(raw.conf_state().voters) > 1:
                target = self._best_transferee(g)
                if target:
                    raw.transfer_leader(target)
                    transfers[g.replica.group_id] = target
                    self._activate(g)
        return transfers

    def leads_any_replicated_group(self) -> bool:
        return any(
            g.replica.is_leader and len(g.replica.raw.conf_state().voters) > 1
            for g in self._groups.values()
        )

    def _serve_hook(self, g: _GroupState) -> Callable[[int], None] | None:
        def served(slot: int) -> None:
            if self.on_serve is not None:
                self.on_serve(g.shard.shard_id, g.shard.epoch, slot)

        return served

    def _best_transferee(self, g: _GroupState, among: Iterable[int] | None = None) -> int:
        """The most caught-up other voter (of ``among``, if given); 0 if none."""
        allowed = None if among is None else set(among)
        status = g.replica.raw.status()
        best, best_match = 0, -1
        for node_id, progress in status.progress.items():
            if node_id == self.node_id or progress.is_learner:
                continue
            if allowed is not None and node_id not in allowed:
                continue
            if progress.match > best_match:
                best, best_match = node_id, progress.match
        return best


def _data_bytes(g: _GroupState) -> int:
    machine = g.replica.machine
    return machine.data_bytes() if isinstance(machine, KVStateMachine) else 0


def _local_view(shard: ShardInfo, replica: Replica) -> ShardInfo:
    """The map's ``shard`` as ``replica`` serves it: with its applied slots and, where
    they differ from the map's (a split the map does not record yet, or one this replica
    has not applied), the epoch of its own scope."""
    machine = replica.machine
    if not isinstance(machine, KVStateMachine):
        return shard
    ranges = machine.scope.slot_ranges
    if ranges != shard.slot_ranges:
        return replace(shard, slot_ranges=ranges, epoch=replica.scope_epoch, split=())
    if replica.scope_epoch > shard.epoch:
        return replace(shard, epoch=replica.scope_epoch)
    return shard


def _absorbed_at(epoch: int) -> Callable[[GroupReport], bool]:
    return lambda report: report.scope_epoch >= epoch


def _ranges_of(slots: list[int]) -> tuple[SlotRange, ...]:
    """Ascending ``slots`` as inclusive ranges."""
    ranges: list[SlotRange] = []
    for slot in slots:
        if ranges and ranges[-1][1] + 1 == slot:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return tuple(ranges)


def _move_step(target: tuple[int, ...], voters: tuple[int, ...], learners: tuple[int, ...]) -> str:
    """What a move's shard leader does next (see `NodeDriver._drive_to_target`)."""
    missing = [n for n in target if n not in voters and n not in learners]
    if missing:
        return f"add learner {missing[0]}"
    catching_up = [n for n in learners if n in target]
    if catching_up:
        return f"learner {catching_up[0]} catching up, then promote"
    extra = [n for n in voters if n not in target]
    if extra:
        return f"remove {extra[0]}"
    return "record the new replicas"


def _move_steps_total(shard: ShardInfo) -> int:
    """Conf changes a move takes: add and promote each new node, remove each old one."""
    added = sum(1 for n in shard.target if n not in shard.replicas)
    removed = sum(1 for n in shard.replicas if n not in shard.target)
    return 2 * added + removed


def _move_steps_done(shard: ShardInfo, voters: tuple[int, ...], learners: tuple[int, ...]) -> int:
    done = 0
    for n in shard.target:
        if n not in shard.replicas:
            done += 2 if n in voters else 1 if n in learners else 0
    done += sum(1 for n in shard.replicas if n not in shard.target and n not in voters)
    return done


def _ignore(replies: list[Reply]) -> None:
    pass


def _slot_of(args: list[bytes]) -> int:
    """The slot of a keyed command already routed (so not KEYLESS, not CROSSSLOT)."""
    slot = command_slot(args)
    assert type(slot) is int
    return slot


def _at(part_done: Callable[[int, list[Reply]], None], first: int) -> ReplyCallback:
    return lambda replies: part_done(first, replies)


def _is_write(args: list[bytes]) -> bool:
    spec: CommandSpec | None = lookup(args[0])
    return spec is None or spec.kind is not CommandKind.DATA or spec.is_write
