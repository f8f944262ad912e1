"""What a leader knows about each peer: replication progress, flow control, votes.

`Inflights` is the sliding window of unacknowledged append messages; `Progress` the
per-peer state machine (probe / replicate / snapshot); `ProgressTracker` the membership
plus one `Progress` per member. Pure bookkeeping: decisions about *sending* are taken in
``raft.py``.
"""

from __future__ import annotations

import enum
from collections import deque

from shardkv.core.raft.errors import RaftInvariantError
from shardkv.core.raft.quorum import VoteResult, committed_index, vote_result
from shardkv.core.raft.types import NO_LIMIT, ConfState


class ProgressState(enum.Enum):
    """How the leader replicates to a peer.

    - ``PROBE``: the match point is unknown; send one append at a time and wait for the
      answer (or a heartbeat response) before the next.
    - ``REPLICATE``: the peer follows; stream appends optimistically, bounded by
      `Inflights`.
    - ``SNAPSHOT``: the peer needs a snapshot; send nothing until it reports back.
    """

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Append messages sent to one peer and not yet acknowledged, oldest first.

    Bounded by ``max_messages`` entries and ``max_bytes`` of payload (a message that
    crosses the byte bound is still admitted; the window is then full)."""

    __slots__ = ("_bytes", "_window", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int = NO_LIMIT) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        # (last index carried by the message, payload bytes of the message)
        self._window: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, last_index: int, size_bytes: int) -> None:
        """Record a message carrying entries up to ``last_index``. Indexes must grow."""
        if self.full():
            raise RaftInvariantError("inflights: add to a full window")
        if self._window and last_index <= self._window[-1][0]:
            raise RaftInvariantError(
                f"inflights: index {last_index} not above {self._window[-1][0]}"
            )
        self._window.append((last_index, size_bytes))
        self._bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Forget every message whose last index is ``<= index`` (acknowledged)."""
        window = self._window
        while window and window[0][0] <= index:
            self._bytes -= window.popleft()[1]

    def full(self) -> bool:
        return len(self._window) >= self.max_messages or self._bytes >= self.max_bytes

    def count(self) -> int:
        return len(self._window)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def reset(self) -> None:
        self._window.clear()
        self._bytes = 0


class Progress:
    """The leader's view of one peer.

    Invariants: ``0 <= match < next``; ``sent_commit < next``; ``pending_snapshot`` is
    non-zero only in ``SNAPSHOT`` state.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "sent_commit",
        "snapshot_wait_ticks",
        "state",
    )

    def __init__(
        self,
        *,
        next_index: int,
        inflights: Inflights,
        match: int = 0,
        is_learner: bool = False,
        recent_active: bool = False,
    ) -> None:
        # Highest index known to be durably replicated on the peer.
        self.match = match
        # Next index to send; entries in (match, next) are in flight.
        self.next = next_index
        # Highest commit index sent to the peer, capped at next - 1.
        self.sent_commit = 0
        self.state = ProgressState.PROBE
        # Snapshot index sent while in SNAPSHOT state (0 otherwise).
        self.pending_snapshot = 0
        # SNAPSHOT only: ticks spent waiting for the snapshot to be reported or acked.
        self.snapshot_wait_ticks = 0
        # Any message from the peer since the last check-quorum round.
        self.recent_active = recent_active
        # PROBE only: an append is outstanding; wait for an answer before the next one.
        self.probe_sent = False
        self.inflights = inflights
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """One-line etcd-like summary used by tests and status output."""
        parts = [f"{self.state.value} match={self.match} next={self.next}"]
        if self.is_learner:
            parts.append("learner")
        if self.is_paused():
            parts.append("paused")
        if self.pending_snapshot:
            parts.append(f"pending-snap={self.pending_snapshot}")
        if not self.recent_active:
            parts.append("inactive")
        count = self.inflights.count()
        if count:
            parts.append(f"inflight={count}{'[full]' if self.inflights.full() else ''}")
        return " ".join(parts)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_wait_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Probe from ``match + 1`` (or just past a snapshot that was sent)."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1
        self.sent_commit = min(self.sent_commit, self.next - 1)

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1
        self.sent_commit = min(self.sent_commit, self.match)

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, count: int, size_bytes: int) -> None:
        """An append with ``count`` entries starting at ``next`` was sent."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next += count
                self.inflights.add(self.next - 1, size_bytes)
        else:
            self.probe_sent = True

    def sent_commit_index(self, commit: int) -> None:
        """A message carrying ``commit`` was sent."""
        self.sent_commit = min(max(self.sent_commit, commit), self.next - 1)

    def can_bump_commit(self, commit: int) -> bool:
        """Whether sending ``commit`` may advance the peer's commit index."""
        return self.sent_commit < min(commit, self.next - 1)

    def maybe_update(self, index: int) -> bool:
        """An append up to ``index`` was acknowledged. False if the ack is stale."""
        updated = False
        if index > self.match:
            self.match = index
            self.probe_sent = False
            updated = True
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append whose previous index was ``rejected`` was refused; the peer's hint
        says its log may match up to ``match_hint``. False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self.sent_commit = min(self.sent_commit, self.match)
            return True
        # Probes go one at a time, so anything but next - 1 is an old answer.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.sent_commit = min(self.sent_commit, self.next - 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether appends carrying entries must wait."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def check_invariants(self, node_id: int) -> None:
        if not (0 <= self.match < self.next):
            raise RaftInvariantError(
                f"progress {node_id}: match {self.match} next {self.next} out of order"
            )
        if self.pending_snapshot and self.state is not ProgressState.SNAPSHOT:
            raise RaftInvariantError(f"progress {node_id}: pending snapshot outside SNAPSHOT")


