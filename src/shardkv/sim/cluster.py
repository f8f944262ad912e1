"""The deterministic cluster simulator: real Raft cores, simulated everything else.

Owns: the virtual clock (a tick count), simulated nodes running the unmodified
``shardkv.core.raft.RawNode`` through the `Ready` contract against a `SimDisk`, the
simulated `Network`, the fault scheduler, simulated clients with their recorded history,
and the run's two phases. It never reads the wall clock for anything that affects the run
(the exhaustive linearizability check's timeout only decides whether it gives up)
and never uses global randomness: one seed derives every ``random.Random`` (network,
faults, clients, disks, and one per node incarnation for election timeouts), so a seed
replays exactly.

A run (TigerBeetle's VOPR shape):

1. Fault phase (``fault_phase_ticks``): message drops, delays, duplicates, reordering,
   symmetric and one-way partitions, crashes that lose unsynced writes, restarts through
   the recovery path, pauses, membership changes (add learner, promote, remove, including
   the leader), leadership transfers, forced elections, snapshots and compaction, while
   clients run a key-value workload. `InvariantChecker` watches every step.
2. Liveness phase: the network heals, every node restarts or resumes, clients stop. Within
   ``liveness_bound_ticks`` a leader must be elected, commit a new entry, and every live
   member must apply the same log and hold the same state.
3. The client history is checked for linearizability: writes with unknown outcome are
   resolved with the simulator's knowledge (see `Cluster.finish_history`), the exhaustive
   checker runs first, and if it gives up, the order the system chose is checked as a
   witness (`witness`).

Faults are drawn per tick, and also at the points where they hurt most (a crash between a
Ready's write and its sync, right after a leader commits, right after one is elected); a
crash also loses what the machine sent in the same tick.

How a node drives its core (what `node/replica.py` does for real): every tick it ticks the
core, steps delivered messages, and when a `Ready` is available it sends ``messages`` at
once, writes the Ready to its disk (unsynced), and after a simulated sync latency syncs,
sends ``messages_after_persist``, installs/applies, serves reads, and calls ``advance``.
Between ``ready`` and ``advance`` it keeps ticking and stepping, as the contract allows.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shardkv.core.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Proposed,
    RaftError,
    RawNode,
    Ready,
    Role,
    StorageError,
)
from shardkv.sim.disk import SimDisk
from shardkv.sim.invariants import (
    InvariantChecker,
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
from shardkv.sim.network import DROP_PARTITION, Envelope, FaultSettings, Network
from shardkv.sim.state_machine import Command, KvStateMachine
from shardkv.sim.witness import Position, witness_problem

GROUP_ID: Final = 1
MAX_READY_ROUNDS_PER_TICK: Final = 8
"""Bound on Ready cycles one node runs in one tick (more work waits for the next tick)."""
MAX_INBOX_MESSAGES: Final = 2_000
"""Bound on messages held for a paused node; beyond it they are lost (a full buffer)."""
MAX_EXTRA_NODES: Final = 6
"""Bound on nodes added by membership changes over one run."""
INVARIANT_SWEEP_INTERVAL_TICKS: Final = 10
"""How often every core's own `check_invariants` runs."""
LINEARIZABILITY_TIMEOUT_S: Final = 3.0
"""Wall-clock budget of the exhaustive history check; past it the simulator checks the
order the system chose instead (see `witness`)."""
UNPLACED: Final = 1 << 62
"""Witness position of an operation whose place in the log is unknown."""

_LEADER = Role.LEADER
_NORMAL = EntryType.NORMAL
_SNAP = MessageType.SNAP
_APP_RESP = MessageType.APP_RESP
_VOTE_RESP = MessageType.VOTE_RESP


