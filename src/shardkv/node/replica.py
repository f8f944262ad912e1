"""One Raft group hosted by this node: its RawNode, its durable log, its KV state machine,
and the clients waiting on it.

The node runtime (``shardkv.node.runtime``) drives every replica through the same steps each
loop iteration; this module holds what is specific to one group:

1. ``collect(batch)``: take the RawNode's Ready, stage the durable parts (snapshot, entries,
   hard state) into the node's shared WriteBatch, apply committed entries to the KV state
   machine (their writes and the applied index go into the same batch), and return a
   :class:`ReadyWork` with everything that may only happen after the batch is durable.
2. The runtime writes the batch and syncs it once for all groups (group commit).
3. ``ReadyWork.finish()``: send the messages that promise durable state, answer the
   clients whose proposals were applied, serve reads whose read index is applied, and call
   ``advance``.

Client writes are proposals (one log entry per connection group, stamped with the
leader's time); client reads are batched into one ReadIndex request per loop iteration.
A client is answered once its entry is committed and applied (and never before the entry
is durable on a quorum that includes the leader).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from shardkv.core.cluster.merge import (
    ABSORB_COMMAND,
    RETIRE_COMMAND,
    AbsorbOrder,
    MergeCommandError,
    decode_absorb_command,
    decode_retire_command,
)
from shardkv.core.cluster.placement import PlacementMachine
from shardkv.core.cluster.routing import KEYLESS, command_slot
from shardkv.core.cluster.shardmap import PLACEMENT_GROUP_ID
from shardkv.core.cluster.split import (
    SPLIT_COMMAND,
    SplitCommandError,
    SplitOrder,
    decode_split_command,
)
from shardkv.core.engine import META, WriteBatch
from shardkv.core.kv import KVStateMachine
from shardkv.core.kv.codec import (
    data_bytes_key,
    encode_count,
    expires_count_key,
    key_count_key,
    scope_key,
)
from shardkv.core.kv.proposal import decode_proposal, encode_proposal, lone_command_name
from shardkv.core.kv.scope import KeyScope, encode_scope_record, merge_scopes, split_scope
from shardkv.core.raft import (
    ConfChange,
    Config,
    Entry,
    EntryType,
    Message,
    NotLeaderError,
    ProposalDroppedError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    Storage,
)
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.node.shard_snapshots import ShardSnapshots
from shardkv.observability.logging import get_logger
from shardkv.storage.kv_snapshot import stage_applied_index

log = get_logger(__name__)

ReplyCallback = Callable[[list[Reply]], None]

#: Log-only commands, proposed by the node itself (never accepted from clients: the server
#: only forwards commands found in the command table, and these names are not in it).
#: ``expire-sweep <max_keys>``: delete expired keys, with the proposer's time.
SWEEP_COMMAND: Final = b"\x00expire-sweep"
#: ``announce <node id> <client host:port> [<node id> <client host:port> ...]``: a leader
#: tells every replica where clients should be sent (the addresses in -MOVED replies): its
#: own, and every other node's it knows, so each node learns every address through the
#: groups it hosts.
ANNOUNCE_COMMAND: Final = b"\x00announce"
SendMessages = Callable[[list[Message]], None]

#: Reply to a split command that shares its log entry with other commands (it must be
#: alone: its apply writes the entries before it first).
SPLIT_NOT_ALONE: Final = ErrorReply("ERR split refused: a split must be alone in its entry")
#: Reply to a command that reaches a shard after it retired (it was merged into another).
RETIRED: Final = ErrorReply(
    "TRYAGAIN this shard was merged into another; refresh the slot map and retry"
)
#: Reply to a retire or absorb that shares its log entry with other commands.
MERGE_NOT_ALONE: Final = ErrorReply("ERR merge refused: a merge step must be alone in its entry")
#: A proposal that lost its place in the log (leader change): it did not happen.
PROPOSAL_DROPPED: Final = ErrorReply(
    "TRYAGAIN the write was not committed because leadership changed; retry it"
)
#: A proposal that did not commit in time: it may still commit, or never.
PROPOSAL_UNKNOWN: Final = ErrorReply(
    "UNKNOWN the write was proposed but not committed in time; it may or may not be applied"
)
#: A read whose ReadIndex round could not finish (leader change): it returned nothing.
READ_DROPPED: Final = ErrorReply("TRYAGAIN leadership changed during the read; retry it")


class ReplicaStorage(Storage, Protocol):
    """What a replica needs from its durable Raft log besides the core's `Storage`."""

    def stage_ready(self, ready: Ready, batch: WriteBatch) -> None:
        """Stage the Ready's snapshot, entries and hard state into ``batch``."""
        ...

    def on_written(self) -> None:
        """The batch holding the last ``stage_ready`` was written to the engine."""
        ...


