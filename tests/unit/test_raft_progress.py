"""Replication progress, flow control and membership tracking (core/raft/progress.py)."""

from __future__ import annotations

import pytest

from shardkv.core.raft import ConfState
from shardkv.core.raft.errors import RaftInvariantError
from shardkv.core.raft.progress import Inflights, Progress, ProgressState, ProgressTracker
from shardkv.core.raft.quorum import VoteResult

# -- Inflights -------------------------------------------------------------------------


def test_inflights_fill_up_to_the_message_bound() -> None:
    window = Inflights(max_messages=3)
    for last_index in (5, 10, 15):
        assert not window.full()
        window.add(last_index, 100)
    assert window.full()
    assert window.count() == 3
    with pytest.raises(RaftInvariantError):
        window.add(20, 1)


def test_inflights_free_le_releases_acknowledged_messages_in_order() -> None:
    window = Inflights(max_messages=4)
    for last_index in (5, 10, 15, 20):
        window.add(last_index, 10)
    window.free_le(12)
    assert window.count() == 2
    assert window.size_bytes == 20
    window.free_le(4)  # a stale ack frees nothing
    assert window.count() == 2
    window.free_le(100)
    assert window.count() == 0
    assert window.size_bytes == 0


def test_inflights_byte_bound_admits_one_crossing_message_then_is_full() -> None:
    window = Inflights(max_messages=10, max_bytes=100)
    window.add(1, 60)
    assert not window.full()
    window.add(2, 60)  # crosses the bound: admitted, window now full
    assert window.full()
    window.free_le(1)
    assert not window.full()


def test_inflights_indexes_must_grow() -> None:
    window = Inflights(max_messages=4)
    window.add(10, 1)
    with pytest.raises(RaftInvariantError):
        window.add(10, 1)


def test_inflights_reset_empties_the_window() -> None:
    window = Inflights(max_messages=2)
    window.add(1, 5)
    window.add(2, 5)
    window.reset()
    assert window.count() == 0 and not window.full()


# -- Progress --------------------------------------------------------------------------


def _progress(match: int = 0, next_index: int = 1, max_inflight: int = 4) -> Progress:
    return Progress(next_index=next_index, match=match, inflights=Inflights(max_inflight))


def test_probe_sends_one_message_at_a_time() -> None:
    pr = _progress(match=5, next_index=6)
    assert pr.state is ProgressState.PROBE
    assert not pr.is_paused()
    pr.sent_entries(3, 30)
    assert pr.is_paused()
    assert pr.next == 6  # probing does not advance next optimistically


def test_probe_resumes_on_ack_and_ack_moves_match_and_next() -> None:
    pr = _progress(match=5, next_index=6)
    pr.sent_entries(3, 30)
    assert pr.maybe_update(8)
    assert (pr.match, pr.next) == (8, 9)
    assert not pr.is_paused()


def test_stale_ack_does_not_move_match() -> None:
    pr = _progress(match=8, next_index=9)
    assert not pr.maybe_update(6)
    assert (pr.match, pr.next) == (8, 9)


def test_replicate_streams_until_the_window_is_full() -> None:
    pr = _progress(match=5, next_index=6, max_inflight=2)
    pr.become_replicate()
    pr.sent_entries(2, 20)
    assert (pr.next, pr.is_paused()) == (8, False)
    pr.sent_entries(2, 20)
    assert (pr.next, pr.is_paused()) == (10, True)
    pr.maybe_update(7)
    pr.inflights.free_le(7)
    assert not pr.is_paused()


def test_rejection_in_replicate_falls_back_to_match_plus_one() -> None:
    pr = _progress(match=5, next_index=6)
    pr.become_replicate()
    pr.sent_entries(4, 40)  # next = 10
    assert pr.maybe_decr_to(rejected=9, match_hint=3)
    assert pr.next == 6


def test_stale_rejection_in_replicate_is_ignored() -> None:
    pr = _progress(match=5, next_index=6)
    pr.become_replicate()
    assert not pr.maybe_decr_to(rejected=4, match_hint=2)


