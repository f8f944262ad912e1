"""The node runtime: drives every Raft group hosted by this process on one event loop.

One loop iteration (DESIGN.md section 6):

1. start one ReadIndex round per group for the reads queued since the last iteration;
2. collect a Ready from every group with work: its messages go out at once, its durable
   parts and the KV effects of its committed entries are staged into ONE WriteBatch;
3. write the batch, then sync it once, off the loop, for all groups (group commit);
4. answer the clients whose writes were applied (committed, so durable on a quorum
   that includes the leader: this does not wait for step 3);
5. after the sync, per group: send the messages that promise durable state,
   ``advance``, serve reads whose read index is applied.

Inputs arrive between iterations: peer messages (``step``), ticks, client commands
(``submit``). Each wakes the loop. Today one group (id 1) owns all 16384 slots; every
structure is keyed by group id for the multi-group step that follows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Final

from shardkv.core.cluster.slots import key_slot
from shardkv.core.commands import CommandKind, CommandSpec, command_keys, lookup
from shardkv.core.engine import META, WriteBatch
from shardkv.core.kv import KVStateMachine
from shardkv.core.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Message,
    NotLeaderError,
    Role,
)
from shardkv.core.raft import StorageError as RaftStorageError
from shardkv.core.resp import ErrorReply, Reply
from shardkv.node import crashpoints
from shardkv.node.replica import (
    ANNOUNCE_COMMAND,
    SWEEP_COMMAND,
    ReadyWork,
    Replica,
    ReplyCallback,
)
from shardkv.observability.logging import get_logger
from shardkv.storage import Engine
from shardkv.storage.kv_snapshot import (
    build_and_close,
    read_applied_index,
    stage_applied_index,
)
from shardkv.storage.raft_log import RaftLogStorage

log = get_logger(__name__)

#: The one group that owns every slot until sharding arrives.
DEFAULT_GROUP_ID: Final = 1
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
    tick_interval_ms: int = 100
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    #: Take a snapshot and compact the log after this many applied entries.
    snapshot_interval_entries: int = 10_000
    #: Entries kept behind a snapshot, so a slightly lagging follower needs no snapshot.
    compaction_margin_entries: int = 1_000
    max_pending_reads: int = 10_000
    #: Join an existing group (added with ``shardkv member add``) instead of creating one.
    join: bool = False
    #: A learner is promoted once its log is within this many entries of the commit index.
    promote_lag_entries: int = 100
    #: A write not committed within this is answered -UNKNOWN (it may still commit).
    proposal_timeout_s: float = 5.0


@dataclass(slots=True)
class _GroupState:
    replica: Replica
    storage: RaftLogStorage
    last_snapshot_index: int = 0
    announced_term: int = 0
    #: A membership change was applied: snapshot soon, so a new member's first snapshot
    #: already lists it.
    snapshot_due: bool = False
    snapshot_running: bool = False


class NodeRuntime:
    """Owns the replicas, the loop and the engine's write path in cluster mode.

    ``send`` delivers messages to peers (the transport); ``step`` is called by the
    transport for messages received. All methods run on the event loop thread.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        engine: Engine,
        executor: Executor,
        send: Callable[[list[Message]], None],
        *,
        add_peer: Callable[[int, str], None] = lambda node_id, address: None,
        remove_peer: Callable[[int], None] = lambda node_id: None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self._engine = engine
        self._executor = executor
        self._send = send
        self.add_peer = add_peer
        self.remove_peer = remove_peer
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()
        self._groups: dict[int, _GroupState] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failed: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] = lambda exc: None
        #: Observers for metrics (seconds): each group-commit sync, each applied proposal.
        self.observe_sync_s: Callable[[float], None] = lambda seconds: None
        self.observe_proposal_s: Callable[[float], None] = lambda seconds: None
        self.leader_changes = 0
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.proposals = 0

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Open (or bootstrap) the node's groups from the engine. Call before ``start``."""
        group_id = DEFAULT_GROUP_ID
        storage = RaftLogStorage(self._engine, group_id)
        if storage.last_index() == 0 and storage.hard_state.term == 0 and not self.settings.join:
            storage = self._bootstrap(group_id)
        applied = read_applied_index(self._engine, group_id)
        s = self.settings
        config = Config(
            node_id=s.node_id,
            group_id=group_id,
            election_timeout_ticks=s.election_timeout_ticks,
            heartbeat_interval_ticks=s.heartbeat_interval_ticks,
            applied_index=applied,
        )
        replica = Replica(
            config,
            storage,
            KVStateMachine(self._engine),
            random.Random(self._rng.getrandbits(64)),
            self._send,
            self._clock_ms,
            time.monotonic,
            max_pending_reads=s.max_pending_reads,
        )
        replica.on_conf_change = self._on_conf_change
        self._groups[group_id] = _GroupState(replica, storage, last_snapshot_index=applied)
        for key, value in self._engine.scan(META, MEMBER_PREFIX, MEMBER_PREFIX_END, 1000):
            node_id = int.from_bytes(key[len(MEMBER_PREFIX) :], "big")
            if node_id != self.node_id:
                self.add_peer(node_id, value.decode())
        if len(self.settings.initial_members) == 1:
            replica.raw.campaign()  # a one-node cluster elects itself at once

    def _bootstrap(self, group_id: int) -> RaftLogStorage:
        """Create the group's log. Its first snapshot is the KV data already on disk: empty
        for a new cluster, or a restored backup (``shardkv backup restore``), whose applied
        index becomes the log's starting point on every member alike."""
        engine = self._engine
        boot_index = max(1, read_applied_index(engine, group_id))
        batch = WriteBatch()
        stage_applied_index(group_id, boot_index, batch)
        engine.write(batch)
        data = build_and_close(engine.consistent_view(), group_id)
        voters = ConfState.of(list(self.settings.initial_members))
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

    async def start(self) -> None:
        if crashpoints.armed():
            log.warning("crash_point_armed", point=crashpoints.armed(), note="tests only")
        self._loop_task = asyncio.create_task(self._run())
        self._tick_task = asyncio.create_task(self._tick())
        self._wake.set()

    async def stop(self, transfer_timeout_s: float = 2.0) -> None:
        """Hand leadership away (so clients see no election gap), then stop the loop."""
        self._stopping = True
        started = time.monotonic()
        deadline = started + transfer_timeout_s
        transfers: dict[int, int] = {}
        for g in self._groups.values():
            raw = g.replica.raw
            if raw.role is Role.LEADER and len(raw.conf_state().voters) > 1:
                target = self._best_transferee(g)
                if target:
                    raw.transfer_leader(target)
                    transfers[g.replica.group_id] = target
                    self._wake.set()
        while time.monotonic() < deadline and any(
            g.replica.is_leader and len(g.replica.raw.conf_state().voters) > 1
            for g in self._groups.values()
        ):
            await asyncio.sleep(0.02)
        for group_id, target in transfers.items():
            replica = self._groups[group_id].replica
            log.info(
                "leadership_transferred" if not replica.is_leader else "leadership_kept",
                group=group_id,
                to=target,
                new_leader=replica.leader_id,
                elapsed_ms=round((time.monotonic() - started) * 1000),
            )
        for task in (self._tick_task, self._loop_task):
            if task is not None:
                task.cancel()

    # -- inputs --------------------------------------------------------------------------

    def step(self, messages: list[Message]) -> None:
        for m in messages:
            g = self._groups.get(m.group_id)
            if g is not None:
                g.replica.raw.step(m)
        self._wake.set()

    def report_unreachable(self, node_id: int) -> None:
        for g in self._groups.values():
            g.replica.raw.report_unreachable(node_id)

    def report_snapshot(self, to: int, group_id: int, ok: bool) -> None:
        g = self._groups.get(group_id)
        if g is not None:
            g.replica.raw.report_snapshot(to, success=ok)
            self._wake.set()

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
        if self._failed is not None:
            on_done([ErrorReply("ERR storage failure: this node stopped serving")] * len(commands))
            return
        replica = self._groups[DEFAULT_GROUP_ID].replica
        if has_write is None:
            has_write = any(_is_write(args) for args in commands)
        all_reads = not has_write
        if not replica.is_leader:
            if allow_stale and all_reads:
                now_ms = self._clock_ms()
                on_done([replica.machine.execute(args, now_ms) for args in commands])
                return
            on_done([self._redirect(replica, args) for args in commands])
            return
        if all_reads:
            replica.read(commands, on_done)
        else:
            self.proposals += 1
            replica.queue_write(commands, self._timed(on_done))
        self._wake.set()

    # -- membership ------------------------------------------------------------------------

    def _on_conf_change(self, change: ConfChange, batch: WriteBatch) -> None:
        for g in self._groups.values():
            g.snapshot_due = True
        key = MEMBER_PREFIX + change.node_id.to_bytes(8, "big")
        if change.type is ConfChangeType.REMOVE_NODE:
            batch.delete(META, key)
            if change.node_id == self.node_id:
                log.warning("this_node_removed_from_group", node_id=self.node_id)
            else:
                self.remove_peer(change.node_id)
        elif change.context:
            address = change.context.decode()
            batch.put(META, key, change.context)
            if change.node_id != self.node_id:
                self.add_peer(change.node_id, address)
        log.info(
            "membership_changed",
            change=change.type.name.lower(),
            node=change.node_id,
            address=change.context.decode(errors="replace"),
        )

    async def _propose_change(self, change: ConfChange) -> None:
        replica = self._groups[DEFAULT_GROUP_ID].replica
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        replica.propose_conf_change(change, lambda r: fut.done() or fut.set_result(r))
        self._wake.set()
        replies = await asyncio.wait_for(fut, 30)
        if isinstance(replies[0], ErrorReply):
            raise MembershipError(replies[0].message)

    async def add_member(self, node_id: int, peer_address: str, timeout_s: float = 120) -> None:
        """Leader only: add ``node_id`` as a learner, wait until its log has caught up, then
        promote it to voter. Raises `NotLeaderError` or `MembershipError`."""
        replica = self._groups[DEFAULT_GROUP_ID].replica
        if not replica.is_leader:
            raise NotLeaderError(f"node {self.node_id} is not the leader", replica.leader_id)
        if node_id in replica.raw.conf_state().voters:
            raise MembershipError(f"node {node_id} is already a voter")
        self.add_peer(node_id, peer_address)
        context = peer_address.encode()
        if node_id not in replica.raw.conf_state().learners:
            await self._propose_change(
                ConfChange(ConfChangeType.ADD_LEARNER_NODE, node_id, context)
            )
        deadline = time.monotonic() + timeout_s
        while True:
            st = replica.raw.status()
            progress = st.progress.get(node_id)
            if progress is not None and progress.match >= st.commit - (
                self.settings.promote_lag_entries
            ):
                break
            if time.monotonic() > deadline:
                raise MembershipError(
                    f"node {node_id} did not catch up within {timeout_s:.0f}s; it stays a "
                    "learner (is it running with --join?)"
                )
            await asyncio.sleep(0.05)
        await self._propose_change(ConfChange(ConfChangeType.ADD_NODE, node_id, context))

    async def remove_member(self, node_id: int) -> None:
        """Leader only: remove ``node_id`` (voter or learner) from the group."""
        replica = self._groups[DEFAULT_GROUP_ID].replica
        if not replica.is_leader:
            raise NotLeaderError(f"node {self.node_id} is not the leader", replica.leader_id)
        if not replica.raw.conf_state().is_member(node_id):
            raise MembershipError(f"node {node_id} is not a member")
        await self._propose_change(ConfChange(ConfChangeType.REMOVE_NODE, node_id))

    def _timed(self, on_done: ReplyCallback) -> ReplyCallback:
        started = time.perf_counter()

        def done(replies: list[Reply]) -> None:
            self.observe_proposal_s(time.perf_counter() - started)
            on_done(replies)

        return done

    async def barrier(self, group_id: int = DEFAULT_GROUP_ID) -> None:
        """Return once a ReadIndex round confirmed this node leads ``group_id`` and has
        applied everything committed before the call. Raises `NotLeaderError`."""
        replica = self._groups[group_id].replica
        if not replica.is_leader:
            raise NotLeaderError(
                f"node {self.node_id} does not lead group {group_id}", replica.leader_id
            )
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        replica.read([[b"DBSIZE"]], lambda r: fut.done() or fut.set_result(r))
        self._wake.set()
        replies = await asyncio.wait_for(fut, self.settings.proposal_timeout_s)
        if isinstance(replies[0], ErrorReply):
            raise NotLeaderError(replies[0].message, replica.leader_id)

    def submit_sweep(self, max_keys: int) -> None:
        """Leader only: propose an expiry sweep stamped with this node's time."""
        for g in self._groups.values():
            # Only when something can expire: an idle cluster writes no log entries.
            if g.replica.is_leader and g.replica.machine.expires_count() > 0:
                g.replica.queue_write([[SWEEP_COMMAND, str(max_keys).encode()]], _ignore)
        self._wake.set()

    # -- views -----------------------------------------------------------------------------

    def replica(self, group_id: int = DEFAULT_GROUP_ID) -> Replica:
        return self._groups[group_id].replica

    def leader_client_address(self, group_id: int = DEFAULT_GROUP_ID) -> str | None:
        replica = self._groups[group_id].replica
        if replica.leader_id == 0:
            return None
        if replica.leader_id == self.node_id:
            return self.settings.client_address
        return replica.client_addresses.get(replica.leader_id)

    def _redirect(self, replica: Replica, args: list[bytes]) -> Reply:
        address = self.leader_client_address(replica.group_id)
        if address is None:
            return ErrorReply("TRYAGAIN no leader is elected for this shard yet; retry in a moment")
        spec = lookup(args[0])
        keys = command_keys(spec, args) if spec is not None else []
        slot = key_slot(keys[0]) if keys else 0
        return ErrorReply(f"MOVED {slot} {address}")

    # -- the loop --------------------------------------------------------------------------

    async def _tick(self) -> None:
        interval_s = self.settings.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            timeout_s = self.settings.proposal_timeout_s
            for g in self._groups.values():
                g.replica.raw.tick()
                g.replica.expire_waiters(timeout_s)
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        engine = self._engine
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                works: list[ReadyWork] = []
                batch = WriteBatch()
                now_ms = self._clock_ms()
                for g in self._groups.values():
                    g.replica.flush_writes(now_ms)
                    g.replica.flush_reads()
                for g in self._groups.values():
                    if g.replica.raw.has_ready():
                        works.append(g.replica.collect(batch, self._write_now))
                if not works:
                    continue
                if batch:
                    engine.write(batch)
                for g in self._groups.values():
                    g.storage.on_written()
                for w in works:
                    w.answer()  # committed entries: no need to wait for this node's sync
                crashpoints.reached("after_write_before_sync")
                if any(w.must_sync for w in works):
                    started = time.perf_counter()
                    await loop.run_in_executor(self._executor, engine.sync)
                    self.observe_sync_s(time.perf_counter() - started)
                crashpoints.reached("after_sync_before_reply")
                for w in works:
                    if w.ready.soft_state is not None:
                        self.leader_changes += 1
                    if w.ready.snapshot is not None:
                        self.snapshots_installed += 1
                for w in works:
                    w.finish()
                for g in self._groups.values():
                    self._after_iteration(g)
                self._wake.set()  # there may be more (advance can produce new work)
            except Exception as exc:  # a storage or invariant failure: fail-stop
                self._failed = exc
                log.critical("node_runtime_failed", error=repr(exc))
                self.on_fatal(exc)
                return

    def _write_now(self, batch: WriteBatch) -> None:
        self._engine.write(batch)
        crashpoints.reached("snapshot_install")

    def _after_iteration(self, g: _GroupState) -> None:
        replica = g.replica
        raw = replica.raw
        if raw.role is Role.LEADER and g.announced_term != raw.term:
            # A new leader tells every replica its client address, through the log.
            g.announced_term = raw.term
            address = self.settings.client_address.encode()
            replica.queue_write([[ANNOUNCE_COMMAND, str(self.node_id).encode(), address]], _ignore)
            self._wake.set()
        interval = self.settings.snapshot_interval_entries
        if g.snapshot_due or replica.applied_index - g.last_snapshot_index >= interval:
            g.snapshot_due = False
            self._snapshot(g)

    def _snapshot(self, g: _GroupState) -> None:
        """Start a snapshot of the applied state; the log is compacted behind it when done.

        The view is taken on the loop right after a write, so it holds exactly the applied
        index; serialising it runs in the storage thread pool (it reads every key), so the
        loop keeps serving meanwhile. One snapshot per group at a time."""
        replica = g.replica
        index = replica.applied_index
        if g.snapshot_running:
            return
        if index <= g.storage.snapshot_index:
            # Nothing newer to save (e.g. the applied state IS a snapshot just installed from
            # the leader); count the interval from here.
            g.last_snapshot_index = index
            return
        view = self._engine.consistent_view()
        if read_applied_index(view, replica.group_id) != index:
            view.close()
            return
        conf_state = replica.raw.conf_state()
        g.snapshot_running = True
        g.last_snapshot_index = index  # do not start another for this interval
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, build_and_close, view, replica.group_id
        )
        future.add_done_callback(lambda fut: self._snapshot_built(g, index, conf_state, fut))

    def _snapshot_built(
        self, g: _GroupState, index: int, conf_state: ConfState, fut: asyncio.Future[bytes]
    ) -> None:
        g.snapshot_running = False
        try:
            data = fut.result()
            batch = WriteBatch()
            g.storage.stage_create_snapshot(index, conf_state, data, batch)
            compact_to = index - self.settings.compaction_margin_entries
            if compact_to > g.storage.first_index():
                g.storage.stage_compact(compact_to, batch)
        except RaftStorageError as exc:  # e.g. a newer snapshot was installed meanwhile
            log.info("snapshot_skipped", group=g.replica.group_id, index=index, reason=str(exc))
            return
        except Exception as exc:
            self._failed = exc
            log.critical("node_runtime_failed", error=repr(exc))
            self.on_fatal(exc)
            return
        self._engine.write(batch)
        crashpoints.reached("compaction")
        g.storage.on_written()
        self.snapshots_taken += 1
        log.info("snapshot_taken", group=g.replica.group_id, index=index, bytes=len(data))

    def _best_transferee(self, g: _GroupState) -> int:
        status = g.replica.raw.status()
        best, best_match = 0, -1
        for node_id, progress in status.progress.items():
            if node_id == self.node_id or progress.is_learner:
                continue
            if progress.match > best_match:
                best, best_match = node_id, progress.match
        return best


def _ignore(replies: list[Reply]) -> None:
    pass


def _is_write(args: list[bytes]) -> bool:
    spec: CommandSpec | None = lookup(args[0])
    return spec is None or spec.kind is not CommandKind.DATA or spec.is_write