@dataclass(slots=True)
class _Waiter:
    term: int
    on_done: ReplyCallback
    commands: int
    proposed_at_s: float


@dataclass(slots=True)
class _PendingRead:
    commands: list[list[bytes]]
    on_done: ReplyCallback


@dataclass(slots=True)
class ReadyWork:
    """What one replica must do once the node's batch is durable (see module docstring)."""

    replica: Replica
    #: None: a cycle that only applied entries held back earlier (`Replica.apply_held`).
    ready: Ready | None
    answers: list[tuple[ReplyCallback, list[Reply]]] = field(default_factory=list)

    @property
    def must_sync(self) -> bool:
        return self.ready is not None and self.ready.must_sync

    def answer(self) -> None:
        """Answer the clients whose entries were applied. Allowed before this node's sync:
        an applied entry is committed, so it is already durable on a quorum that includes
        the leader (the core counts the leader's own entries only once persisted); if this
        node crashes now, it applies the entry again from its log on restart."""
        answers, self.answers = self.answers, []
        for on_done, replies in answers:
            on_done(replies)

    def finish(self) -> None:
        replica = self.replica
        ready = self.ready
        if ready is not None and ready.messages_after_persist:
            replica.send(list(ready.messages_after_persist))
        self.answer()
        if ready is not None:
            replica.raw.advance(ready)
        replica.serve_reads()


def _split_replies(groups: list[tuple[list[list[bytes]], ReplyCallback]]) -> ReplyCallback:
    """One callback for an entry that carries several groups: hand each group its replies
    (an error that stands for the whole entry is repeated for every command)."""

    def done(replies: list[Reply]) -> None:
        pos = 0
        for group, on_done in groups:
            n = len(group)
            on_done(replies[pos : pos + n])
            pos += n

    return done