def test_rejection_in_probe_uses_the_hint_but_never_goes_below_match() -> None:
    pr = _progress(match=2, next_index=10)
    assert pr.maybe_decr_to(rejected=9, match_hint=4)
    assert pr.next == 5
    pr2 = _progress(match=6, next_index=10)
    assert pr2.maybe_decr_to(rejected=9, match_hint=1)
    assert pr2.next == 7


def test_rejection_in_probe_for_another_index_is_stale() -> None:
    pr = _progress(match=2, next_index=10)
    assert not pr.maybe_decr_to(rejected=7, match_hint=1)
    assert pr.next == 10


def test_snapshot_state_pauses_and_probe_resumes_after_the_snapshot() -> None:
    pr = _progress(match=2, next_index=3)
    pr.become_snapshot(50)
    assert pr.is_paused()
    assert pr.pending_snapshot == 50
    pr.become_probe()
    assert pr.next == 51
    assert pr.pending_snapshot == 0


def test_can_bump_commit_tracks_what_was_sent() -> None:
    pr = _progress(match=5, next_index=6)
    pr.become_replicate()
    assert pr.can_bump_commit(5)
    pr.sent_commit_index(5)
    assert not pr.can_bump_commit(5)
    # The follower cannot commit past what it has been sent (next - 1).
    assert not pr.can_bump_commit(9)


def test_progress_invariants_detect_match_not_below_next() -> None:
    pr = _progress(match=5, next_index=6)
    pr.check_invariants(2)
    pr.next = 5
    with pytest.raises(RaftInvariantError):
        pr.check_invariants(2)


# -- ProgressTracker ---------------------------------------------------------------------


def test_tracker_config_keeps_existing_progress_and_probes_new_members() -> None:
    trk = ProgressTracker(max_inflight_messages=4)
    trk.set_config(ConfState.of([1, 2, 3]), last_index=10)
    trk.progress[2].maybe_update(7)
    trk.set_config(ConfState.of([1, 2], [4]), last_index=12)
    assert sorted(trk.progress) == [1, 2, 4]
    assert trk.progress[2].match == 7
    assert trk.progress[4].is_learner
    assert trk.progress[4].next == 13
    trk.check_invariants()


def test_tracker_committed_counts_voters_only() -> None:
    trk = ProgressTracker(max_inflight_messages=4)
    trk.set_config(ConfState.of([1, 2, 3], [4]), last_index=0)
    for node_id, match in ((1, 9), (4, 9), (2, 3)):
        trk.progress[node_id].maybe_update(match)
    assert trk.committed() == 3


def test_tracker_votes_count_first_vote_only() -> None:
    trk = ProgressTracker(max_inflight_messages=4)
    trk.set_config(ConfState.of([1, 2, 3]), last_index=0)
    trk.record_vote(1, True)
    trk.record_vote(2, False)
    trk.record_vote(2, True)  # a duplicate response cannot flip a vote
    assert trk.tally_votes() == (1, 1, VoteResult.PENDING)
    trk.record_vote(3, True)
    assert trk.tally_votes() == (2, 1, VoteResult.WON)


def test_tracker_quorum_active_needs_a_majority_of_recently_active_voters() -> None:
    trk = ProgressTracker(max_inflight_messages=4)
    trk.set_config(ConfState.of([1, 2, 3], [4]), last_index=0)
    for pr in trk.progress.values():
        pr.recent_active = False
    trk.progress[1].recent_active = True
    trk.progress[4].recent_active = True  # a learner does not count
    assert not trk.quorum_active()
    trk.progress[3].recent_active = True
    assert trk.quorum_active()


def test_tracker_refuses_overlapping_voters_and_learners() -> None:
    trk = ProgressTracker(max_inflight_messages=4)
    with pytest.raises(RaftInvariantError):
        trk.set_config(ConfState((1, 2), (2,)), last_index=0)