def derive_rng(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream for ``purpose`` within run ``seed``
    (string seeds are hashed with SHA-512, stable across processes)."""
    return random.Random(f"shardkv-sim:{seed}:{purpose}")


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything a run depends on besides the seed's random streams. `draw` picks a
    different mix per seed, so a batch of seeds covers calm and hostile runs alike."""

    node_count: int = 3
    fault_phase_ticks: int = 2000
    liveness_bound_ticks: int = 800
    # The core's configuration.
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    max_bytes_per_message: int = 1 << 20
    max_inflight_messages: int = 256
    max_committed_bytes_per_ready: int = 1 << 20
    max_uncommitted_bytes: int = 64 << 20
    # Faults.
    network: FaultSettings = field(default_factory=FaultSettings)
    crash_probability: float = 0.0
    pause_probability: float = 0.0
    crash_leader_bias: float = 0.0
    crash_before_sync_probability: float = 0.0
    crash_after_commit_probability: float = 0.0
    crash_after_election_probability: float = 0.0
    max_down_ticks: int = 100
    max_pause_ticks: int = 60
    max_faulty_nodes: int = 1
    torn_writes: bool = True
    max_sync_delay_ticks: int = 0
    campaign_probability: float = 0.0
    transfer_leader_probability: float = 0.0
    membership_change_probability: float = 0.0
    # Snapshots and compaction.
    snapshot_interval_entries: int = 50
    snapshot_keep_entries: int = 10
    # Workload.
    client_count: int = 3
    key_count: int = 3
    client_op_probability: float = 0.3
    client_timeout_ticks: int = 60
    read_fraction: float = 0.4
    follower_read_fraction: float = 0.3

    @staticmethod
    def draw(seed: int) -> SimSettings:
        rng = derive_rng(seed, "settings")
        node_count = rng.choice((3, 3, 5))
        election = rng.choice((10, 10, 15, 20))
        network = FaultSettings.draw(rng)
        return SimSettings(
            node_count=node_count,
            election_timeout_ticks=election,
            heartbeat_interval_ticks=rng.choice((1, 2, 2, 3)),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
            max_bytes_per_message=rng.choice((1, 64, 256, 1 << 20)),
            max_inflight_messages=rng.choice((1, 4, 64)),
            max_committed_bytes_per_ready=rng.choice((64, 1 << 20)),
            max_uncommitted_bytes=rng.choice((512, 64 << 20)),
            network=network,
            crash_probability=rng.choice((0.0, 0.002, 0.005, 0.01)),
            pause_probability=rng.choice((0.0, 0.002, 0.005)),
            crash_leader_bias=rng.choice((0.0, 0.5, 0.9)),
            crash_before_sync_probability=rng.choice((0.0, 0.0, 0.001, 0.005)),
            crash_after_commit_probability=rng.choice((0.0, 0.0, 0.005, 0.02)),
            crash_after_election_probability=rng.choice((0.0, 0.0, 0.05, 0.2)),
            max_down_ticks=rng.choice((5, 20, 100, 300)),
            max_pause_ticks=rng.choice((20, 60, 200)),
            # Mostly a minority at a time (progress), sometimes anything (safety only).
            max_faulty_nodes=node_count if rng.random() < 0.2 else node_count // 2,
            torn_writes=rng.random() < 0.7,
            max_sync_delay_ticks=rng.choice((0, 1, 3)),
            campaign_probability=rng.choice((0.0, 0.002, 0.01)),
            transfer_leader_probability=rng.choice((0.0, 0.002, 0.005)),
            membership_change_probability=rng.choice((0.0, 0.003, 0.01)),
            snapshot_interval_entries=rng.choice((5, 20, 100)),
            snapshot_keep_entries=rng.choice((0, 5, 50)),
            client_count=rng.choice((2, 3, 4)),
            key_count=rng.choice((1, 2, 3)),
            client_op_probability=rng.choice((0.1, 0.3, 0.6)),
            client_timeout_ticks=rng.choice((30, 60, 150)),
            read_fraction=rng.choice((0.2, 0.4, 0.6)),
            follower_read_fraction=rng.choice((0.0, 0.3)),
        )


# -- clients --------------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingOp:
    client_id: int
    op: str  # get, put, append
    key: str
    value: str | None
    call: int
    deadline_tick: int
    node_id: int
    data: bytes = b""
    proposed: Proposed | None = None
    read_ctx: bytes = b""
    read_index: int = -1  # -1 until the ReadState arrives


@dataclass(slots=True)
class _Client:
    client_id: int
    leader_hint: int
    ops_started: int = 0
    pending: _PendingOp | None = None


# -- nodes ----------------------------------------------------------------------------------


class SimNode:
    """One simulated server hosting one replica of the group.

    ``raw`` is None while the node is down. ``incarnation`` counts restarts (each life gets
    its own random stream); ``started_tick`` tells messages of a previous life apart.
    """

    __slots__ = (
        "decommissioned",
        "disk",
        "down_until",
        "inbox",
        "incarnation",
        "leader_commit_floor",
        "leader_term_seen",
        "node_id",
        "outstanding",
        "outstanding_synced",
        "paused_until",
        "pending_reads",
        "pending_writes",
        "raw",
        "sm",
        "started_tick",
        "sync_due_tick",
    )

    def __init__(self, node_id: int, disk: SimDisk) -> None:
        self.node_id = node_id
        self.disk = disk
        self.raw: RawNode | None = None
        self.sm = KvStateMachine()
        self.incarnation = 0
        self.started_tick = 0
        self.down_until = -1
        self.paused_until = -1
        self.decommissioned = False
        self.inbox: deque[Message] = deque()
        self.outstanding: Ready | None = None
        self.outstanding_synced = False
        self.sync_due_tick = 0
        self.leader_term_seen = -1
        # Commit index when it last became leader (leader_term_seen): advances beyond it
        # are the leader's own commits.
        self.leader_commit_floor = 0
        # Proposed index -> client op waiting for it to be applied here.
        self.pending_writes: dict[int, _PendingOp] = {}
        # ReadIndex context -> client op waiting for its ReadState / apply.
        self.pending_reads: dict[bytes, _PendingOp] = {}

    @property
    def up(self) -> bool:
        return self.raw is not None

    def running(self, tick: int) -> bool:
        """Up and not paused: it ticks, receives and does I/O."""
        return self.raw is not None and self.paused_until <= tick


@dataclass(slots=True)
class SimStats:
    elections: int = 0
    crashes: int = 0
    restarts: int = 0
    pauses: int = 0
    partitions: int = 0
    conf_changes_proposed: int = 0
    conf_changes_applied: int = 0
    snapshots_created: int = 0
    snapshots_installed: int = 0
    transfers: int = 0
    lost_writes: int = 0
    ops_ok: int = 0
    ops_unknown: int = 0
    unknown_applied: int = 0
    unknown_never_applied: int = 0
    ops_failed: int = 0
    liveness_ticks: int = 0
    max_term: int = 0
    commit_index: int = 0


@dataclass(slots=True)
class SimResult:
    """The outcome of one seed. ``failure`` is None on success."""

    seed: int
    settings: SimSettings
    failure: InvariantViolation | None
    stats: SimStats
    ticks: int
    history_size: int
    linearizability: str  # ok, illegal, inconclusive, skipped
    fingerprint: str
    trace: list[str]
    network_stats: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.failure is None


class Cluster:
    """One run. Use `run_seed` unless a test needs to drive the phases itself."""

    def __init__(
        self,
        seed: int,
        settings: SimSettings | None = None,
        *,
        trace: bool = False,
        trace_core: bool = False,
    ) -> None:
        self.seed = seed
        self.settings = settings if settings is not None else SimSettings.draw(seed)
        s = self.settings
        self.tick = 0
        self.checker = InvariantChecker(seed)
        self.stats = SimStats()
        self.tracing = trace
        self.trace_core = trace and trace_core
        self.trace_lines: list[str] = []
        self.fault_rng = derive_rng(seed, "faults")
        self.client_rng = derive_rng(seed, "clients")
        self.disk_rng = derive_rng(seed, "disk")
        self.network: Network[Message] = Network(
            derive_rng(seed, "network"), s.network, on_drop=self._on_drop
        )
        self._drop_reports: list[tuple[Envelope[Message], str]] = []
        self.in_fault_phase = True
        self.clients_active = True
        self.history: list[Operation] = []
        # Writes whose client never learned the outcome, resolved by `finish_history`.
        self._unknown_writes: list[_PendingOp] = []
        # Command data -> (event time, log index) of its first apply on any node.
        self._first_applied: dict[bytes, tuple[int, int]] = {}
        # Parallel to `history`: where each operation sits in the order the system chose
        # (log index; writes before the reads that saw them), for `witness_problem`.
        self._positions: list[Position] = []
        self._event_clock = 0
        self._read_seq = 0
        self.partition_until = -1
        self.decommission_at: dict[int, int] = {}
        self.liveness_marker: tuple[int, int, Proposed] | None = None

        voters = list(range(1, s.node_count + 1))
        self.max_node_id = s.node_count + MAX_EXTRA_NODES
        self.next_node_id = s.node_count + 1
        self.nodes: dict[int, SimNode] = {}
        for node_id in voters:
            disk = SimDisk(MemoryStorage.bootstrap(ConfState.of(voters)), torn_writes=s.torn_writes)
            node = SimNode(node_id, disk)
            self.nodes[node_id] = node
            self._start(node)
        self.clients = [
            _Client(client_id=i + 1, leader_hint=self.client_rng.choice(voters))
            for i in range(s.client_count)
        ]
        self.keys = [f"k{i}" for i in range(s.key_count)]

    # -- tracing ----------------------------------------------------------------------------

    def _trace(self, text: str) -> None:
        self.trace_lines.append(f"{self.tick:6d} {text}")

    def _core_event_sink(self, node_id: int) -> Callable[[str], None] | None:
        if not self.trace_core:
            return None

        def sink(text: str) -> None:
            self.trace_lines.append(f"{self.tick:6d}   n{node_id}| {text}")

        return sink

    # -- node lifecycle -----------------------------------------------------------------------

    def _config(self, node_id: int, applied_index: int) -> Config:
        s = self.settings
        return Config(
            node_id=node_id,
            group_id=GROUP_ID,
            election_timeout_ticks=s.election_timeout_ticks,
            heartbeat_interval_ticks=s.heartbeat_interval_ticks,
            applied_index=applied_index,
            max_bytes_per_message=s.max_bytes_per_message,
            max_inflight_messages=s.max_inflight_messages,
            max_uncommitted_bytes=s.max_uncommitted_bytes,
            max_committed_bytes_per_ready=s.max_committed_bytes_per_ready,
            pre_vote=s.pre_vote,
            check_quorum=s.check_quorum,
        )

    def _start(self, node: SimNode) -> None:
        """Build the node's core from its disk: the recovery path of a real restart."""
        storage = node.disk.recover()
        sm = KvStateMachine()
        snapshot = storage.snapshot()
        if not snapshot.is_empty:
            sm.restore(snapshot.metadata.index, snapshot.data)
        node.sm = sm
        node.incarnation += 1
        rng = derive_rng(self.seed, f"node:{node.node_id}:{node.incarnation}")
        raw = RawNode(
            self._config(node.node_id, sm.applied_index),
            storage,
            rng,
            on_event=self._core_event_sink(node.node_id),
        )
        hard_state, _ = storage.initial_state()
        self.checker.check_restart(node.node_id, hard_state, raw.term, raw.raft.vote)
        node.raw = raw
        node.started_tick = self.tick
        node.outstanding = None
        node.leader_term_seen = -1
        node.down_until = -1
        node.paused_until = -1

    def _crash(self, node: SimNode, down_ticks: int) -> None:
        lost = node.disk.crash(self.disk_rng)
        # What the machine sent this tick had not left it yet.
        self.network.drop_sent_since(node.node_id, self.tick)
        self.stats.crashes += 1
        self.stats.lost_writes += lost
        if self.tracing:
            self._trace(
                f"n{node.node_id} crashes for {down_ticks} ticks ({lost} unsynced batches lost)"
            )
        node.raw = None
        node.outstanding = None
        node.inbox.clear()
        node.down_until = self.tick + down_ticks
        node.paused_until = -1
        self._abandon_client_ops(node)

    def _restart(self, node: SimNode) -> None:
        self._start(node)
        self.stats.restarts += 1
        if self.tracing:
            raw = node.raw
            assert raw is not None
            self._trace(
                f"n{node.node_id} restarts (incarnation {node.incarnation}): term {raw.term} "
                f"commit {raw.raft.log.committed} applied {node.sm.applied_index} "
                f"last {raw.raft.log.last_index()}"
            )

    def _decommission(self, node: SimNode) -> None:
        if node.decommissioned:
            return
        if self.tracing:
            self._trace(f"n{node.node_id} decommissioned (removed from the group)")
        if node.up:
            node.raw = None
            node.outstanding = None
            node.inbox.clear()
            self._abandon_client_ops(node)
        node.decommissioned = True

    def _abandon_client_ops(self, node: SimNode) -> None:
        """The node died with client requests in flight: their outcome is unknown."""
        for op in list(node.pending_writes.values()):
            self._finish_unknown(op)
        for op in list(node.pending_reads.values()):
            self._finish_failed(op)
        node.pending_writes.clear()
        node.pending_reads.clear()

    # -- the network's side -------------------------------------------------------------------

    def _on_drop(self, envelope: Envelope[Message], reason: str) -> None:
        if envelope.payload.type is _SNAP or reason == DROP_PARTITION:
            self._drop_reports.append((envelope, reason))

    def _report_drops(self) -> None:
        """Play the transport: a failed snapshot send and an unreachable peer are reported
        to the sender (if it is still the same incarnation and running)."""
        reports, self._drop_reports = self._drop_reports, []
        for envelope, reason in reports:
            sender = self.nodes.get(envelope.src)
            if (
                sender is None
                or not sender.running(self.tick)
                or envelope.sent_tick < sender.started_tick
            ):
                continue
            raw = sender.raw
            assert raw is not None
            if envelope.payload.type is _SNAP:
                raw.report_snapshot(envelope.dst, success=False)
            if reason == DROP_PARTITION:
                raw.report_unreachable(envelope.dst)

    def _send(self, node: SimNode, message: Message) -> None:
        kind = message.type
        if kind is _APP_RESP or kind is _VOTE_RESP:
            disk = node.disk
            self.checker.check_message_durable(
                node.node_id, message, disk.durable_hard_state, disk.durable_last_index()
            )
        self.network.send(self.tick, node.node_id, message.to, message)

    def _deliver(self) -> None:
        tick = self.tick
        for envelope in self.network.deliver_due(tick):
            node = self.nodes.get(envelope.dst)
            message = envelope.payload
            if node is None or node.raw is None:
                # Nobody listening: lost (a snapshot stream would see the failure).
                if message.type is _SNAP:
                    self._report_snapshot(message, success=False)
                continue
            if node.paused_until > tick:
                if len(node.inbox) < MAX_INBOX_MESSAGES:
                    node.inbox.append(message)
                elif message.type is _SNAP:
                    self._report_snapshot(message, success=False)
                continue
            self._step(node, message)

    def _report_snapshot(self, message: Message, *, success: bool) -> None:
        sender = self.nodes.get(message.from_)
        if sender is not None and sender.running(self.tick):
            raw = sender.raw
            assert raw is not None
            raw.report_snapshot(message.to, success=success)

    def _step(self, node: SimNode, message: Message) -> None:
        raw = node.raw
        assert raw is not None
        raw.step(message)
        if raw.raft.role is _LEADER:
            self._note_role(node)
        if message.type is _SNAP:
            self._report_snapshot(message, success=True)

    def _note_role(self, node: SimNode) -> None:
        raw = node.raw
        if raw is None:
            return
        r = raw.raft
        if r.role is not _LEADER or node.leader_term_seen == r.term:
            return
        node.leader_term_seen = r.term
        node.leader_commit_floor = r.log.committed
        self.stats.elections += 1
        self.stats.max_term = max(self.stats.max_term, r.term)
        self.checker.observe_leader(node.node_id, r.term)
        log = r.log

        def log_term(index: int) -> int | None:
            try:
                return log.term(index)
            except (StorageError, RaftError):
                return None

        self.checker.check_leader_completeness(node.node_id, r.term, log.first_index(), log_term)
        if self.tracing:
            self._trace(
                f"n{node.node_id} becomes leader of term {r.term} (last {log.last_index()}, "
                f"commit {log.committed})"
            )

    # -- the Ready loop -------------------------------------------------------------------------

    def _process_ready(self, node: SimNode) -> None:
        for _ in range(MAX_READY_ROUNDS_PER_TICK):
            raw = node.raw
            if raw is None:
                return
            if node.outstanding is not None:
                if node.sync_due_tick > self.tick:
                    return
                self._complete_ready(node)
                continue
            if not raw.has_ready():
                return
            rd = raw.ready()
            self._persist_ready(node, rd)

    def _persist_ready(self, node: SimNode, rd: Ready) -> None:
        raw = node.raw
        assert raw is not None
        disk = node.disk
        node_id = node.node_id
        hard_state = rd.hard_state
        if hard_state is not None:
            self.checker.check_hard_state_write(node_id, disk.live.hard_state, hard_state)
            r = raw.raft
            if (
                r.role is _LEADER
                and node.leader_term_seen == r.term
                and hard_state.commit > node.leader_commit_floor
            ):
                node.leader_commit_floor = hard_state.commit
                self.checker.check_leader_commit(
                    node_id, r.term, hard_state.commit, r.log.term(hard_state.commit)
                )
        disk.persist_ready(rd)
        if rd.entries:
            first = rd.entries[0].index
            try:
                prev_term: int | None = disk.live.term(first - 1)
            except StorageError:
                prev_term = None
            self.checker.observe_log_entries(node_id, prev_term, rd.entries)
        # Messages that need no durability go at once, in parallel with the disk write.
        for message in rd.messages:
            self._send(node, message)
        node.outstanding = rd
        needs_sync = rd.must_sync or rd.snapshot is not None or bool(rd.entries)
        node.outstanding_synced = needs_sync
        delay = 0
        if needs_sync and self.settings.max_sync_delay_ticks:
            delay = self.disk_rng.randint(0, self.settings.max_sync_delay_ticks)
        node.sync_due_tick = self.tick + delay

    def _complete_ready(self, node: SimNode) -> None:
        rd = node.outstanding
        raw = node.raw
        assert rd is not None and raw is not None
        node.outstanding = None
        s = self.settings
        if (
            node.outstanding_synced
            and s.crash_before_sync_probability
            and self._may_crash_now(s.crash_before_sync_probability)
        ):
            # Crash in the window the Ready contract is about: written, not yet synced.
            self._crash(node, self.fault_rng.randint(1, s.max_down_ticks))
            return
        if node.outstanding_synced:
            node.disk.sync()
        for message in rd.messages_after_persist:
            self._send(node, message)
        term = raw.term
        sm = node.sm
        checker = self.checker
        if rd.snapshot is not None:
            meta = rd.snapshot.metadata
            sm.restore(meta.index, rd.snapshot.data)
            checker.observe_snapshot(node.node_id, meta.index, meta.term, rd.snapshot.data, term)
            self.stats.snapshots_installed += 1
            if self.tracing:
                self._trace(f"n{node.node_id} installs snapshot {meta.index}/{meta.term}")
            # Writes waiting on indexes the snapshot covers can no longer be matched.
            for index in [i for i in node.pending_writes if i <= meta.index]:
                self._finish_unknown(node.pending_writes.pop(index))
        conf_changed = False
        first_applied = self._first_applied
        for entry in rd.committed_entries:
            sm.apply(entry)
            checker.observe_applied(node.node_id, entry, term)
            if entry.data and entry.data not in first_applied and entry.type is _NORMAL:
                first_applied[entry.data] = (self._next_event(), entry.index)
            if entry.type is EntryType.CONF_CHANGE:
                conf_changed = True
                self._on_conf_change_committed(node, entry)
            waiting = node.pending_writes.pop(entry.index, None)
            if waiting is not None:
                self._finish_write(waiting, entry)
        for read_state in rd.read_states:
            op = node.pending_reads.get(read_state.request_ctx)
            if op is not None and op.read_index < 0:
                op.read_index = read_state.index
        raw.advance(rd)
        if raw.raft.role is _LEADER:
            self._note_role(node)
        if node.pending_reads:
            self._serve_reads(node)
        self._maybe_snapshot(node, force=conf_changed)
        if rd.committed_entries:
            self.stats.commit_index = max(self.stats.commit_index, rd.committed_entries[-1].index)
        if raw.raft.role is not _LEADER:
            return
        # A leader dying right after it committed (and answered clients) is where commit
        # rules are put to the test: the next leader must hold those entries. One dying
        # right after it persisted its first entry leaves that entry on its disk alone:
        # divergent logs for later elections to sort out.
        if rd.committed_entries:
            probability = s.crash_after_commit_probability
        elif rd.soft_state is not None and rd.soft_state.role is _LEADER:
            probability = s.crash_after_election_probability
        else:
            return
        if probability and self._may_crash_now(probability):
            self._crash(node, self.fault_rng.randint(1, s.max_down_ticks))

    def _maybe_snapshot(self, node: SimNode, *, force: bool) -> None:
        raw = node.raw
        assert raw is not None
        disk = node.disk
        live = disk.live
        applied = node.sm.applied_index
        snapshot_index = live.snapshot().metadata.index
        if applied <= snapshot_index or applied > live.last_index():
            return
        if not force and applied - snapshot_index < self.settings.snapshot_interval_entries:
            return
        data = node.sm.snapshot_data()
        snapshot = disk.create_snapshot(applied, raw.conf_state(), data)
        self.checker.observe_snapshot(node.node_id, applied, snapshot.metadata.term, data, raw.term)
        self.stats.snapshots_created += 1
        compact_to = applied - self.settings.snapshot_keep_entries
        compacted = compact_to > live.first_index() - 1
        if compacted:
            disk.compact(compact_to)
        if self.tracing:
            tail = f", compacts to {compact_to}" if compacted else ""
            self._trace(f"n{node.node_id} snapshots at {applied}{tail}")

    def _on_conf_change_committed(self, node: SimNode, entry: Entry) -> None:
        change = ConfChange.decode(entry.data)
        if change.type is ConfChangeType.REMOVE_NODE and change.node_id not in self.decommission_at:
            target = self.nodes.get(change.node_id)
            if target is not None and not target.decommissioned:
                # The operator stops the removed server some time after seeing the removal.
                delay = self.fault_rng.randint(0, 50) if self.in_fault_phase else 0
                self.decommission_at[change.node_id] = self.tick + delay
        if node.raw is not None and node.raw.raft.role is _LEADER:
            self.stats.conf_changes_applied += 1
        if self.tracing:
            self._trace(
                f"n{node.node_id} applied conf change {change.type.name} {change.node_id} "
                f"at {entry.index}"
            )

    # -- clients ----------------------------------------------------------------------------

    def _next_event(self) -> int:
        self._event_clock += 1
        return self._event_clock

    def _finish_write(self, op: _PendingOp, entry: Entry) -> None:
        proposed = op.proposed
        assert proposed is not None
        client = self.clients[op.client_id - 1]
        if client.pending is not op:
            return
        client.pending = None
        if entry.term != proposed.term:
            # Another leader's entry won this index: ours was definitely not committed.
            self.stats.ops_failed += 1
            if self.tracing:
                self._trace(f"c{op.client_id} {op.op}({op.key}) failed: overwritten")
            return
        if entry.data != op.data:
            self.checker.fail(
                "proposal identity",
                f"index {entry.index} term {entry.term} holds {entry.data!r}, but client "
                f"{op.client_id} was told its {op.data!r} landed there",
            )
        self.stats.ops_ok += 1
        done = self._next_event()
        self.history.append(
            Operation(op.client_id, KvInput(op.op, op.key, op.value), None, op.call, done)
        )
        self._positions.append((entry.index, 0, op.call))
        if self.tracing:
            self._trace(f"c{op.client_id} {op.op}({op.key}, {op.value}) ok at {entry.index}")

    def _finish_unknown(self, op: _PendingOp) -> None:
        """A write whose outcome the client never learns (timeout, server died)."""
        client = self.clients[op.client_id - 1]
        if client.pending is not op:
            return
        client.pending = None
        if op.op == "get":
            self._finish_failed(op)
            return
        self.stats.ops_unknown += 1
        self._unknown_writes.append(op)
        if self.tracing:
            self._trace(f"c{op.client_id} {op.op}({op.key}, {op.value}) outcome unknown")

    def _finish_failed(self, op: _PendingOp) -> None:
        """A definite failure, or a read whose answer never came (reads change nothing, so
        an unanswered read is left out of the history)."""
        client = self.clients[op.client_id - 1]
        if client.pending is op:
            client.pending = None
        self.stats.ops_failed += 1

    def _serve_reads(self, node: SimNode) -> None:
        applied = node.sm.applied_index
        done = [ctx for ctx, op in node.pending_reads.items() if 0 <= op.read_index <= applied]
        for ctx in done:
            op = node.pending_reads.pop(ctx)
            client = self.clients[op.client_id - 1]
            if client.pending is not op:
                continue
            client.pending = None
            value = node.sm.get(op.key)
            self.stats.ops_ok += 1
            self.history.append(
                Operation(op.client_id, KvInput("get", op.key), value, op.call, self._next_event())
            )
            self._positions.append((applied, 1, op.call))
            if self.tracing:
                self._trace(
                    f"c{op.client_id} get({op.key}) = {value!r} at n{node.node_id} "
                    f"(read index {op.read_index})"
                )

    def _run_clients(self) -> None:
        tick = self.tick
        rng = self.client_rng
        s = self.settings
        for client in self.clients:
            op = client.pending
            if op is not None:
                if tick >= op.deadline_tick:
                    node = self.nodes[op.node_id]
                    if op.proposed is not None:
                        node.pending_writes.pop(op.proposed.first_index, None)
                    node.pending_reads.pop(op.read_ctx, None)
                    if self.tracing:
                        self._trace(f"c{client.client_id} {op.op}({op.key}) timed out")
                    client.leader_hint = rng.choice(list(self.nodes))
                    self._finish_unknown(op)
                continue
            if not self.clients_active or rng.random() >= s.client_op_probability:
                continue
            self._start_op(client)

    def _start_op(self, client: _Client) -> None:
        rng = self.client_rng
        s = self.settings
        key = rng.choice(self.keys)
        is_read = rng.random() < s.read_fraction
        candidates = [n for n in self.nodes.values() if not n.decommissioned]
        if is_read and rng.random() < s.follower_read_fraction:
            target = rng.choice(candidates)
        else:
            hinted = self.nodes.get(client.leader_hint)
            if hinted is None or hinted.decommissioned:
                hinted = rng.choice(candidates)
            target = hinted
        client.ops_started += 1
        seq = client.ops_started
        if is_read:
            kind, value = "get", None
        elif rng.random() < 0.5:
            kind, value = "put", f"{client.client_id}.{seq}"
        else:
            # Values are unique, so a read shows exactly which appends it saw.
            kind, value = "append", f"{client.client_id}.{seq},"
        op = _PendingOp(client.client_id, kind, key, value, 0, 0, target.node_id)
        if not target.running(self.tick):
            # Connection refused (down) or no answer at once (paused): try elsewhere later.
            client.leader_hint = rng.choice(candidates).node_id
            self.stats.ops_failed += 1
            return
        raw = target.raw
        assert raw is not None
        op.call = self._next_event()
        op.deadline_tick = self.tick + s.client_timeout_ticks
        try:
            if is_read:
                self._read_seq += 1
                op.read_ctx = f"r{self._read_seq}".encode()
                raw.read_index(op.read_ctx)
                target.pending_reads[op.read_ctx] = op
            else:
                op.data = Command(op.op, key, op.value or "", f"c{client.client_id}.{seq}").encode()
                op.proposed = raw.propose(op.data)
                target.pending_writes[op.proposed.first_index] = op
        except NotLeaderError as e:
            client.leader_hint = e.leader if e.leader else rng.choice(candidates).node_id
            self.stats.ops_failed += 1
            return
        except ProposalDroppedError:
            self.stats.ops_failed += 1
            return
        client.pending = op
        if raw.raft.role is _LEADER:
            self._note_role(target)
        if self.tracing:
            where = f"index {op.proposed.first_index}" if op.proposed else f"ctx {op.read_ctx!r}"
            self._trace(
                f"c{client.client_id} {op.op}({key}{'' if op.value is None else ', ' + op.value})"
                f" -> n{target.node_id} ({where})"
            )

    # -- faults ---------------------------------------------------------------------------------

    def _may_crash_now(self, probability: float) -> bool:
        """Draw a crash at an interesting point (fault phase only, within the budget of
        simultaneously faulty nodes)."""
        return (
            self.in_fault_phase
            and self.fault_rng.random() < probability
            and self._faulty_count() < self.settings.max_faulty_nodes
        )

    def _faulty_count(self) -> int:
        tick = self.tick
        return sum(
            1
            for n in self.nodes.values()
            if not n.decommissioned and (n.raw is None or n.paused_until > tick)
        )

    def _inject_faults(self) -> None:
        s = self.settings
        rng = self.fault_rng
        tick = self.tick
        members = [n for n in self.nodes.values() if not n.decommissioned]
        if s.crash_probability and rng.random() < s.crash_probability:
            victims = [n for n in members if n.up]
            if victims and self._faulty_count() < s.max_faulty_nodes:
                # Leaders are the interesting victims (divergent logs, lost acks, elections
                # with uncommitted tails), so they are picked more often than their share.
                leader = self.leader()
                if leader is not None and rng.random() < s.crash_leader_bias:
                    victim = leader
                else:
                    victim = rng.choice(victims)
                self._crash(victim, rng.randint(1, s.max_down_ticks))
        if s.pause_probability and rng.random() < s.pause_probability:
            victims = [n for n in members if n.running(tick)]
            if victims and self._faulty_count() < s.max_faulty_nodes:
                node = rng.choice(victims)
                node.paused_until = tick + rng.randint(1, s.max_pause_ticks)
                self.stats.pauses += 1
                if self.tracing:
                    self._trace(f"n{node.node_id} paused until {node.paused_until}")
        net = s.network
        if (
            net.partition_probability
            and self.partition_until < tick
            and rng.random() < net.partition_probability
        ):
            self._start_partition(members)
        if s.campaign_probability and rng.random() < s.campaign_probability:
            candidates = [n for n in members if n.running(tick)]
            if candidates:
                node = rng.choice(candidates)
                raw = node.raw
                assert raw is not None
                if self.tracing:
                    self._trace(f"n{node.node_id} forced to campaign")
                raw.campaign()
                self._note_role(node)
        if s.transfer_leader_probability and rng.random() < s.transfer_leader_probability:
            self._transfer_leader()
        if s.membership_change_probability and rng.random() < s.membership_change_probability:
            self._change_membership()

    def _start_partition(self, members: list[SimNode]) -> None:
        rng = self.fault_rng
        ids = [n.node_id for n in members]
        if len(ids) < 2:
            return
        net = self.settings.network
        rng.shuffle(ids)
        cut = rng.randint(1, len(ids) - 1)
        side_a, side_b = sorted(ids[:cut]), sorted(ids[cut:])
        one_way = rng.random() < net.one_way_partition_probability
        duration = rng.randint(net.partition_min_ticks, net.partition_max_ticks)
        self.network.partition(side_a, side_b, one_way=one_way)
        self.partition_until = self.tick + duration
        self.stats.partitions += 1
        if self.tracing:
            arrow = "->" if one_way else "<->"
            self._trace(f"partition {side_a} {arrow} {side_b} for {duration} ticks")

    def leader(self) -> SimNode | None:
        """The running node that is leader in the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        tick = self.tick
        for node in self.nodes.values():
            raw = node.raw
            if raw is None or node.paused_until > tick or raw.raft.role is not _LEADER:
                continue
            if raw.term > best_term:
                best, best_term = node, raw.term
        return best

    def _transfer_leader(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        raw = leader.raw
        assert raw is not None
        voters = [v for v in raw.conf_state().voters if v != leader.node_id]
        if not voters:
            return
        target = self.fault_rng.choice(voters)
        try:
            raw.transfer_leader(target)
        except ProposalDroppedError:
            return
        self.stats.transfers += 1
        if self.tracing:
            self._trace(f"n{leader.node_id} asked to transfer leadership to n{target}")

    def _change_membership(self) -> None:
        """Play the placement scheduler: add a learner, promote it, remove a voter (maybe
        the leader), keeping between node_count and node_count + 1 voters."""
        leader = self.leader()
        if leader is None:
            return
        raw = leader.raw
        assert raw is not None
        rng = self.fault_rng
        conf = raw.conf_state()
        change: ConfChange | None = None
        new_node: int | None = None
        if conf.learners:
            learner = rng.choice(conf.learners)
            progress = raw.status().progress.get(learner)
            caught_up = progress is not None and progress.match + 5 >= raw.raft.log.committed
            if caught_up or rng.random() < 0.3:
                change = ConfChange(ConfChangeType.ADD_NODE, learner)
        elif len(conf.voters) <= self.settings.node_count:
            if self.next_node_id <= self.max_node_id:
                new_node = self.next_node_id
                change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, new_node)
        else:
            victim = leader.node_id if rng.random() < 0.3 else rng.choice(conf.voters)
            change = ConfChange(ConfChangeType.REMOVE_NODE, victim)
        if change is None:
            return
        try:
            raw.propose_conf_change(change)
        except ProposalDroppedError:
            return
        self.stats.conf_changes_proposed += 1
        if self.tracing:
            self._trace(f"n{leader.node_id} proposes {change.type.name} {change.node_id}")
        if new_node is not None:
            self.next_node_id += 1
            node = SimNode(new_node, SimDisk(torn_writes=self.settings.torn_writes))
            self.nodes[new_node] = node
            self._start(node)

    def _scheduled_events(self) -> None:
        tick = self.tick
        for node in self.nodes.values():
            if node.decommissioned:
                continue
            if node.raw is None and 0 <= node.down_until <= tick:
                self._restart(node)
            elif node.raw is not None and node.paused_until == tick:
                if self.tracing:
                    self._trace(f"n{node.node_id} resumes ({len(node.inbox)} messages waiting)")
                inbox, node.inbox = node.inbox, deque()
                for message in inbox:
                    if node.raw is None:
                        break
                    self._step(node, message)
        if self.partition_until == tick:
            self.network.heal()
            if self.tracing:
                self._trace("partition healed")
        if self.decommission_at:
            for node_id, at in list(self.decommission_at.items()):
                if at <= tick:
                    self._decommission(self.nodes[node_id])

    # -- the clock ------------------------------------------------------------------------------

    def step_tick(self) -> None:
        """Advance the whole cluster by one tick."""
        self.tick += 1
        tick = self.tick
        self.checker.tick = tick
        self._scheduled_events()
        if self.in_fault_phase:
            self._inject_faults()
        self._deliver()
        for node in self.nodes.values():
            raw = node.raw
            if raw is not None and node.paused_until <= tick:
                raw.tick()
                if raw.raft.role is _LEADER:
                    self._note_role(node)
        self._run_clients()
        for node in self.nodes.values():
            if node.raw is not None and node.paused_until <= tick:
                self._process_ready(node)
        if self._drop_reports:
            self._report_drops()
        if tick % INVARIANT_SWEEP_INTERVAL_TICKS == 0:
            self._sweep_invariants()

    def _sweep_invariants(self) -> None:
        for node in self.nodes.values():
            raw = node.raw
            if raw is None:
                continue
            try:
                raw.check_invariants()
            except RaftError as e:
                self.checker.fail("core invariant", f"node {node.node_id}: {e}")

    # -- phases -----------------------------------------------------------------------------

    def run_fault_phase(self) -> None:
        for _ in range(self.settings.fault_phase_ticks):
            self.step_tick()

    def heal(self) -> None:
        """End of the fault phase: heal the network, restart and resume every node, stop
        new client requests and membership changes."""
        self.in_fault_phase = False
        self.clients_active = False
        self.network.settings = FaultSettings.healed()
        self.network.heal()
        self.partition_until = -1
        tick = self.tick
        for node in self.nodes.values():
            if node.decommissioned:
                continue
            if node.raw is None:
                node.down_until = tick + 1
            elif node.paused_until > tick:
                node.paused_until = tick + 1
        if self.tracing:
            self._trace("--- liveness phase: network healed, all nodes restarting/resuming ---")

    def _converged(self) -> bool:
        """Whether a leader of the highest term has committed an entry proposed in this
        phase, and every member applied exactly its log and holds the same state. Proposes
        that entry (once per leader and term) as a side effect."""
        leader = self.leader()
        if leader is None:
            return False
        raw = leader.raw
        assert raw is not None
        r = raw.raft
        for node in self.nodes.values():
            if node.raw is not None and node.raw.term > r.term:
                return False
        marker = self.liveness_marker
        if marker is None or marker[0] != leader.node_id or marker[1] != r.term:
            try:
                data = Command("nop", "", "", f"liveness.{r.term}").encode()
                proposed = raw.propose(data)
            except ProposalDroppedError:
                return False
            self.liveness_marker = (leader.node_id, r.term, proposed)
            return False
        proposed = marker[2]
        commit = r.log.committed
        if leader.sm.applied_index < proposed.last_index or leader.sm.applied_index != commit:
            return False
        conf = raw.conf_state()
        state = leader.sm.data
        for member in (*conf.voters, *conf.learners):
            other = self.nodes.get(member)
            if other is None or other.decommissioned:
                continue
            if other.raw is None or other.sm.applied_index != commit or other.sm.data != state:
                return False
        return True

    def run_liveness_phase(self) -> None:
        start = self.tick
        bound = self.settings.liveness_bound_ticks
        while self.tick - start < bound:
            self.step_tick()
            if self._converged():
                self.stats.liveness_ticks = self.tick - start
                if self.tracing:
                    self._trace(f"converged after {self.stats.liveness_ticks} ticks")
                return
        raise LivenessViolation(self.seed, self.tick, "liveness", self.describe_state())

    def describe_state(self) -> str:
        parts = []
        for node in self.nodes.values():
            if node.decommissioned:
                parts.append(f"n{node.node_id}: decommissioned")
                continue
            raw = node.raw
            if raw is None:
                parts.append(f"n{node.node_id}: down")
                continue
            st = raw.status()
            parts.append(
                f"n{node.node_id}: {st.role.value} term {st.term} lead {st.lead} commit "
                f"{st.commit} applied {node.sm.applied_index} last {st.last_index} "
                f"conf {list(st.conf_state.voters)}/{list(st.conf_state.learners)}"
            )
        return "no convergence within the bound; " + "; ".join(parts)

    def finish_history(self, *, converged: bool = True) -> None:
        """Close the client history: requests still open have unknown outcomes, and
        unknown writes are resolved with the simulator's omniscient view.

        The client never learned what became of an unknown write, but the simulator knows:
        if some node applied it, it took effect by the moment of that first apply, which
        becomes its return time (stricter than an open end, and just as true: a
        linearizable read starting later must see it). If no node applied it by the end of
        a converged run, every member applied the whole log up to an entry of the final
        leader's term, so it can never commit: it did not happen and is left out. Only
        when ``converged`` is False do unknown writes keep an open end (``INFINITY``)."""
        for client in self.clients:
            if client.pending is not None:
                self._finish_unknown(client.pending)
        for op in self._unknown_writes:
            applied = self._first_applied.get(op.data)
            kv_input = KvInput(op.op, op.key, op.value)
            if not converged:
                self.history.append(Operation(op.client_id, kv_input, UNKNOWN, op.call, INFINITY))
                self._positions.append((UNPLACED, 0, op.call))
            elif applied is not None:
                self.stats.unknown_applied += 1
                event, index = applied
                self.history.append(Operation(op.client_id, kv_input, None, op.call, event))
                self._positions.append((index, 0, op.call))
            else:
                self.stats.unknown_never_applied += 1
        self._unknown_writes = []

    @property
    def witness_positions(self) -> list[Position]:
        """Where each operation of `history` sits in the order the system chose."""
        return self._positions

    def check_linearizability(self) -> str:
        """Check the history: ``ok``, ``ok (witness)`` (the exhaustive search gave up but
        the order the system chose is a valid linearization) or ``inconclusive``; raises
        `LinearizabilityViolation` if no linearization exists."""
        report = check_operations(kv_model, self.history, timeout_s=LINEARIZABILITY_TIMEOUT_S)
        if report.result is CheckResult.ILLEGAL:
            raise LinearizabilityViolation(
                self.seed, self.tick, "linearizability", report.explanation
            )
        if report.result is CheckResult.OK:
            return "ok"
        if not witness_problem(kv_model, self.history, self._positions):
            return "ok (witness)"
        return "inconclusive"

    def fingerprint(self) -> str:
        """A digest of the final state: equal seeds must give equal fingerprints."""
        import hashlib

        h = hashlib.sha256()
        for node in self.nodes.values():
            raw = node.raw
            term = raw.term if raw is not None else -1
            h.update(f"{node.node_id}:{term}:{node.sm.applied_index}:".encode())
            h.update(node.sm.snapshot_data())
        h.update(repr(self.stats).encode())
        h.update(str(len(self.history)).encode())
        return h.hexdigest()[:16]


def run_seed(
    seed: int,
    settings: SimSettings | None = None,
    *,
    trace: bool = False,
    trace_core: bool = False,
    check_history: bool = True,
) -> SimResult:
    """Run one seed end to end; never raises for a failed run (see ``SimResult.failure``)."""
    started = time.perf_counter()
    cluster = Cluster(seed, settings, trace=trace, trace_core=trace_core)
    failure: InvariantViolation | None = None
    linearizability = "skipped"
    try:
        cluster.run_fault_phase()
        cluster.heal()
        cluster.run_liveness_phase()
        cluster.finish_history()
        if check_history:
            linearizability = cluster.check_linearizability()
    except InvariantViolation as e:
        failure = e
    except Exception as e:  # a crash of the core or the simulator is a failure of the seed
        detail = f"{type(e).__name__}: {e}"
        if trace:
            detail += "\n" + traceback.format_exc()
        failure = InvariantViolation(seed, cluster.tick, "exception", detail)
    if failure is not None and trace:
        cluster.trace_lines.append(f"{cluster.tick:6d} FAILED: {failure}")
    st = cluster.network.stats
    return SimResult(
        seed=seed,
        settings=cluster.settings,
        failure=failure,
        stats=cluster.stats,
        ticks=cluster.tick,
        history_size=len(cluster.history),
        linearizability=linearizability,
        fingerprint=cluster.fingerprint(),
        trace=cluster.trace_lines,
        network_stats=(
            f"sent {st.sent} delivered {st.delivered} dropped {st.dropped_random}+"
            f"{st.dropped_partition}+{st.dropped_overflow} duplicated {st.duplicated}"
        ),
        elapsed_s=time.perf_counter() - started,
    )


__all__ = [
    "GROUP_ID",
    "Cluster",
    "SimNode",
    "SimResult",
    "SimSettings",
    "SimStats",
    "derive_rng",
    "run_seed",
]
