"""Safety invariants of Raft, checked continuously while the simulator runs.

Owns the global, omniscient record of what every node did (leaders per term, entries per
(index, term), committed entries, votes granted) and the checks over it. The simulator
reports events as they happen; a broken invariant raises `InvariantViolation` carrying the
seed and the tick, so every failure names the seed that replays it. It never drives the
cluster and never mutates what it is shown.

The invariants (Raft paper section 5, plus the durability contract of `Ready`):

- election safety: at most one leader per term;
- leader commit rule: a leader advances its commit index only to an entry of its own term
  (Raft section 5.4.2; earlier entries are committed only indirectly);
- one vote per term: a node never grants votes to two candidates in the same term (even
  across restarts);
- log matching: two entries with the same index and term hold the same command and follow
  the same (index - 1, term) entry, hence identical prefixes (by induction);
- leader completeness: a newly elected leader of term T holds every entry known committed
  in a term before T;
- state machine safety: every node that applies index i applies the same entry there, and
  snapshots at the same index hold the same image;
- durable term and vote never go back, and a restarted node starts from them;
- durability before acknowledgement: a vote grant or append acknowledgement leaves a node
  only when its synced state covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn

from shardkv.core.raft import NO_NODE, Entry, EntryType, HardState, Message, MessageType

LEADER_COMPLETENESS_WINDOW_ENTRIES: Final = 64
"""How many of the highest committed entries a new leader's log is checked against (log
matching, checked separately on every entry, covers the prefix below them)."""


class InvariantViolation(Exception):
    """A safety property broke. ``seed`` replays the run; ``tick`` is when it was seen."""

    def __init__(self, seed: int, tick: int, invariant: str, detail: str) -> None:
        self.seed = seed
        self.tick = tick
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"seed {seed} tick {tick}: {invariant}: {detail}")


class LivenessViolation(InvariantViolation):
    """The healed cluster did not elect a leader, commit, or converge within the bound."""


class LinearizabilityViolation(InvariantViolation):
    """The client history has no linearization."""


@dataclass(slots=True)
class _Committed:
    term: int
    type: EntryType | None  # None: known only as a snapshot point
    data: bytes | None
    # Smallest term of a node seen holding it as committed: it was committed in a term no
    # later than this one.
    observed_term: int
    first_node: int


class InvariantChecker:
    """The omniscient observer. Set `tick` as time passes; call the ``observe_*`` and
    ``check_*`` methods as events happen. Each raises `InvariantViolation` on a breach."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.tick = 0
        self.leaders: dict[int, int] = {}  # term -> node
        self.votes: dict[tuple[int, int], int] = {}  # (voter, term) -> candidate
        # (index, term) -> (entry type, data, term of index - 1)
        self.entries: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}
        self.committed: dict[int, _Committed] = {}
        self.max_committed_index = 0
        self.snapshots: dict[int, bytes] = {}  # index -> state machine image
        self.checks = 0

    def fail(self, invariant: str, detail: str) -> NoReturn:
        raise InvariantViolation(self.seed, self.tick, invariant, detail)

    # -- elections --------------------------------------------------------------------------

    def observe_leader(self, node_id: int, term: int) -> None:
        """``node_id`` is leader of ``term``."""
        self.checks += 1
        other = self.leaders.setdefault(term, node_id)
        if other != node_id:
            self.fail("election safety", f"nodes {other} and {node_id} both led term {term}")

    def check_leader_commit(self, node_id: int, term: int, commit: int, entry_term: int) -> None:
        """``node_id``, leader of ``term``, advanced its commit index to ``commit``, whose
        entry has ``entry_term``. Counting replicas of an earlier term's entry is the
        figure-8 bug: that entry may still be overwritten."""
        self.checks += 1
        if entry_term != term:
            self.fail(
                "leader commit rule",
                f"node {node_id}, leader of term {term}, advanced its commit index to "
                f"{commit}, an entry of term {entry_term}",
            )

    def observe_vote_granted(self, voter: int, term: int, candidate: int) -> None:
        """``voter`` sent a vote grant for ``candidate`` in ``term``."""
        self.checks += 1
        other = self.votes.setdefault((voter, term), candidate)
        if other != candidate:
            self.fail(
                "one vote per term",
                f"node {voter} voted for {other} and then for {candidate} in term {term}",
            )

    # -- logs -------------------------------------------------------------------------------

    def observe_log_entries(
        self, node_id: int, prev_term: int | None, entries: tuple[Entry, ...]
    ) -> None:
        """``node_id`` wrote ``entries`` (contiguous) after an entry of ``prev_term`` (None
        when the node no longer knows it)."""
        known = self.entries
        previous = prev_term
        for entry in entries:
            self.checks += 1
            key = (entry.index, entry.term)
            mine = (entry.type, entry.data, -1 if previous is None else previous)
            seen = known.get(key)
            if seen is None:
                known[key] = mine
            else:
                if seen[0] is not entry.type or seen[1] != entry.data:
                    self.fail(
                        "log matching",
                        f"node {node_id} holds {_describe(entry)} but another node holds "
                        f"{seen[1]!r} at index {entry.index} term {entry.term}",
                    )
                if previous is not None and seen[2] != -1 and seen[2] != previous:
                    self.fail(
                        "log matching",
                        f"node {node_id}: entry {entry.index}/{entry.term} follows term "
                        f"{previous}, another log has it after term {seen[2]}",
                    )
                if seen[2] == -1 and previous is not None:
                    known[key] = mine
            previous = entry.term

    def observe_applied(self, node_id: int, entry: Entry, node_term: int) -> None:
        """``node_id`` (at ``node_term``) applies committed ``entry``."""
        self.checks += 1
        record = self.committed.get(entry.index)
        if record is None:
            self.committed[entry.index] = _Committed(
                entry.term, entry.type, entry.data, node_term, node_id
            )
            if entry.index > self.max_committed_index:
                self.max_committed_index = entry.index
            return
        if record.term != entry.term or (
            record.data is not None and (record.type is not entry.type or record.data != entry.data)
        ):
            self.fail(
                "state machine safety",
                f"node {node_id} applies {_describe(entry)} at index {entry.index}, node "
                f"{record.first_node} committed term {record.term} {record.data!r} there",
            )
        if record.data is None:
            record.type, record.data = entry.type, entry.data
        record.observed_term = min(record.observed_term, node_term)

    def observe_snapshot(
        self, node_id: int, index: int, term: int, data: bytes, node_term: int
    ) -> None:
        """``node_id`` (at ``node_term``) created or installed a snapshot of the state
        machine at ``index`` (whose entry has ``term``)."""
        self.checks += 1
        image = self.snapshots.setdefault(index, data)
        if image != data:
            self.fail(
                "state machine safety",
                f"node {node_id} has a snapshot at {index} that differs from another node's",
            )
        record = self.committed.get(index)
        if record is None:
            self.committed[index] = _Committed(term, None, None, node_term, node_id)
            if index > self.max_committed_index:
                self.max_committed_index = index
        elif record.term != term:
            self.fail(
                "state machine safety",
                f"node {node_id} has a snapshot at {index} of term {term}, node "
                f"{record.first_node} committed term {record.term} there",
            )
        else:
            record.observed_term = min(record.observed_term, node_term)

    def check_leader_completeness(
        self,
        node_id: int,
        term: int,
        first_index: int,
        log_term: Callable[[int], int | None],
    ) -> None:
        """A new leader of ``term`` must hold every entry committed in an earlier term.
        ``log_term(i)`` is the term of its entry ``i`` (None if absent); indexes below
        ``first_index`` are covered by its snapshot, hence committed, and skipped."""
        checked = 0
        index = self.max_committed_index
        committed = self.committed
        while index >= first_index and checked < LEADER_COMPLETENESS_WINDOW_ENTRIES:
            record = committed.get(index)
            if record is not None and record.observed_term < term:
                checked += 1
                self.checks += 1
                ours = log_term(index)
                if ours != record.term:
                    self.fail(
                        "leader completeness",
                        f"node {node_id} leads term {term} without entry {index} (term "
                        f"{record.term}, committed by term {record.observed_term}); its log "
                        f"has {'nothing' if ours is None else f'term {ours}'} there",
                    )
            index -= 1

    # -- durability -------------------------------------------------------------------------

    def check_hard_state_write(self, node_id: int, old: HardState, new: HardState) -> None:
        """``node_id`` is about to write ``new`` over ``old``: term and vote never go back."""
        self.checks += 1
        if new.term < old.term:
            self.fail(
                "durable term never goes back",
                f"node {node_id} writes term {new.term} over {old.term}",
            )
        if new.term == old.term and old.vote != NO_NODE and new.vote != old.vote:
            self.fail(
                "durable vote never goes back",
                f"node {node_id} writes vote {new.vote} over {old.vote} in term {new.term}",
            )

    def check_restart(self, node_id: int, durable: HardState, term: int, vote: int) -> None:
        """A node rebuilt from its disk must start from the durable term and vote."""
        self.checks += 1
        if term != durable.term or vote != durable.vote:
            self.fail(
                "restart from durable state",
                f"node {node_id} restarted at term {term} vote {vote}, disk has term "
                f"{durable.term} vote {durable.vote}",
            )

    def check_message_durable(
        self,
        node_id: int,
        message: Message,
        durable_hard_state: HardState,
        durable_last_index: int,
    ) -> None:
        """``node_id`` is sending ``message``; if it promises durable state (a vote grant,
        an append acknowledgement), the node's synced state must cover the promise."""
        kind = message.type
        if message.reject:
            return
        if kind is MessageType.VOTE_RESP:
            self.checks += 1
            term = message.term
            if durable_hard_state.term < term or (
                durable_hard_state.term == term and durable_hard_state.vote != message.to
            ):
                self.fail(
                    "durable before acknowledged",
                    f"node {node_id} grants its term-{term} vote to {message.to} while its "
                    f"disk has term {durable_hard_state.term} vote {durable_hard_state.vote}",
                )
            self.observe_vote_granted(node_id, term, message.to)
        elif kind is MessageType.APP_RESP:
            self.checks += 1
            index = message.index
            if durable_hard_state.term < message.term:
                self.fail(
                    "durable before acknowledged",
                    f"node {node_id} acknowledges at term {message.term} while its disk has "
                    f"term {durable_hard_state.term}",
                )
            # Indexes at or below the durable snapshot are covered by it. An acknowledgement
            # of an older term may be stale: it was queued at that term, then a newer
            # leader truncated the entries before the persist that releases it. That is
            # safe: the newer leader won a vote from some node of any quorum that could
            # count the acknowledgement, a node that held the entries when it voted, so
            # the newer leader held them too and cannot be what truncated them there.
            if durable_hard_state.term == message.term and index > durable_last_index:
                self.fail(
                    "durable before acknowledged",
                    f"node {node_id} acknowledges index {index} to {message.to} (term "
                    f"{message.term}) while its disk holds entries up to {durable_last_index}",
                )


def _describe(entry: Entry) -> str:
    kind = "conf change" if entry.type is EntryType.CONF_CHANGE else "entry"
    return f"{kind} {entry.index}/{entry.term} {entry.data!r}"
