"""The simulator catches known Raft bugs.

Each test plants a classic bug into the real core by monkeypatching one function, then runs
seeds until the simulator reports a violation. If one of these starts passing silently,
the simulator (or its invariants) has gone blind to that class of bug.

Counting replicas of an earlier term's entry toward commit (Raft figure 8) is caught by
the leader commit rule as soon as a leader commits such an entry. Its end-to-end damage (a
later leader overwriting the entry) needs three leaders, a follower acknowledging the old
entry without the new leader's first entry, and that leader dying at once; leader
completeness and state machine safety catch that too, but it shows up only about once in
several hundred seeds of a crash-heavy profile, too rarely for a bounded CI test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from shardkv.core.raft import Entry, HardState, Message, MessageType, RawNode, Ready
from shardkv.core.raft import log as raft_log
from shardkv.core.raft import raft as raft_state
from shardkv.sim.cluster import SimResult, run_seed

MAX_SEEDS_PER_BUG = 300
"""Bound on seeds a planted bug may survive."""


def _first_failure(max_seeds: int = MAX_SEEDS_PER_BUG) -> SimResult:
    for seed in range(1, max_seeds + 1):
        result = run_seed(seed)
        if not result.ok:
            return result
    pytest.fail(f"planted bug survived {max_seeds} seeds")


def _plant_ack_before_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Followers acknowledge appended entries at once, before they are persisted."""

    def send(self: raft_state.Raft, message: Message) -> None:
        if message.type in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
            self.msgs_after_append.append(message)
        else:
            self.msgs.append(message)

    monkeypatch.setattr(raft_state.Raft, "_send", send)


def _plant_vote_not_persisted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hard state written to disk leaves out the vote: after a restart the node may
    vote again in the same term."""
    ready = RawNode.ready

    def ready_without_vote(self: RawNode) -> Ready:
        rd = ready(self)
        if rd.hard_state is not None:
            hs = rd.hard_state
            rd = dataclasses.replace(rd, hard_state=HardState(hs.term, 0, hs.commit))
            self._outstanding = rd  # type: ignore[attr-defined]
        return rd

    monkeypatch.setattr(RawNode, "ready", ready_without_vote)


def _plant_read_index_before_first_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new leader serves ReadIndex before an entry of its term commits, so its commit
    index may still lag behind writes the previous leader acknowledged."""
    monkeypatch.setattr(raft_state.Raft, "_committed_entry_in_current_term", lambda self: True)


def _plant_vote_without_log_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Voters grant votes without checking the candidate's log is at least as up to
    date as theirs (Raft section 5.4.1)."""
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)


def _plant_commit_earlier_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader commits whatever index a quorum holds, even an entry of an earlier term
    (Raft section 5.4.2, figure 8)."""

    def maybe_commit(self: raft_log.RaftLog, index: int, term: int) -> bool:
        if index > self.committed:
            self.committed = index
            return True
        return False

    monkeypatch.setattr(raft_log.RaftLog, "maybe_commit", maybe_commit)


def _plant_keep_conflicting_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower appends only what lies beyond its last index and keeps its own entries
    where the leader's differ in term (no truncation of a conflicting suffix)."""

    def find_conflict(self: raft_log.RaftLog, entries: tuple[Entry, ...] | list[Entry]) -> int:
        last_index = self.last_index()
        for entry in entries:
            if entry.index > last_index:
                return entry.index
        return 0

    monkeypatch.setattr(raft_log.RaftLog, "find_conflict", find_conflict)


PLANTED_BUGS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], tuple[str, ...]]] = {
    # name: (how to plant it, invariants allowed to report it)
    "ack_before_durable": (_plant_ack_before_durable, ("durable before acknowledged",)),
    "vote_not_persisted": (
        _plant_vote_not_persisted,
        ("durable before acknowledged", "one vote per term", "election safety"),
    ),
    "read_index_before_first_commit": (
        _plant_read_index_before_first_commit,
        ("linearizability",),
    ),
    "commit_earlier_term": (
        _plant_commit_earlier_term,
        ("leader commit rule", "leader completeness", "state machine safety"),
    ),
    "keep_conflicting_entries": (
        _plant_keep_conflicting_entries,
        ("log matching", "state machine safety", "leader completeness", "exception"),
    ),
    "vote_without_log_check": (
        _plant_vote_without_log_check,
        ("leader completeness", "state machine safety", "log matching", "exception"),
    ),
}


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_planted_bug_is_caught(bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plant, expected_invariants = PLANTED_BUGS[bug]
    plant(monkeypatch)
    result = _first_failure()
    failure = result.failure
    assert failure is not None
    assert failure.seed == result.seed
    assert failure.invariant in expected_invariants, str(failure)
    assert f"seed {result.seed} tick " in str(failure)


def test_ack_before_durable_is_caught_even_without_the_direct_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the message-level durability check, the crash that loses the acknowledged
    # entries must still surface: a committed entry missing from a quorum.
    _plant_ack_before_durable(monkeypatch)
    monkeypatch.setattr(
        "shardkv.sim.invariants.InvariantChecker.check_message_durable",
        lambda *args, **kwargs: None,
    )
    result = _first_failure()
    assert result.failure is not None
    assert result.failure.invariant != "durable before acknowledged"


def test_the_unpatched_core_passes_the_same_seeds() -> None:
    # The control group: the seeds that catch the planted bugs are clean without them.
    for seed in range(1, 11):
        result = run_seed(seed)
        assert result.ok, str(result.failure)