class Replica:
    def __init__(
        self,
        config: Config,
        storage: ReplicaStorage,
        machine: KVStateMachine | PlacementMachine,
        rng: random.Random,
        send: SendMessages,
        clock_ms: Callable[[], int],
        monotonic_s: Callable[[], float],
        *,
        max_pending_reads: int = 10_000,
        max_commands_per_entry: int = 10_000,
        snapshots: ShardSnapshots | None = None,
    ) -> None:
        self.group_id = config.group_id
        #: How this node keeps snapshots (inline unless the driver passes its own).
        self.snapshots = snapshots if snapshots is not None else ShardSnapshots(None)
        self.node_id = config.node_id
        self.storage = storage
        self.machine = machine
        self.raw = RawNode(config, storage, rng)
        self.send = send
        self._clock_ms = clock_ms
        self._monotonic_s = monotonic_s
        self.applied_index = config.applied_index
        #: Payload bytes of the log entries applied since this replica opened: the driver
        #: snapshots (and compacts the log) by it (``snapshot_interval_bytes``).
        self.applied_bytes = 0
        self._max_pending_reads = max_pending_reads
        self._waiters: dict[int, _Waiter] = {}
        self._unsent_reads: list[_PendingRead] = []
        self._reads_by_ctx: dict[bytes, list[_PendingRead]] = {}
        self._ready_reads: list[tuple[int, list[_PendingRead]]] = []
        self._read_seq = 0
        self._max_commands_per_entry = max_commands_per_entry
        self._queued_writes: list[tuple[list[list[bytes]], ReplyCallback]] = []
        self._queued_write_commands = 0
        #: Called on the loop thread when a membership change entry is applied (the core
        #: applies its effect on the configuration itself, in ``advance``).
        self.on_conf_change: Callable[[ConfChange, WriteBatch], None] = lambda c, b: None
        #: Called with the slot of every client command this replica executes (tests and
        #: the simulator check that only the owning group serves a slot).
        self.on_serve: Callable[[int], None] | None = None
        #: Whether commands for slots outside this group's scope are refused (the epoch
        #: fence). Only a planted-bug test turns it off.
        self.fenced = True
        self._owned_slots = machine.scope.slot_mask()
        #: Called when a leader's announcement (node id, client address) is applied, to
        #: stage it durably: a restarted node knows every leader's address at once.
        self.on_announce: Callable[[int, bytes, WriteBatch], None] = lambda n, a, b: None
        #: The epoch of this replica's applied scope: the map's when the replica opened,
        #: then the one its own log (a split) or a snapshot set.
        self.scope_epoch = 0
        #: Client commands this replica executed since it opened (its shard's load).
        self.commands_applied = 0
        #: Called when a split entry is applied, with the order, the child's scope and
        #: members (voters, learners), and the batch holding the parent's side: stage the
        #: child's creation in it and return what to run once it is written (or None).
        self.on_split: Callable[
            [SplitOrder, KeyScope, tuple[int, ...], tuple[int, ...], WriteBatch],
            Callable[[], None] | None,
        ] = lambda order, scope, voters, learners, batch: None
        #: Called after this replica's scope changed (a split, retire or absorb applied,
        #: or a snapshot installed): ``machine.scope`` and ``scope_epoch`` hold the new one.
        self.on_scope_change: Callable[[], None] = lambda: None
        #: This replica applied its shard's retire (a merge): it serves nothing and
        #: applies no client command, sweep or split from then on.
        self.retired = False
        #: Index of the last entry that changed this replica's slots (split or absorb).
        self.scope_changed_index = 0
        #: Whether this node's replica of the given shard has retired (a merge's absorb
        #: waits for it).
        self.source_retired: Callable[[int], bool] = lambda group_id: False
        #: Called once an absorb applied and was written.
        self.on_absorbed: Callable[[AbsorbOrder], None] = lambda order: None
        #: Slots beyond this replica's scope a snapshot of its shard may hold (the
        #: absorbed shard's, after a merge this replica has not applied yet); None: none.
        self.install_may_take: Callable[[], KeyScope | None] = lambda: None
        #: Committed entries handed out by Raft and not applied yet: an absorb waiting
        #: for this node's replica of the absorbed shard to retire, and what follows it.
        #: (Bounded by how long that takes: that replica catches up from its own log.)
        self._held: list[Entry] = []

    # -- client requests ---------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.raw.role is Role.LEADER

    @property
    def leader_id(self) -> int:
        return self.raw.lead

    def queue_write(self, commands: list[list[bytes]], on_done: ReplyCallback) -> None:
        """Queue a group of commands (a connection's, or the node's own expiry sweep and
        leader announcement); `flush_writes` proposes every group queued in this loop
        iteration as one log entry (one entry per iteration, not per client: the Raft and
        storage cost per command shrinks as load grows). ``on_done`` gets one reply per
        command once the entry is applied."""
        self._queued_writes.append((commands, on_done))
        self._queued_write_commands += len(commands)

    def flush_writes(self, now_ms: int) -> None:
        """Propose the queued groups, at most ``max_commands_per_entry`` commands per
        entry. If this node no longer leads, they were never proposed: each group gets
        `PROPOSAL_DROPPED` (definitely not executed)."""
        while self._queued_writes:
            take = 0
            count = 0
            limit = self._max_commands_per_entry
            while take < len(self._queued_writes) and (take == 0 or count < limit):
                count += len(self._queued_writes[take][0])
                take += 1
            groups = self._queued_writes[:take]
            del self._queued_writes[:take]
            self._queued_write_commands -= count
            commands = [c for group, _ in groups for c in group]
            try:
                proposed = self.raw.propose(encode_proposal(now_ms, commands))
            except ProposalDroppedError:  # NotLeaderError included
                for group, on_done in groups:
                    on_done([PROPOSAL_DROPPED] * len(group))
                continue
            self._waiters[proposed.last_index] = _Waiter(
                proposed.term, _split_replies(groups), count, self._monotonic_s()
            )

    def propose_alone(self, args: list[bytes], on_done: ReplyCallback) -> None:
        """Propose ``args`` as a log entry of its own (a split). Raises `NotLeaderError`;
        ``on_done`` gets the reply once applied."""
        proposed = self.raw.propose(encode_proposal(self._clock_ms(), [args]))
        self._waiters[proposed.last_index] = _Waiter(proposed.term, on_done, 1, self._monotonic_s())

    def propose_conf_change(self, change: ConfChange, on_done: ReplyCallback) -> None:
        """Propose a membership change; ``on_done`` gets ``[0]`` once it is applied, or an
        error. Raises `NotLeaderError`; a change refused by the core (another one pending,
        no-op, would leave no voter) gets an ``ERR`` reply."""
        try:
            proposed = self.raw.propose_conf_change(change)
        except NotLeaderError:
            raise
        except ProposalDroppedError as exc:
            on_done([ErrorReply(f"ERR membership change refused: {exc}")])
            return
        self._waiters[proposed.last_index] = _Waiter(proposed.term, on_done, 1, self._monotonic_s())

    def read(self, commands: list[list[bytes]], on_done: ReplyCallback) -> None:
        """Queue read-only ``commands``: they run once a ReadIndex round confirms this
        node still leads and the state machine has applied the read index."""
        if len(self._unsent_reads) >= self._max_pending_reads:
            on_done([ErrorReply("TRYAGAIN too many reads waiting; retry later")] * len(commands))
            return
        self._unsent_reads.append(_PendingRead(commands, on_done))

    def flush_reads(self) -> None:
        """Start one ReadIndex round for every read queued since the last call."""
        if not self._unsent_reads:
            return
        reads, self._unsent_reads = self._unsent_reads, []
        self._read_seq += 1
        ctx = struct.pack(">Q", self._read_seq)
        try:
            self.raw.read_index(ctx)
        except ProposalDroppedError:  # NotLeaderError included: deposed since they queued
            for r in reads:
                r.on_done([READ_DROPPED] * len(r.commands))
            return
        self._reads_by_ctx[ctx] = reads

    def expire_waiters(self, timeout_s: float) -> None:
        """Answer proposals older than ``timeout_s`` with an unknown outcome: their entry
        may still commit (the leader may have lost its quorum, or leadership, mid-way)."""
        if not self._waiters:
            return
        cutoff = self._monotonic_s() - timeout_s
        for index in [i for i, w in self._waiters.items() if w.proposed_at_s < cutoff]:
            w = self._waiters.pop(index)
            w.on_done([PROPOSAL_UNKNOWN] * w.commands)

    def fail_pending(self, reply: ErrorReply) -> None:
        """Leadership was lost: fail every read still waiting on a ReadIndex round, and
        every write queued but not yet proposed. Proposals are settled by the log itself
        (applied, or replaced at their index)."""
        queued, self._queued_writes = self._queued_writes, []
        self._queued_write_commands = 0
        for group, on_done in queued:
            on_done([PROPOSAL_DROPPED] * len(group))
        reads = self._unsent_reads + [r for rs in self._reads_by_ctx.values() for r in rs]
        self._unsent_reads, self._reads_by_ctx = [], {}
        for r in reads:
            r.on_done([reply] * len(r.commands))

    # -- the Ready cycle -----------------------------------------------------------------

    def collect(self, batch: WriteBatch, write_now: Callable[[WriteBatch], None]) -> ReadyWork:
        """Step 1 of the module docstring. ``write_now`` writes (unsynced) a batch at once:
        used when a snapshot must be in the engine before later entries apply on top."""
        rd = self.raw.ready()
        work = ReadyWork(self, rd)
        if rd.messages:
            self.send(list(rd.messages))
        self.storage.stage_ready(rd, batch)
        if rd.soft_state is not None:
            log.info(
                "raft_role_changed",
                group=self.group_id,
                role=rd.soft_state.role.name.lower(),
                leader=rd.soft_state.lead,
                term=self.raw.term,
            )
            if rd.soft_state.role is not Role.LEADER:
                self.fail_pending(READ_DROPPED)
        if rd.snapshot is not None:
            # The snapshot's data replaces the state machine; entries after it apply on top.
            self.install_snapshot(rd.snapshot, batch, write_now)
            write_now(batch)
            self.snapshots.recorded(self.group_id, rd.snapshot.data)
            self.storage.on_written()
            batch.ops.clear()
            self.applied_index = rd.snapshot.metadata.index
            self._take_stored_scope()
            self._settle_skipped_waiters(work)
        if rd.committed_entries or self._held:
            self._apply([*self._held, *rd.committed_entries], batch, work, write_now)
        for rs in rd.read_states:
            reads = self._reads_by_ctx.pop(rs.request_ctx, None)
            if reads:
                self._ready_reads.append((rs.index, reads))
        return work

    def install_snapshot(
        self, snapshot: Snapshot, batch: WriteBatch, write_now: Callable[[WriteBatch], None]
    ) -> None:
        """Install ``snapshot`` as this group's state, finishing in ``batch`` (which holds
        the snapshot's log metadata; the caller writes it next). A snapshot kept in a file
        is installed in pages written through ``write_now`` first (`ShardSnapshots`)."""
        index = snapshot.metadata.index
        if isinstance(self.machine, PlacementMachine):
            self.machine.restore(snapshot.data, batch)
            stage_applied_index(self.group_id, index, batch)
            return
        self.snapshots.stage_install(
            snapshot, self.machine.scope, batch, write_now, self.install_may_take()
        )

    @property
    def holding(self) -> bool:
        """Committed entries wait to be applied (see ``_held``)."""
        return bool(self._held)

    def held_ready(self) -> bool:
        """The entries held back can be applied now (this node's replica of the absorbed
        shard retired meanwhile)."""
        return bool(self._held) and not self._must_hold(self._held[0])

    def apply_held(self, batch: WriteBatch, write_now: Callable[[WriteBatch], None]) -> ReadyWork:
        """Apply the entries held back (call when `held_ready`), outside a Ready cycle."""
        work = ReadyWork(self, None)
        self._apply(list(self._held), batch, work, write_now)
        return work

    def _must_hold(self, entry: Entry) -> bool:
        """Whether ``entry`` is an absorb whose source has not retired on this node yet
        (applying it now could let that replica write into slots this group serves)."""
        if entry.type is EntryType.CONF_CHANGE or lone_command_name(entry.data) != ABSORB_COMMAND:
            return False  # (the common case, without decoding the entry)
        try:
            order = decode_absorb_command(self.group_id, decode_proposal(entry.data).commands[0])
        except MergeCommandError:
            return False  # refused when applied
        return order.epoch > self.scope_epoch and not self.source_retired(order.source)

    def _apply(
        self,
        entries: list[Entry],
        batch: WriteBatch,
        work: ReadyWork,
        write_now: Callable[[WriteBatch], None],
    ) -> None:
        machine = self.machine
        machine.begin_batch()
        waiters = self._waiters
        was_holding, self._held = bool(self._held), []
        for pos, entry in enumerate(entries):
            if entry.index <= self.applied_index:
                continue  # a snapshot installed in this cycle holds it
            if self.group_id != PLACEMENT_GROUP_ID and self._must_hold(entry):
                self._held = entries[pos:]
                if not was_holding:
                    log.info("absorb_waits_for_retire", shard=self.group_id, index=entry.index)
                break
            waiter = waiters.pop(entry.index, None) if waiters else None
            if entry.type is EntryType.CONF_CHANGE:
                change = ConfChange.decode(entry.data)
                self.on_conf_change(change, batch)
                replies: list[Reply] = [0]
            elif not entry.data:
                replies = []
            else:
                replies, machine = self._apply_commands(entry, batch, write_now)
            if waiter is not None:
                if waiter.term == entry.term:
                    work.answers.append((waiter.on_done, replies))
                else:
                    work.answers.append((waiter.on_done, [PROPOSAL_DROPPED] * waiter.commands))
            self.applied_index = entry.index
            self.applied_bytes += len(entry.data)
        self._settle_skipped_waiters(work)
        kv_batch = self.machine.finish_batch()
        batch.extend(kv_batch)
        stage_applied_index(self.group_id, self.applied_index, batch)

    def _apply_commands(
        self, entry: Entry, batch: WriteBatch, write_now: Callable[[WriteBatch], None]
    ) -> tuple[list[Reply], KVStateMachine | PlacementMachine]:
        """Apply the commands of one proposal entry. Returns the replies and the machine
        that applies the next entries (a split, retire or absorb replaces it)."""
        machine = self.machine
        proposal = decode_proposal(entry.data)
        now_ms = proposal.now_ms
        replies: list[Reply] = []
        data_group = self.group_id != PLACEMENT_GROUP_ID
        alone = len(proposal.commands) == 1
        for args in proposal.commands:
            name = args[0]
            if name == SWEEP_COMMAND:
                replies.append(0 if self.retired else machine.expire_sweep(now_ms, int(args[1])))
            elif name == ANNOUNCE_COMMAND:
                for i in range(1, len(args) - 1, 2):
                    self.on_announce(int(args[i]), args[i + 1], batch)
                replies.append(0)
            elif not data_group:
                replies.append(machine.execute(args, now_ms))
            elif name in (SPLIT_COMMAND, RETIRE_COMMAND, ABSORB_COMMAND):
                if not alone:
                    replies.append(SPLIT_NOT_ALONE if name == SPLIT_COMMAND else MERGE_NOT_ALONE)
                    continue
                if name == SPLIT_COMMAND:
                    reply, machine = self._apply_split(args, entry.index, batch, write_now)
                elif name == RETIRE_COMMAND:
                    reply, machine = self._apply_retire(args, entry.index, batch, write_now)
                else:
                    reply, machine = self._apply_absorb(args, entry.index, batch, write_now)
                replies.append(reply)
            elif self.retired:
                replies.append(RETIRED)
            else:
                replies.append(self.execute_owned(args, now_ms))
        return replies, machine

    def _write_through(
        self, index: int, batch: WriteBatch, write_now: Callable[[WriteBatch], None]
    ) -> None:
        """Close the machine's batch and write ``batch`` at once, applied up to ``index``
        (what a split, retire or absorb reads must hold every earlier write)."""
        batch.extend(self.machine.finish_batch())
        stage_applied_index(self.group_id, index, batch)
        write_now(batch)
        batch.ops.clear()

    def _apply_retire(
        self,
        args: list[bytes],
        index: int,
        batch: WriteBatch,
        write_now: Callable[[WriteBatch], None],
    ) -> tuple[Reply, KVStateMachine | PlacementMachine]:
        """Apply the retire entry at ``index`` (``core/cluster/merge.py``): from here on
        this replica serves nothing and its data stays as it is, for the survivor."""
        machine = self.machine
        try:
            order = decode_retire_command(self.group_id, args)
        except MergeCommandError as exc:
            return ErrorReply(f"ERR retire refused: {exc}"), machine
        if self.retired or order.epoch <= self.scope_epoch:
            return ErrorReply("ERR retire refused: the shard's epoch is already past it"), machine
        self._write_through(self.applied_index, batch, write_now)
        batch.put(META, scope_key(self.group_id), encode_scope_record(order.epoch, ()))
        retired = self.retire_here(order.epoch)
        log.info("shard_retired", shard=self.group_id, into=order.survivor, epoch=order.epoch)
        retired.begin_batch()
        return OK, retired

    def retire_here(self, epoch: int) -> KVStateMachine:
        """Serve nothing from now on, at ``epoch``: the retire entry applied, or (called
        between cycles) a survivor here took this replica's slots, so its shard retired
        on a quorum already. The caller writes the scope record."""
        self.retired = True
        return self._narrow_to(KeyScope(self.group_id, ()), epoch)

    def _apply_absorb(
        self,
        args: list[bytes],
        index: int,
        batch: WriteBatch,
        write_now: Callable[[WriteBatch], None],
    ) -> tuple[Reply, KVStateMachine | PlacementMachine]:
        """Apply the absorb entry at ``index`` (``core/cluster/merge.py``; `_must_hold`
        made sure the source retired on this node): take its slots, expiry entries and
        counters, all in one write with the applied index."""
        machine = self.machine
        assert isinstance(machine, KVStateMachine)
        try:
            order = decode_absorb_command(self.group_id, args)
            merged = merge_scopes(machine.scope, order.source_scope)
        except (MergeCommandError, ValueError) as exc:
            return ErrorReply(f"ERR absorb refused: {exc}"), machine
        if self.retired or order.epoch <= self.scope_epoch:
            return ErrorReply("ERR absorb refused: the shard's epoch is already past it"), machine
        self._write_through(self.applied_index, batch, write_now)
        machine.begin_batch()
        keys, expiring, data_bytes = machine.absorb(order.source_scope)
        for key in (
            key_count_key(order.source),
            expires_count_key(order.source),
            data_bytes_key(order.source),
        ):
            batch.delete(META, key)
        record = encode_scope_record(order.epoch, merged.slot_ranges, changed_at=index)
        batch.put(META, scope_key(self.group_id), record)
        self._write_through(index, batch, write_now)
        self.scope_changed_index = index
        widened = self._narrow_to(merged, order.epoch)
        self.on_absorbed(order)
        log.info(
            "shard_absorbed",
            shard=self.group_id,
            source=order.source,
            slots=merged.describe(),
            keys=keys,
            expiring=expiring,
            data_bytes=data_bytes,
            epoch=order.epoch,
        )
        widened.begin_batch()
        return OK, widened

    def _apply_split(
        self,
        args: list[bytes],
        index: int,
        batch: WriteBatch,
        write_now: Callable[[WriteBatch], None],
    ) -> tuple[Reply, KVStateMachine | PlacementMachine]:
        """Apply the split entry at ``index`` (alone in its entry; see
        ``core/cluster/split.py``). Writes the cycle's batch twice, so the split's reads
        see every earlier write and the split lands whole, with its applied index, in one
        write. Returns the reply and the machine that applies the entries after it (with
        a batch open)."""
        machine = self.machine
        assert isinstance(machine, KVStateMachine)
        try:
            order, voters, learners = decode_split_command(self.group_id, args)
            kept, child = split_scope(machine.scope, order.first_slot, order.child)
        except (SplitCommandError, ValueError) as exc:
            return ErrorReply(f"ERR split refused: {exc}"), machine
        if self.retired or order.epoch <= self.scope_epoch:
            # Proposed twice (a retry), or older than this replica's scope: done already.
            return ErrorReply("ERR split refused: the shard's epoch is already past it"), machine
        self._write_through(self.applied_index, batch, write_now)
        machine.begin_batch()
        keys, expiring, data_bytes = machine.split_off(child)
        batch.extend(machine.finish_batch())
        batch.put(META, key_count_key(child.group_id), encode_count(keys))
        batch.put(META, expires_count_key(child.group_id), encode_count(expiring))
        batch.put(META, data_bytes_key(child.group_id), encode_count(max(0, data_bytes)))
        batch.put(
            META, scope_key(child.group_id), encode_scope_record(order.epoch, child.slot_ranges)
        )
        batch.put(
            META,
            scope_key(self.group_id),
            encode_scope_record(order.epoch, kept.slot_ranges, changed_at=index),
        )
        stage_applied_index(self.group_id, index, batch)
        after_written = self.on_split(order, child, voters, learners, batch)
        write_now(batch)
        batch.ops.clear()
        if after_written is not None:
            after_written()
        self.scope_changed_index = index
        narrowed = self._narrow_to(kept, order.epoch)
        log.info(
            "shard_split_applied",
            shard=self.group_id,
            child=order.child,
            kept=kept.describe(),
            moved=child.describe(),
            moved_keys=keys,
            epoch=order.epoch,
        )
        narrowed.begin_batch()
        return OK, narrowed

    def _narrow_to(self, scope: KeyScope, epoch: int) -> KVStateMachine:
        """Own ``scope`` at ``epoch`` from now on (a new machine, a new fence): fewer
        slots after a split or retire, more after an absorb."""
        machine = self.machine
        assert isinstance(machine, KVStateMachine)
        narrowed = machine.narrowed(scope)
        self.machine = narrowed
        self._owned_slots = scope.slot_mask()
        self.scope_epoch = epoch
        self.on_scope_change()
        return narrowed

    def _take_stored_scope(self) -> None:
        """A snapshot was installed and written: take the scope record it carried, if it
        differs (this replica missed a split of its shard)."""
        machine = self.machine
        if not isinstance(machine, KVStateMachine):
            return
        record = machine.stored_scope()
        if record is None:
            return
        epoch, ranges = record
        scope = KeyScope(self.group_id, ranges)
        if scope != machine.scope:
            self._narrow_to(scope, epoch)
        else:
            self.scope_epoch = max(self.scope_epoch, epoch)

    def _settle_skipped_waiters(self, work: ReadyWork) -> None:
        """Waiters at or below the applied index whose entry this replica never applied one
        by one (a snapshot jumped over it): their entry may be inside the snapshot, so the
        outcome is unknown, never "not executed"."""
        if not self._waiters:
            return
        for index in [i for i in self._waiters if i <= self.applied_index]:
            w = self._waiters.pop(index)
            work.answers.append((w.on_done, [PROPOSAL_UNKNOWN] * w.commands))

    @property
    def idle(self) -> bool:
        """No client is waiting on this replica and nothing is queued."""
        return not (
            self._queued_writes
            or self._unsent_reads
            or self._reads_by_ctx
            or self._ready_reads
            or self._waiters
            or self._held
        )

    def execute_owned(self, args: list[bytes], now_ms: int) -> Reply:
        """Execute a client command if this group owns its slot in its applied scope; else
        answer ``-TRYAGAIN`` (the slot belongs to another shard now: the client refreshes
        its slot map and retries there). Keyless commands run on this group's slots only."""
        slot = command_slot(args)
        if type(slot) is ErrorReply:
            return slot
        if slot != KEYLESS:
            if self.fenced and not self._owned_slots[slot]:
                return ErrorReply(
                    f"TRYAGAIN slot {slot} is not served by shard {self.group_id} at its "
                    "current epoch; refresh the slot map and retry"
                )
            if self.on_serve is not None:
                self.on_serve(slot)
        self.commands_applied += 1
        return self.machine.execute(args, now_ms)

    def narrow_fence(self, scope: KeyScope) -> None:
        """Serve from now on only the slots both the current fence and ``scope`` hold."""
        mask = scope.slot_mask()
        self._owned_slots = bytes(a & b for a, b in zip(self._owned_slots, mask, strict=True))

    def serve_reads(self) -> None:
        """Answer reads whose read index is applied (call after the batch is durable)."""
        if not self._ready_reads:
            return
        still: list[tuple[int, list[_PendingRead]]] = []
        for index, reads in self._ready_reads:
            if index > self.applied_index:
                still.append((index, reads))
                continue
            # Reads see expiry by this leader's clock; writes carry their proposer's stamp.
            now_ms = self._clock_ms()
            for r in reads:
                r.on_done([self.execute_owned(args, now_ms) for args in r.commands])
        self._ready_reads = still