class ProgressTracker:
    """Membership (voters, learners) and a `Progress` for every member.

    Invariants: ``voters`` and ``learners`` are disjoint; ``progress`` has exactly their
    union as keys; ``progress[i].is_learner == (i in learners)``.
    """

    __slots__ = (
        "learners",
        "max_inflight_bytes",
        "max_inflight_messages",
        "progress",
        "voters",
        "votes",
    )

    def __init__(self, max_inflight_messages: int, max_inflight_bytes: int = NO_LIMIT) -> None:
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight_messages = max_inflight_messages
        self.max_inflight_bytes = max_inflight_bytes

    def new_progress(self, next_index: int, *, is_learner: bool, match: int = 0) -> Progress:
        return Progress(
            next_index=next_index,
            match=match,
            inflights=Inflights(self.max_inflight_messages, self.max_inflight_bytes),
            is_learner=is_learner,
            # A new member gets the benefit of the doubt for one check-quorum round.
            recent_active=True,
        )

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def set_config(self, conf_state: ConfState, last_index: int) -> None:
        """Switch to ``conf_state``, keeping the progress of members that stay and
        creating probe progress (``next = last_index + 1``) for new ones."""
        voters = frozenset(conf_state.voters)
        learners = frozenset(conf_state.learners)
        if voters & learners:
            raise RaftInvariantError(f"voters and learners overlap in {conf_state}")
        progress: dict[int, Progress] = {}
        for node_id in sorted(voters | learners):
            is_learner = node_id in learners
            existing = self.progress.get(node_id)
            if existing is None:
                existing = self.new_progress(max(last_index + 1, 1), is_learner=is_learner)
            existing.is_learner = is_learner
            progress[node_id] = existing
        self.voters = voters
        self.learners = learners
        self.progress = progress
        self.votes = {k: v for k, v in self.votes.items() if k in voters}

    def ids(self) -> list[int]:
        """Every member, sorted (deterministic iteration order)."""
        return list(self.progress)

    def committed(self) -> int:
        """The index a majority of voters has durably matched."""
        progress = self.progress
        return committed_index(self.voters, {v: progress[v].match for v in self.voters})

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def quorum_active(self) -> bool:
        """Whether a majority of voters was recently active."""
        progress = self.progress
        active = {v: progress[v].recent_active for v in self.voters}
        return vote_result(self.voters, active) is VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Record the first vote of ``node_id`` in this election (later ones are ignored)."""
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result) among current voters."""
        granted = sum(1 for v, ok in self.votes.items() if ok and v in self.voters)
        rejected = sum(1 for v, ok in self.votes.items() if not ok and v in self.voters)
        return granted, rejected, vote_result(self.voters, self.votes)

    def check_invariants(self) -> None:
        if self.voters & self.learners:
            raise RaftInvariantError("tracker: voters and learners overlap")
        if set(self.progress) != set(self.voters | self.learners):
            raise RaftInvariantError(
                f"tracker: progress for {sorted(self.progress)} but members are "
                f"{sorted(self.voters | self.learners)}"
            )
        for node_id, pr in self.progress.items():
            if pr.is_learner != (node_id in self.learners):
                raise RaftInvariantError(f"tracker: learner flag of {node_id} is stale")
            pr.check_invariants(node_id)
