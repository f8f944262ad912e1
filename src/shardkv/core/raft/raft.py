"""The Raft state machine of one replica of one group (etcd-io/raft's ``raft.go`` design).

Owns: term, vote, role, the log cursors (through `RaftLog`), the leader's view of peers
(`ProgressTracker`), ReadIndex bookkeeping and the outgoing message queues. It never does
I/O, never reads a clock and draws randomness only from the ``random.Random`` it was given.
`RawNode` (rawnode.py) is the public face; this module is internal.

Structure: ``become_follower / become_pre_candidate / become_candidate / become_leader``
swap ``_step_fn`` and ``_tick_fn``; `Raft.step` first does the term handling common to all
roles, then handles votes, then dispatches to the role's step function. Illegal role
transitions raise `InvalidTransitionError`.

Membership changes are single-server changes (one voter added, removed, promoted or
demoted per change), taking effect when the entry is *applied* (in `RawNode.advance`), as
etcd's ConfChange v1 does. Chosen over joint consensus because every move the placement
scheduler makes is naturally a sequence of single steps (add learner, promote, remove),
and it keeps the configuration a plain (voters, learners) pair. Two rules make apply-time
single-server changes safe (etcd issue 7625): a leader refuses a new conf change while one
is appended but unapplied (``pending_conf_index > applied``; a new leader conservatively
sets ``pending_conf_index`` to its last index), and a node does not campaign while a
committed conf change is still unapplied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardkv.core.raft.errors import (
    CompactedError,
    InvalidTransitionError,
    NotLeaderError,
    ProposalDroppedError,
    RaftInvariantError,
    RaftUsageError,
    SnapshotTemporarilyUnavailableError,
)
from shardkv.core.raft.log import RaftLog
from shardkv.core.raft.progress import Progress, ProgressState, ProgressTracker
from shardkv.core.raft.quorum import VoteResult, vote_result
from shardkv.core.raft.read_only import ReadOnly
from shardkv.core.raft.storage import Storage, total_size_bytes
from shardkv.core.raft.types import (
    AFTER_PERSIST_MESSAGE_TYPES,
    CAMPAIGN_TRANSFER,
    EMPTY_HARD_STATE,
    NO_LIMIT,
    NO_NODE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
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

EventSink = Callable[[str], None]
"""Receives one human-readable line per notable event (role change, rejected vote,
snapshot sent, ...). Must not call back into the node."""

_APP = MessageType.APP
_APP_RESP = MessageType.APP_RESP
_VOTE = MessageType.VOTE
_VOTE_RESP = MessageType.VOTE_RESP
_PRE_VOTE = MessageType.PRE_VOTE
_PRE_VOTE_RESP = MessageType.PRE_VOTE_RESP
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
_SNAP = MessageType.SNAP
_TIMEOUT_NOW = MessageType.TIMEOUT_NOW
_READ_INDEX = MessageType.READ_INDEX
_READ_INDEX_RESP = MessageType.READ_INDEX_RESP

_FOLLOWER = Role.FOLLOWER
_PRE_CANDIDATE = Role.PRE_CANDIDATE
_CANDIDATE = Role.CANDIDATE
_LEADER = Role.LEADER

_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT

_NORMAL = EntryType.NORMAL

_CAMPAIGN_PRE_ELECTION = "pre-election"
_CAMPAIGN_ELECTION = "election"
_CAMPAIGN_TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one replica. Times are in ticks; the caller decides what a tick is.

    - ``election_timeout_ticks``: a follower that hears nothing from a leader for a random
      ``[election_timeout_ticks, 2 * election_timeout_ticks)`` ticks campaigns; a leader
      with check-quorum steps down after that many ticks without a quorum of responses.
    - ``heartbeat_interval_ticks``: leader heartbeat period; must be below the election
      timeout (etcd recommends a tenth of it).
    - ``applied_index``: last index the state machine had applied before a restart (0 for
      a new replica). Entries after it will be handed out again.
    - ``max_bytes_per_message``: entries per append message are cut at this many bytes.
    - ``max_inflight_messages`` / ``max_inflight_bytes``: per-follower window of
      unacknowledged append messages in replicate state.
    - ``max_uncommitted_bytes``: a leader refuses proposals while this much payload is
      appended but not yet applied.
    - ``max_committed_bytes_per_ready``: bound on ``Ready.committed_entries``.
    - ``max_pending_read_requests``: bound on ReadIndex requests waiting on the leader.
    - ``snapshot_timeout_ticks``: a snapshot sent to a follower that is neither
      acknowledged nor reported (`RawNode.report_snapshot`) within this many ticks is
      presumed lost and sent again. A backstop against silent loss; the transport should
      report failures as they happen.
    - ``pre_vote``: run a pre-election so a partitioned node does not disrupt the group.
    - ``check_quorum``: leaders step down without a live quorum; followers ignore vote
      requests while they hear from a leader (leader lease for elections).
    - ``eager_commit``: a leader whose commit index advanced tells its followers at once,
      with an append that carries no entries (etcd's behaviour). False: the new commit
      index rides on the next append or heartbeat instead, which halves the messages of a
      loaded group (every write's commit otherwise costs one more message and one more
      answer per follower); followers then apply up to one heartbeat interval later.
      Commit on the leader, and so every client answer, is unaffected.
    """

    node_id: int
    group_id: int
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    applied_index: int = 0
    max_bytes_per_message: int = 1 << 20
    max_inflight_messages: int = 256
    max_inflight_bytes: int = NO_LIMIT
    max_uncommitted_bytes: int = 64 << 20
    max_committed_bytes_per_ready: int = 64 << 20
    max_pending_read_requests: int = 4096
    snapshot_timeout_ticks: int = 100
    pre_vote: bool = True
    check_quorum: bool = True
    eager_commit: bool = True

    def validate(self) -> None:
        """Raise `RaftUsageError` on settings the core cannot run with."""
        if self.node_id <= NO_NODE:
            raise RaftUsageError("node_id must be a positive integer")
        if self.group_id < 0:
            raise RaftUsageError("group_id must be >= 0")
        if self.heartbeat_interval_ticks <= 0:
            raise RaftUsageError("heartbeat_interval_ticks must be > 0")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            raise RaftUsageError("election_timeout_ticks must be > heartbeat_interval_ticks")
        if self.applied_index < 0:
            raise RaftUsageError("applied_index must be >= 0")
        for name in (
            "max_bytes_per_message",
            "max_inflight_messages",
            "max_inflight_bytes",
            "max_uncommitted_bytes",
            "max_committed_bytes_per_ready",
            "max_pending_read_requests",
            "snapshot_timeout_ticks",
        ):
            if getattr(self, name) <= 0:
                raise RaftUsageError(f"{name} must be > 0")


