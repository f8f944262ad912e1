"""`RawNode`: the synchronous, sans-I/O face of one Raft replica, and its `Ready` output.

The caller (the node runtime, the simulator, the tests) feeds inputs in (`tick`, `step`,
`propose`, `read_index`, ...), then collects a `Ready`, performs its I/O and calls
`advance`. The contract is written in `RawNode.ready`. This module never does I/O, never
reads a clock and never keeps references into the caller's data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardkv.core.raft.errors import RaftUsageError, WrongGroupError
from shardkv.core.raft.progress import ProgressState
from shardkv.core.raft.raft import Config, EventSink, Raft
from shardkv.core.raft.storage import Storage
from shardkv.core.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Proposed,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)

if TYPE_CHECKING:
    from random import Random


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the caller, produced by `RawNode.ready`. Read the contract there.

    - ``hard_state``: persist if not None (term, vote, commit changed).
    - ``soft_state``: leader/role changed (informational; not persisted).
    - ``entries``: append to the durable log (replacing any suffix from the first index).
    - ``snapshot``: install (persist, then load into the state machine) if not None.
    - ``committed_entries``: apply in order, after ``snapshot``.
    - ``messages``: may be sent at once, even before persisting.
    - ``messages_after_persist``: may be sent only after the persist is durable.
    - ``read_states``: completed ReadIndex requests.
    - ``must_sync``: whether the persist must be synced (fsync) before proceeding; False
      when only the commit index changed.
    """

    hard_state: HardState | None
    soft_state: SoftState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    messages_after_persist: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """The leader's view of one member (see `progress.Progress`)."""

    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    paused: bool
    pending_snapshot: int
    inflight_messages: int
    description: str


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a replica's state for observability and tests. ``progress`` is
    filled only on the leader."""

    node_id: int
    group_id: int
    term: int
    vote: int
    commit: int
    applied: int
    first_index: int
    last_index: int
    lead: int
    role: Role
    lead_transferee: int
    conf_state: ConfState
    progress: dict[int, ProgressStatus]


class RawNode:
    """One replica of one Raft group, driven synchronously by its caller.

    Construct with a `Config` (node id, group id, timeouts, bounds), a `Storage` holding
    what was persisted before (empty or bootstrapped for a new replica) and a seeded
    ``random.Random`` (only election timeouts are drawn from it). ``on_event`` receives
    human-readable lines about notable events (for logs and scenario tests).

    Inputs: `tick`, `step`, `campaign`, `propose`, `propose_many`, `propose_conf_change`,
    `read_index`, `transfer_leader`, `report_unreachable`, `report_snapshot`.
    Outputs: `has_ready`, `ready`, then `advance`. Not thread-safe: one caller at a time.
    """

    __slots__ = (
        "_outstanding",
        "_prev_hard_state",
        "_prev_soft_state",
        "_raft",
        "_steps_on_advance",
    )

    def __init__(
        self,
        config: Config,
        storage: Storage,
        rng: Random,
        *,
        on_event: EventSink | None = None,
    ) -> None:
        self._raft = Raft(config, storage, rng, on_event)
        self._prev_soft_state = self._raft.soft_state()
        self._prev_hard_state = self._raft.hard_state()
        self._outstanding: Ready | None = None
        self._steps_on_advance: list[Message] = []

    # -- identity and state ---------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return self._raft.id

    @property
    def group_id(self) -> int:
        return self._raft.group_id

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def lead(self) -> int:
        """The leader this replica knows of in its term, or ``NO_NODE``."""
        return self._raft.lead

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def raft(self) -> Raft:
        """The underlying state machine, for tests and diagnostics only (read it, do not
        mutate it)."""
        return self._raft

    def conf_state(self) -> ConfState:
        """Membership as of the last applied entry (use it with `create_snapshot`)."""
        return self._raft.trk.conf_state()

    def status(self) -> Status:
        r = self._raft
        progress: dict[int, ProgressStatus] = {}
        if r.role is Role.LEADER:
            for node_id, pr in r.trk.progress.items():
                progress[node_id] = ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state,
                    is_learner=pr.is_learner,
                    recent_active=pr.recent_active,
                    paused=pr.is_paused(),
                    pending_snapshot=pr.pending_snapshot,
                    inflight_messages=pr.inflights.count(),
                    description=pr.describe(),
                )
        return Status(
            node_id=r.id,
            group_id=r.group_id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            first_index=r.log.first_index(),
            last_index=r.log.last_index(),
            lead=r.lead,
            role=r.role,
            lead_transferee=r.lead_transferee,
            conf_state=r.trk.conf_state(),
            progress=progress,
        )

    def check_invariants(self) -> None:
        """Raise `RaftInvariantError` if the replica's state is inconsistent."""
        self._raft.check_invariants()

    # -- inputs -----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, check-quorum)."""
        self._raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured). No-op for a leader, a
        learner or a node outside the configuration."""
        self._raft.hup()

    def step(self, message: Message) -> None:
        """Feed a message received from a peer.

        Raises `WrongGroupError` if it belongs to another group or node (a routing bug),
        `RaftUsageError` if it is malformed (a term-less message other than a forwarded
        ``READ_INDEX``)."""
        r = self._raft
        if message.group_id != r.group_id:
            raise WrongGroupError(
                f"message for group {message.group_id} stepped into group {r.group_id}: "
                f"{message.type.label} {message.from_}->{message.to}"
            )
        if message.to != r.id:
            raise WrongGroupError(
                f"message for node {message.to} stepped into node {r.id} "
                f"(group {r.group_id}): {message.type.label}"
            )
        if message.term == 0 and message.type is not MessageType.READ_INDEX:
            raise RaftUsageError(f"{message.type.label} from {message.from_} has no term")
        r.step(message)

    def propose(self, data: bytes) -> Proposed:
        """Propose one command. Leader only: raises `NotLeaderError` elsewhere and
        `ProposalDroppedError` while a transfer is running or the uncommitted budget is
        exhausted. Returns where the entry landed."""
        return self._raft.propose((data,))

    def propose_many(self, batch: Sequence[bytes]) -> Proposed:
        """Propose several commands as consecutive entries (one append, one broadcast)."""
        return self._raft.propose(batch)

    def propose_conf_change(self, change: ConfChange) -> Proposed:
        """Propose a single-server membership change. Leader only; refused (with
        `ProposalDroppedError`) while another conf change is unapplied, or if the change
        is a no-op, would leave no voter, or would demote the leader. It takes effect on
        every replica when its entry is applied (in `advance`)."""
        return self._raft.propose_conf_change(change)

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read point. ``context`` must be unique among pending
        requests of this group (e.g. node id + counter); one request can cover a whole
        batch of client reads. The answer arrives as a `ReadState` in a later `Ready`. A
        request may also be lost without an answer: pending requests are dropped when
        this node stops being leader (a `SoftState` change), and forwarded ones when
        messages are lost, so the caller fails or retries its waiting reads on a
        leadership change and after a timeout. Raises `NotLeaderError` if no leader is
        known."""
        self._raft.read_index(context)

    def transfer_leader(self, transferee: int) -> None:
        """Leader only: hand leadership to voter ``transferee`` (MsgTimeoutNow once its
        log is caught up). Abandoned after an election timeout."""
        self._raft.transfer_leader(transferee)

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to deliver a message to ``node_id``."""
        self._raft.report_unreachable(node_id)

    def report_snapshot(self, node_id: int, *, success: bool) -> None:
        """The transport finished (or failed) sending a snapshot to ``node_id``."""
        self._raft.report_snapshot(node_id, success=success)

    # -- outputs ----------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether `ready` would return any work. False while a Ready is outstanding
        (call `advance` first)."""
        if self._outstanding is not None:
            return False
        r = self._raft
        log = r.log
        if r.msgs or r.msgs_after_append or r.read_states:
            return True
        if log.has_next_unstable_entries() or log.next_unstable_snapshot() is not None:
            return True
        if log.has_next_committed_entries():
            return True
        prev = self._prev_hard_state
        if r.term != prev.term or r.vote != prev.vote or log.committed != prev.commit:
            return True
        prev_soft = self._prev_soft_state
        return r.lead != prev_soft.lead or r.role is not prev_soft.role

    def ready(self) -> Ready:
        """Collect the work accumulated since the last `Ready`.

        The caller's contract, in order:

        1. Persist, durably (synced when ``must_sync``): ``snapshot`` if any, then
           ``entries`` (replacing any existing log suffix from their first index), then
           ``hard_state`` if any. Nothing may be persisted out of this order.
        2. Only after step 1 is durable, send ``messages_after_persist`` (vote grants and
           append acknowledgements promise durable state).
        3. Send ``messages``; these may also be sent before or during step 1.
        4. Install ``snapshot`` into the state machine if any, then apply
           ``committed_entries`` in order (conf change entries included; the core applies
           their membership effect itself in step 5). Serve each ``read_states`` request
           once the applied index reaches its ``index``.
        5. Call `advance` with this Ready.

        Between `ready` and `advance` the caller may keep calling `step`, `tick` and
        `propose` (e.g. while the persist runs off the event loop), but may not call
        `ready` again. Entries a leader appends count toward commit only after the
        `advance` of the Ready that carried them, so nothing is reported committed before
        a quorum including the leader has it durable.
        """
        if self._outstanding is not None:
            raise RaftUsageError("ready() called again before advance() of the previous Ready")
        r = self._raft
        log = r.log
        entries = log.next_unstable_entries()
        snapshot = log.next_unstable_snapshot()
        committed = log.next_committed_entries()

        hard_state: HardState | None = None
        prev = self._prev_hard_state
        must_sync = bool(entries) or snapshot is not None
        if r.term != prev.term or r.vote != prev.vote or log.committed != prev.commit:
            hard_state = HardState(r.term, r.vote, log.committed)
            if hard_state.term != prev.term or hard_state.vote != prev.vote:
                must_sync = True
        soft_state: SoftState | None = None
        prev_soft = self._prev_soft_state
        if r.lead != prev_soft.lead or r.role is not prev_soft.role:
            soft_state = SoftState(r.lead, r.role)

        messages = tuple(r.msgs)
        after_persist: list[Message] = []
        steps_on_advance: list[Message] = []
        own_id = r.id
        for m in r.msgs_after_append:
            (steps_on_advance if m.to == own_id else after_persist).append(m)
        r.msgs = []
        r.msgs_after_append = []
        read_states = tuple(r.read_states)
        r.read_states = []

        rd = Ready(
            hard_state=hard_state,
            soft_state=soft_state,
            entries=tuple(entries),
            snapshot=snapshot,
            committed_entries=tuple(committed),
            messages=messages,
            messages_after_persist=tuple(after_persist),
            read_states=read_states,
            must_sync=must_sync,
        )
        # Accept: what was handed out is now "in progress".
        log.accept_unstable()
        if committed:
            log.accept_applying(committed[-1].index)
        if hard_state is not None:
            self._prev_hard_state = hard_state
        if soft_state is not None:
            self._prev_soft_state = soft_state
        self._steps_on_advance = steps_on_advance
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Report that ``rd`` was handled per the contract in `ready` (persisted, sent,
        applied). Raises `RaftUsageError` if ``rd`` is not the outstanding Ready."""
        if rd is not self._outstanding:
            raise RaftUsageError("advance() with a Ready that is not the outstanding one")
        r = self._raft
        if rd.snapshot is not None:
            r.applied_snapshot(rd.snapshot)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            r.applied_entries(rd.committed_entries)
        self._outstanding = None
        steps, self._steps_on_advance = self._steps_on_advance, []
        # Our own vote and our own append acknowledgement, now that they are durable.
        for m in steps:
            r.step(m)