class Raft:
    """One replica's Raft state. See the module docstring; use through `RawNode`."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        rng: Random,
        on_event: EventSink | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.id = config.node_id
        self.group_id = config.group_id
        self.rng = rng
        self._on_event = on_event
        self.log = RaftLog(storage, config.max_committed_bytes_per_ready)
        self.trk = ProgressTracker(config.max_inflight_messages, config.max_inflight_bytes)
        # Log index the current configuration comes from (a snapshot or a conf change
        # entry); conf changes at or below it are already reflected and never reapplied.
        self.conf_index = self.log.first_index() - 1

        self.term = 0
        self.vote = NO_NODE
        self.lead = NO_NODE
        self.role = _FOLLOWER
        self.is_learner = False

        self.election_timeout = config.election_timeout_ticks
        self.heartbeat_timeout = config.heartbeat_interval_ticks
        # Drawn from [election_timeout, 2 * election_timeout) on every reset.
        self.randomized_election_timeout = config.election_timeout_ticks
        # Ticks since the last election timeout or since hearing from a valid leader
        # (followers), or since the last check-quorum round (leader).
        self.election_elapsed = 0
        # Leader only: ticks since the last heartbeat broadcast.
        self.heartbeat_elapsed = 0
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self.max_msg_bytes = config.max_bytes_per_message
        self.eager_commit = config.eager_commit
        self.track_inflight_bytes = config.max_inflight_bytes < NO_LIMIT

        # Leader only: payload bytes appended and not yet applied (bounded by config).
        self.uncommitted_bytes = 0
        # Leader only: the peer leadership is being handed to, or NO_NODE.
        self.lead_transferee = NO_NODE
        # Leader only: index of the latest conf change that may still be unapplied.
        self.pending_conf_index = 0
        self.read_only = ReadOnly(config.max_pending_read_requests)
        # Leader only: reads that wait for the first commit of this term
        # (bounded by max_pending_read_requests).
        self.pending_read_index_messages: list[Message] = []
        self.read_states: list[ReadState] = []
        # Outgoing messages that may leave at once / only after the next persist.
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []

        self._step_fn: Callable[[Message], None] = self._step_follower
        self._tick_fn: Callable[[], None] = self._tick_election

        hard_state, conf_state = storage.initial_state()
        self.trk.set_config(conf_state, self.log.last_index())
        self._refresh_is_learner()
        if hard_state != EMPTY_HARD_STATE:
            self._load_state(hard_state)
        if config.applied_index > 0:
            self._restore_applied(config.applied_index)
        self.become_follower(self.term, NO_NODE)
        self._event(
            f"{self.id} started [voters={list(conf_state.voters)} "
            f"learners={list(conf_state.learners)} term={self.term} "
            f"commit={self.log.committed} applied={self.log.applied} "
            f"last={self.log.last_index()}]"
        )

    # -- small helpers ----------------------------------------------------------------

    def _event(self, text: str) -> None:
        if self._on_event is not None:
            self._on_event(text)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _load_state(self, hard_state: HardState) -> None:
        log = self.log
        if not (log.committed <= hard_state.commit <= log.last_index()):
            raise RaftInvariantError(
                f"persisted commit {hard_state.commit} is out of range "
                f"[{log.committed}, {log.last_index()}]"
            )
        log.committed = hard_state.commit
        self.term = hard_state.term
        self.vote = hard_state.vote

    def _restore_applied(self, applied: int) -> None:
        """Restart with the state machine at ``applied``: replay the conf changes between
        the snapshot and it (storage's ConfState is as of the snapshot)."""
        log = self.log
        if applied > log.committed:
            raise RaftUsageError(f"applied_index {applied} is above commit {log.committed}")
        first = log.first_index()
        if applied < first - 1:
            raise RaftUsageError(f"applied_index {applied} is below the snapshot at {first - 1}")
        for entry in self._scan(first, applied + 1):
            if entry.type is EntryType.CONF_CHANGE:
                self._apply_conf_change_to_tracker(ConfChange.decode(entry.data))
                self.conf_index = entry.index
        self._refresh_is_learner()
        log.applied_to(applied)

    def _scan(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi) read page by page (bounded by max_committed_bytes_per_ready)."""
        out: list[Entry] = []
        while lo < hi:
            page = self.log.slice(lo, hi, self.log.max_applying_bytes)
            out.extend(page)
            lo += len(page)
        return out

    def _refresh_is_learner(self) -> None:
        pr = self.trk.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner

    def _promotable(self) -> bool:
        """Whether this node may campaign: a voter, not waiting on a snapshot."""
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None and not pr.is_learner and not self.log.has_next_or_in_progress_snapshot()
        )

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.applied >= log.committed:
            return False
        return any(
            entry.type is EntryType.CONF_CHANGE
            for entry in self._scan(log.applied + 1, log.committed + 1)
        )

    def _send(self, message: Message) -> None:
        if message.type in AFTER_PERSIST_MESSAGE_TYPES:
            self.msgs_after_append.append(message)
        else:
            self.msgs.append(message)

    def _reply(
        self,
        request: Message,
        kind: MessageType,
        *,
        term: int | None = None,
        index: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        log_term: int = 0,
    ) -> None:
        """Queue a ``kind`` response to ``request``, at our term unless ``term`` is given."""
        self._send(
            Message(
                kind,
                self.group_id,
                request.from_,
                self.id,
                term=self.term if term is None else term,
                index=index,
                reject=reject,
                reject_hint=reject_hint,
                log_term=log_term,
            )
        )

    # -- role transitions ---------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NO_NODE
        self.lead = NO_NODE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self._abort_leader_transfer()
        self.trk.reset_votes()
        last_index = self.log.last_index()
        trk = self.trk
        for node_id, pr in trk.progress.items():
            fresh = trk.new_progress(last_index + 1, is_learner=pr.is_learner)
            fresh.recent_active = False
            if node_id == self.id:
                fresh.match = last_index
            trk.progress[node_id] = fresh
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.read_only = ReadOnly(self.config.max_pending_read_requests)
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: int) -> None:
        self._step_fn = self._step_follower
        self._reset(term)
        self._tick_fn = self._tick_election
        self.lead = lead
        self.role = _FOLLOWER
        self._event(f"{self.id} became follower at term {self.term}")

    def become_candidate(self) -> None:
        if self.role is _LEADER:
            raise InvalidTransitionError(f"{self.id}: leader -> candidate")
        self._step_fn = self._step_candidate
        self._reset(self.term + 1)
        self._tick_fn = self._tick_election
        self.vote = self.id
        self.role = _CANDIDATE
        self._event(f"{self.id} became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.role is _LEADER:
            raise InvalidTransitionError(f"{self.id}: leader -> pre-candidate")
        # A pre-candidate keeps its term and vote: nothing durable changes.
        self._step_fn = self._step_candidate
        self.trk.reset_votes()
        self._tick_fn = self._tick_election
        self.lead = NO_NODE
        self.role = _PRE_CANDIDATE
        self._event(f"{self.id} became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.role is _FOLLOWER:
            raise InvalidTransitionError(f"{self.id}: follower -> leader")
        self._step_fn = self._step_leader
        self._reset(self.term)
        self._tick_fn = self._tick_heartbeat
        self.lead = self.id
        self.role = _LEADER
        own = self.trk.progress[self.id]
        own.become_replicate()
        own.recent_active = True
        # Any entry in our log may be an unapplied conf change; scanning is expensive, so
        # refuse new conf changes until everything we hold now is applied.
        self.pending_conf_index = self.log.last_index()
        self._event(f"{self.id} became leader at term {self.term}")
        # The empty entry lets the leader commit (and learn the commit index of) all
        # earlier entries (Raft section 5.4.2); it costs nothing against the
        # uncommitted budget.
        self._append_entries([Entry(self.term, self.log.last_index() + 1)], 0)

    # -- ticks ----------------------------------------------------------------------

    def tick(self) -> None:
        self._tick_fn()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self._promotable():
            self.election_elapsed = 0
            self.hup()

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self._check_quorum()
            if self.role is _LEADER:
                self._expire_snapshots()
            # A transfer that did not finish within an election timeout is abandoned.
            if self.role is _LEADER and self.lead_transferee != NO_NODE:
                self._event(f"{self.id} aborted transfer to {self.lead_transferee} (timeout)")
                self._abort_leader_transfer()
        if self.role is not _LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_pending_request_ctx())

    def _check_quorum(self) -> None:
        if not self.trk.quorum_active():
            self._event(f"{self.id} stepped down to follower since quorum is not active")
            self.become_follower(self.term, NO_NODE)
            return
        for node_id, pr in self.trk.progress.items():
            if node_id != self.id:
                pr.recent_active = False

    def _expire_snapshots(self) -> None:
        """Called once per election timeout: give up on snapshots pending too long."""
        for node_id, pr in self.trk.progress.items():
            if pr.state is not _SNAPSHOT:
                continue
            pr.snapshot_wait_ticks += self.election_timeout
            if pr.snapshot_wait_ticks >= self.config.snapshot_timeout_ticks:
                self._event(f"{self.id} presumes the snapshot to {node_id} lost; will resend")
                pr.pending_snapshot = 0
                pr.become_probe()

    # -- elections ------------------------------------------------------------------

    def hup(self, *, transfer: bool = False) -> None:
        """Start an election (pre-vote first if configured) unless not allowed to."""
        if self.role is _LEADER:
            return
        if not self._promotable():
            self._event(f"{self.id} is not promotable and cannot campaign")
            return
        if self._has_unapplied_conf_changes():
            self._event(
                f"{self.id} cannot campaign at term {self.term}: "
                "a committed conf change is not applied yet"
            )
            return
        self._event(f"{self.id} is starting a new election at term {self.term}")
        if transfer:
            self._campaign(_CAMPAIGN_TRANSFER)
        elif self.pre_vote:
            self._campaign(_CAMPAIGN_PRE_ELECTION)
        else:
            self._campaign(_CAMPAIGN_ELECTION)

    def _campaign(self, kind: str) -> None:
        if kind == _CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            request, response = _PRE_VOTE, _PRE_VOTE_RESP
            # Pre-votes are asked for the term we would campaign in.
            term = self.term + 1
        else:
            self.become_candidate()
            request, response = _VOTE, _VOTE_RESP
            term = self.term
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        context = CAMPAIGN_TRANSFER if kind == _CAMPAIGN_TRANSFER else b""
        for voter in sorted(self.trk.voters):
            if voter == self.id:
                # Our own vote counts only once it is durable: it comes back to us through
                # the after-persist queue when the caller advances the Ready.
                self.msgs_after_append.append(
                    Message(response, self.group_id, self.id, self.id, term=term)
                )
                continue
            self._event(
                f"{self.id} [logterm: {last_term}, index: {last_index}] sent "
                f"{request.label} request to {voter} at term {term}"
            )
            self.msgs.append(
                Message(
                    request,
                    self.group_id,
                    voter,
                    self.id,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=context,
                )
            )

    def _poll(self, node_id: int, kind: MessageType, granted: bool) -> tuple[int, int, VoteResult]:
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()

    def _handle_vote_request(self, m: Message) -> None:
        response = _VOTE_RESP if m.type is _VOTE else _PRE_VOTE_RESP
        can_vote = (
            # A repeat of a vote we already cast...
            self.vote == m.from_
            # ...or we have not voted and know no leader in this term...
            or (self.vote == NO_NODE and self.lead == NO_NODE)
            # ...or a pre-vote for a future term.
            or (m.type is _PRE_VOTE and m.term > self.term)
        )
        # Learners vote too: a promoted learner may not know of its promotion yet.
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._event(
                f"{self.id} cast {m.type.label} for {m.from_} [logterm: {m.log_term}, "
                f"index: {m.index}] at term {self.term}"
            )
            # Answer with the request's term: for pre-votes ours may be older, and the
            # candidate ignores responses from older terms.
            self._reply(m, response, term=m.term)
            if m.type is _VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._event(
                f"{self.id} rejected {m.type.label} from {m.from_} [logterm: {m.log_term}, "
                f"index: {m.index}] at term {self.term}"
            )
            self._reply(m, response, reject=True)

    # -- the common step ------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle one message from a peer (or one of our own after-persist messages)."""
        kind = m.type
        if m.term == 0:
            pass  # forwarded READ_INDEX: no term of its own
        elif m.term > self.term:
            if kind is _VOTE or kind is _PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NO_NODE
                    and self.election_elapsed < self.election_timeout
                )
                if in_lease and not force:
                    # We heard from a leader within the minimum election timeout: do not
                    # let a disruptive (possibly removed or partitioned) node depose it.
                    self._event(
                        f"{self.id} ignored {kind.label} from {m.from_} at term {m.term}: "
                        f"lease not expired (remaining ticks: "
                        f"{self.election_timeout - self.election_elapsed})"
                    )
                    return
            if kind is _PRE_VOTE:
                pass  # never change term for a pre-vote
            elif kind is _PRE_VOTE_RESP and not m.reject:
                pass  # our future term; we bump it only on winning the pre-vote
            else:
                self._event(
                    f"{self.id} [term: {self.term}] received a {kind.label} message with "
                    f"higher term from {m.from_} [term: {m.term}]"
                )
                if kind is _APP or kind is _HEARTBEAT or kind is _SNAP:
                    self.become_follower(m.term, m.from_)
                else:
                    self.become_follower(m.term, NO_NODE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and (kind is _HEARTBEAT or kind is _APP):
                # A leader of an old term (e.g. our term grew while we were partitioned):
                # tell it our term so it steps down, rather than staying stuck.
                self._reply(m, _APP_RESP)
            elif kind is _PRE_VOTE:
                self._reply(m, _PRE_VOTE_RESP, reject=True)
            return

        if kind is _VOTE or kind is _PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self._step_fn(m)

    # -- leader ---------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        kind = m.type
        if kind is _READ_INDEX:
            self._leader_read_index(m)
            return
        pr = self.trk.progress.get(m.from_)
        if pr is None:
            return  # a removed or unknown peer
        if kind is _APP_RESP:
            self._handle_append_response(m, pr)
        elif kind is _HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            # reject_hint/log_term: the follower's guess of the last (index, term) where
            # our logs may match. Skip every index where our term is above log_term:
            # a match there is impossible, so we probe at most once per term.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is _REPLICATE:
                    pr.become_probe()
                self._event(f"{self.id} decreased progress of {m.from_} to [{pr.describe()}]")
                self._maybe_send_append(m.from_, send_if_empty=True)
            return

        if not (pr.maybe_update(m.index) or (pr.match == m.index and pr.state is _PROBE)):
            return
        state = pr.state
        if state is _PROBE:
            pr.become_replicate()
        elif state is _SNAPSHOT:
            if pr.match + 1 >= self.log.first_index():
                # The follower is back on our log (whatever snapshot it installed).
                self._event(f"{self.id} recovered from needing snapshot for {m.from_}")
                pr.become_probe()
                pr.become_replicate()
            elif pr.match >= pr.pending_snapshot:
                # It installed our snapshot but we compacted past it since: probe, which
                # sends a newer snapshot, instead of waiting for a report.
                pr.become_probe()
        elif state is _REPLICATE:
            pr.inflights.free_le(m.index)

        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif self.eager_commit and m.from_ != self.id and pr.can_bump_commit(self.log.committed):
            self._maybe_send_append(m.from_, send_if_empty=True)
        if m.from_ != self.id:
            # The ack may have opened the window: send as much as it allows now.
            while self._maybe_send_append(m.from_, send_if_empty=False):
                pass
            if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
                self._event(f"{self.id} sent MsgTimeoutNow to {m.from_} after MsgAppResp")
                self._send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        # Also the recovery path when every message filling the window was lost.
        if pr.match < self.log.last_index() or pr.state is _PROBE:
            self._maybe_send_append(m.from_, send_if_empty=True)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None:
            return
        if vote_result(self.trk.voters, dict.fromkeys(acks, True)) is not VoteResult.WON:
            return
        for status in self.read_only.advance(m.context):
            self._respond_read_index(status.request, status.index)

    def _maybe_commit(self) -> bool:
        return self.log.maybe_commit(self.trk.committed(), self.term)

    def _append_entries(self, entries: list[Entry], payload_bytes: int) -> None:
        """Leader: append ``entries`` (already numbered) and queue the self-ack that counts
        them toward commit once durable."""
        if payload_bytes:
            self.uncommitted_bytes += payload_bytes
        last_index = self.log.append(entries)
        self.msgs_after_append.append(
            Message(_APP_RESP, self.group_id, self.id, self.id, term=self.term, index=last_index)
        )

    def _check_can_propose(self) -> None:
        if self.role is not _LEADER:
            raise NotLeaderError(f"{self.id} is not the leader (leader: {self.lead})", self.lead)
        if self.id not in self.trk.progress:
            raise ProposalDroppedError(f"{self.id} was removed from the group")
        if self.lead_transferee != NO_NODE:
            raise ProposalDroppedError(
                f"leadership transfer to {self.lead_transferee} is in progress"
            )

    def propose(self, payloads: Sequence[bytes]) -> Proposed:
        """Leader: append one NORMAL entry per payload and start replicating them."""
        self._check_can_propose()
        if not payloads:
            raise RaftUsageError("propose needs at least one payload")
        payload_bytes = 0
        for data in payloads:
            payload_bytes += len(data)
        if (
            self.uncommitted_bytes > 0
            and payload_bytes > 0
            and self.uncommitted_bytes + payload_bytes > self.config.max_uncommitted_bytes
        ):
            raise ProposalDroppedError(
                f"uncommitted log would exceed max_uncommitted_bytes "
                f"({self.uncommitted_bytes} + {payload_bytes} > "
                f"{self.config.max_uncommitted_bytes})"
            )
        term = self.term
        first = self.log.last_index() + 1
        entries = [Entry(term, first + i, _NORMAL, data) for i, data in enumerate(payloads)]
        self._append_entries(entries, payload_bytes)
        self._bcast_append()
        return Proposed(term, first, first + len(entries) - 1)

    def propose_conf_change(self, change: ConfChange) -> Proposed:
        """Leader: append a CONF_CHANGE entry after validating it against the current
        configuration. Raises `ProposalDroppedError` with the reason if refused."""
        self._check_can_propose()
        if self.pending_conf_index > self.log.applied:
            raise ProposalDroppedError(
                f"a conf change at index {self.pending_conf_index} may be unapplied "
                f"(applied {self.log.applied})"
            )
        reason = self._conf_change_refusal(change)
        if reason:
            raise ProposalDroppedError(f"conf change {_describe_change(change)} refused: {reason}")
        term = self.term
        index = self.log.last_index() + 1
        data = change.encode()
        self._append_entries([Entry(term, index, EntryType.CONF_CHANGE, data)], len(data))
        self.pending_conf_index = index
        self._event(f"{self.id} proposed conf change {_describe_change(change)} at {index}")
        self._bcast_append()
        return Proposed(term, index, index)

    def _conf_change_refusal(self, change: ConfChange) -> str:
        node_id = change.node_id
        voters, learners = self.trk.voters, self.trk.learners
        if node_id <= NO_NODE:
            return "node id must be positive"
        if change.type is ConfChangeType.ADD_NODE:
            if node_id in voters:
                return "already a voter"
        elif change.type is ConfChangeType.ADD_LEARNER_NODE:
            if node_id in learners:
                return "already a learner"
            if node_id == self.id:
                return "the leader cannot demote itself; transfer leadership first"
            if node_id in voters and len(voters) == 1:
                return "would leave no voters"
        elif change.type is ConfChangeType.REMOVE_NODE:
            if node_id not in voters and node_id not in learners:
                return "not a member"
            if node_id in voters and len(voters) == 1:
                return "would leave no voters"
        return ""

    def _bcast_append(self) -> None:
        for node_id in self.trk.progress:
            if node_id != self.id:
                self._maybe_send_append(node_id, send_if_empty=False)

    def _maybe_send_append(self, to: int, *, send_if_empty: bool) -> bool:
        """Send ``to`` the entries its progress allows (or an empty append if
        ``send_if_empty`` or the commit index it knows can be bumped). Falls back to a
        snapshot when the entries are compacted. Returns whether a message was queued."""
        pr = self.trk.progress[to]
        state = pr.state
        if state is _SNAPSHOT or (state is _PROBE and pr.probe_sent):
            return False
        log = self.log
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
        except CompactedError:
            return self._maybe_send_snapshot(to, pr)
        entries: list[Entry] = []
        if pr.next <= log.last_index() and (state is _PROBE or not pr.inflights.full()):
            try:
                entries = log.entries_from(pr.next, self.max_msg_bytes)
            except CompactedError:
                return self._maybe_send_snapshot(to, pr)
        commit = log.committed
        if (
            not entries
            and not send_if_empty
            and not (self.eager_commit and pr.can_bump_commit(commit))
        ):
            return False
        self.msgs.append(
            Message(
                _APP,
                self.group_id,
                to,
                self.id,
                term=self.term,
                log_term=prev_term,
                index=prev_index,
                entries=tuple(entries),
                commit=commit,
            )
        )
        size = total_size_bytes(entries) if self.track_inflight_bytes and entries else 0
        pr.sent_entries(len(entries), size)
        pr.sent_commit_index(commit)
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            self._event(f"{self.id} not sending snapshot to {to}: not recently active")
            return False
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            self._event(f"{self.id} snapshot temporarily unavailable for {to}")
            return False
        if snapshot.is_empty:
            raise RaftInvariantError("need a non-empty snapshot to catch up a follower")
        index = snapshot.metadata.index
        self._event(
            f"{self.id} [first index: {self.log.first_index()}, commit: {self.log.committed}] "
            f"sent snapshot [index: {index}, term: {snapshot.metadata.term}] to {to} "
            f"[{pr.describe()}]"
        )
        pr.become_snapshot(index)
        self.msgs.append(
            Message(_SNAP, self.group_id, to, self.id, term=self.term, snapshot=snapshot)
        )
        return True

    def _bcast_heartbeat(self, context: bytes) -> None:
        committed = self.log.committed
        for node_id, pr in self.trk.progress.items():
            if node_id == self.id:
                continue
            # Never tell a follower to commit beyond what it is known to match: its log
            # may diverge above that.
            commit = min(pr.match, committed)
            self.msgs.append(
                Message(
                    _HEARTBEAT,
                    self.group_id,
                    node_id,
                    self.id,
                    term=self.term,
                    commit=commit,
                    context=context,
                )
            )
            pr.sent_commit_index(commit)

    def _send_timeout_now(self, to: int) -> None:
        self.msgs.append(Message(_TIMEOUT_NOW, self.group_id, to, self.id, term=self.term))

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NO_NODE

    def transfer_leader(self, transferee: int) -> None:
        """Leader: hand leadership to voter ``transferee`` once its log is caught up.
        Proposals are refused until the transfer completes or times out (one election
        timeout)."""
        if self.role is not _LEADER:
            raise NotLeaderError(f"{self.id} is not the leader (leader: {self.lead})", self.lead)
        pr = self.trk.progress.get(transferee)
        if pr is None or pr.is_learner:
            raise ProposalDroppedError(f"cannot transfer leadership to {transferee}: not a voter")
        if self.lead_transferee != NO_NODE:
            if self.lead_transferee == transferee:
                return
            self._event(f"{self.id} aborted transfer to {self.lead_transferee}")
            self._abort_leader_transfer()
        if transferee == self.id:
            return
        self._event(f"{self.id} [term {self.term}] starts to transfer leadership to {transferee}")
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self._event(f"{self.id} sends MsgTimeoutNow to {transferee} (log up to date)")
            self._send_timeout_now(transferee)
        else:
            self._maybe_send_append(transferee, send_if_empty=True)

    def report_unreachable(self, node_id: int) -> None:
        """Leader: the transport could not deliver to ``node_id``; stop streaming to it
        optimistically (an append was probably lost)."""
        if self.role is not _LEADER:
            return
        pr = self.trk.progress.get(node_id)
        if pr is not None and pr.state is _REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node_id: int, *, success: bool) -> None:
        """Leader: the snapshot sent to ``node_id`` was delivered (or failed)."""
        if self.role is not _LEADER:
            return
        pr = self.trk.progress.get(node_id)
        if pr is None or pr.state is not _SNAPSHOT:
            return
        if not success:
            # Forget the snapshot first, or we would probe as if it had been installed.
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the follower's append response (or a heartbeat) before the next append.
        pr.probe_sent = True

    # -- ReadIndex ------------------------------------------------------------------

    def read_index(self, context: bytes) -> None:
        """Local read request: served here if leader, else forwarded to the leader.

        Raises `NotLeaderError` if no leader is known, `ProposalDroppedError` if too many
        reads are pending or ``context`` is already pending."""
        if not context:
            raise RaftUsageError("read_index needs a non-empty context")
        request = Message(_READ_INDEX, self.group_id, self.id, self.id, context=context)
        if self.role is _LEADER:
            self._leader_read_index(request, local=True)
        elif self.lead == NO_NODE:
            raise NotLeaderError(f"{self.id}: no leader at term {self.term}", NO_NODE)
        else:
            self.msgs.append(
                Message(_READ_INDEX, self.group_id, self.lead, self.id, context=context)
            )

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.match_term(self.log.committed, self.term)

    def _leader_read_index(self, m: Message, *, local: bool = False) -> None:
        if not self._committed_entry_in_current_term():
            # The commit index is only known to be current once an entry of this term
            # committed; hold the request until then. (etcd answers a single-voter group
            # before this check; after a restart that lost a lazily persisted commit index
            # that could serve a stale read, so the check comes first here.)
            if len(self.pending_read_index_messages) >= self.config.max_pending_read_requests:
                if local:
                    raise ProposalDroppedError("too many reads waiting for the first commit")
                return
            self.pending_read_index_messages.append(m)
            return
        self._start_read_index_round(m, local=local)

    def _start_read_index_round(self, m: Message, *, local: bool) -> None:
        if self.trk.is_singleton():
            # We are the whole quorum: no heartbeat round needed.
            self._respond_read_index(m, self.log.committed)
            return
        try:
            added = self.read_only.add_request(self.log.committed, m)
        except ProposalDroppedError:
            if local:
                raise
            return
        if not added:
            if local:
                raise ProposalDroppedError(f"read context {m.context!r} is already pending")
            return
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._start_read_index_round(m, local=False)

    def _respond_read_index(self, request: Message, index: int) -> None:
        if request.from_ == self.id:
            self.read_states.append(ReadState(index, request.context))
        else:
            self.msgs.append(
                Message(
                    _READ_INDEX_RESP,
                    self.group_id,
                    request.from_,
                    self.id,
                    term=self.term,
                    index=index,
                    context=request.context,
                )
            )

    # -- candidates and followers -------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        # Only responses for our current kind of candidacy count (a candidate may still
        # receive pre-vote responses from its pre-candidacy).
        own_response = _PRE_VOTE_RESP if self.role is _PRE_CANDIDATE else _VOTE_RESP
        if kind is _APP:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif kind is _HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif kind is _SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif kind is own_response:
            granted, rejected, result = self._poll(m.from_, kind, not m.reject)
            self._event(
                f"{self.id} has received {granted} {kind.label} votes and {rejected} "
                "vote rejections"
            )
            if result is VoteResult.WON:
                if self.role is _PRE_CANDIDATE:
                    self._campaign(_CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result is VoteResult.LOST:
                # A pre-vote response carries our future term; stay at ours.
                self.become_follower(self.term, NO_NODE)

    def _step_follower(self, m: Message) -> None:
        kind = m.type
        if kind is _APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif kind is _HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif kind is _SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif kind is _TIMEOUT_NOW:
            self._event(f"{self.id} received MsgTimeoutNow from {m.from_}; campaigning")
            # No pre-vote: the leader asked for it, this is not a partitioned node.
            self.hup(transfer=True)
        elif kind is _READ_INDEX:
            if self.lead == NO_NODE:
                return
            self.msgs.append(
                Message(_READ_INDEX, self.group_id, self.lead, m.from_, context=m.context)
            )
        elif kind is _READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append_entries(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._reply(m, _APP_RESP, index=log.committed)
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._reply(m, _APP_RESP, index=last_new)
            return
        # Our log does not match at m.index: hint the largest (index, term) at or below
        # m.index whose term is <= m.log_term, skipping our divergent tail in one go.
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.index, log.last_index()), m.log_term
        )
        self._event(
            f"{self.id} rejected MsgApp [logterm: {m.log_term}, index: {m.index}] "
            f"from {m.from_}; hint {hint_term}/{hint_index}"
        )
        self._reply(
            m, _APP_RESP, index=m.index, reject=True, reject_hint=hint_index, log_term=hint_term
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(
            Message(
                _HEARTBEAT_RESP,
                self.group_id,
                m.from_,
                self.id,
                term=self.term,
                context=m.context,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is None:
            raise RaftUsageError(f"MsgSnap from {m.from_} without a snapshot")
        meta = snapshot.metadata
        if self._restore(snapshot):
            self._event(
                f"{self.id} [commit: {self.log.committed}] restored snapshot "
                f"[index: {meta.index}, term: {meta.term}]"
            )
            self._reply(m, _APP_RESP, index=self.log.last_index())
        else:
            self._event(
                f"{self.id} [commit: {self.log.committed}] ignored snapshot "
                f"[index: {meta.index}, term: {meta.term}]"
            )
            self._reply(m, _APP_RESP, index=self.log.committed)

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.metadata
        log = self.log
        if meta.index <= log.committed:
            return False
        if self.role is not _FOLLOWER:
            raise RaftInvariantError(f"{self.id} asked to restore a snapshot as {self.role}")
        # Unlike etcd, a snapshot whose configuration does not contain us yet is fine: a
        # new member gets the leader's latest snapshot, which may predate the conf change
        # adding it; it learns its membership by applying the entries that follow. The
        # core runs outside its own configuration anyway (a fresh node does).
        if log.match_term(meta.index, meta.term):
            # We already hold the snapshot's entries: just learn they are committed.
            log.commit_to(meta.index)
            return False
        log.restore(snapshot)
        self.trk = ProgressTracker(
            self.config.max_inflight_messages, self.config.max_inflight_bytes
        )
        self.trk.set_config(meta.conf_state, log.last_index())
        self.conf_index = meta.index
        self._refresh_is_learner()
        return True

    # -- applying -----------------------------------------------------------------------

    def applied_snapshot(self, snapshot: Snapshot) -> None:
        """The caller durably installed ``snapshot`` and its state machine reflects it."""
        index = snapshot.metadata.index
        self.log.stable_snap_to(index)
        self.log.applied_to(min(index, self.log.committed))

    def applied_entries(self, entries: Sequence[Entry]) -> None:
        """The caller applied ``entries`` (a prefix of the committed, unapplied log)."""
        if not entries:
            return
        expected = self.log.applied + 1
        if entries[0].index != expected:
            raise RaftUsageError(
                f"applied entries start at {entries[0].index}, expected {expected}"
            )
        payload_bytes = 0
        for entry in entries:
            payload_bytes += len(entry.data)
            if entry.type is EntryType.CONF_CHANGE and entry.index > self.conf_index:
                # (At or below conf_index only if a snapshot restored after this Ready
                # was handed out already carries a newer configuration.)
                self.log.applied_to(entry.index)
                self.apply_conf_change(ConfChange.decode(entry.data))
                self.conf_index = entry.index
        self.log.applied_to(entries[-1].index)
        if self.role is _LEADER:
            self.uncommitted_bytes = max(0, self.uncommitted_bytes - payload_bytes)

    def _apply_conf_change_to_tracker(self, change: ConfChange) -> bool:
        voters = set(self.trk.voters)
        learners = set(self.trk.learners)
        node_id = change.node_id
        if change.type is ConfChangeType.ADD_NODE:
            learners.discard(node_id)
            voters.add(node_id)
        elif change.type is ConfChangeType.ADD_LEARNER_NODE:
            voters.discard(node_id)
            learners.add(node_id)
        else:
            voters.discard(node_id)
            learners.discard(node_id)
        if not voters:
            # Refused at proposal time; an entry that slipped through (e.g. from an older
            # leader) is ignored identically on every replica.
            self._event(f"{self.id} ignored conf change {_describe_change(change)}: no voters")
            return False
        self.trk.set_config(ConfState.of(voters, learners), self.log.last_index())
        return True

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed conf change (called as its entry is applied)."""
        if self._apply_conf_change_to_tracker(change):
            self._event(
                f"{self.id} applied conf change {_describe_change(change)}: "
                f"voters={sorted(self.trk.voters)} learners={sorted(self.trk.learners)}"
            )
            self._switch_to_config()
        return self.trk.conf_state()

    def _switch_to_config(self) -> None:
        self._refresh_is_learner()
        own = self.trk.progress.get(self.id)
        if (own is None or self.is_learner) and self.role is _LEADER:
            self._event(f"{self.id} stepped down: no longer a voter")
            self.become_follower(self.term, NO_NODE)
            return
        if self.role is not _LEADER:
            return
        if self._maybe_commit():
            # A smaller quorum may commit more at once.
            self._release_pending_read_index_messages()
            self._bcast_append()
        else:
            # Probe new members now rather than at the next heartbeat.
            self._bcast_append()
        if self.lead_transferee != NO_NODE and self.lead_transferee not in self.trk.voters:
            self._abort_leader_transfer()

    # -- invariants -----------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise `RaftInvariantError` if any internal invariant is broken. Stays on under
        ``python -O`` (no asserts)."""
        self.log.check_invariants()
        self.trk.check_invariants()
        if self.term < 0:
            raise RaftInvariantError(f"negative term {self.term}")
        role = self.role
        if role is _LEADER:
            if self.lead != self.id:
                raise RaftInvariantError(f"leader {self.id} believes {self.lead} leads")
            own = self.trk.progress.get(self.id)
            if own is None:
                raise RaftInvariantError(f"leader {self.id} has no progress of its own")
            if own.match > self.log.last_index():
                raise RaftInvariantError(
                    f"leader match {own.match} above last index {self.log.last_index()}"
                )
            if self.vote != self.id and self.term > 0:
                # A leader was elected with its own vote in this term.
                raise RaftInvariantError(f"leader {self.id} voted for {self.vote}")
        else:
            if self.lead_transferee != NO_NODE:
                raise RaftInvariantError("leadership transfer outside the leader role")
            if self.pending_read_index_messages or len(self.read_only):
                raise RaftInvariantError("pending reads outside the leader role")
        if role is _CANDIDATE and self.vote != self.id:
            raise RaftInvariantError(f"candidate {self.id} voted for {self.vote}")
        if self.lead == self.id and role is not _LEADER:
            raise RaftInvariantError(f"{self.id} thinks it leads but is {role}")


def _describe_change(change: ConfChange) -> str:
    names = {
        ConfChangeType.ADD_NODE: "add",
        ConfChangeType.ADD_LEARNER_NODE: "add-learner",
        ConfChangeType.REMOVE_NODE: "remove",
    }
    return f"{names[change.type]} {change.node_id}"
