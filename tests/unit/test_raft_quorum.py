"""Majority arithmetic (core/raft/quorum.py)."""

from __future__ import annotations

import random

import pytest

from shardkv.core.raft.quorum import VoteResult, committed_index, majority_size, vote_result


@pytest.mark.parametrize(("voters", "majority"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_size(voters: int, majority: int) -> None:
    assert majority_size(voters) == majority


def test_committed_index_is_the_highest_index_a_majority_holds() -> None:
    assert committed_index({1, 2, 3}, {1: 10, 2: 7, 3: 3}) == 7
    assert committed_index({1, 2, 3, 4}, {1: 10, 2: 7, 3: 3, 4: 9}) == 7
    assert committed_index({1, 2, 3, 4, 5}, {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}) == 3


def test_committed_index_counts_missing_voters_as_zero_and_ignores_non_voters() -> None:
    assert committed_index({1, 2, 3}, {1: 10}) == 0
    assert committed_index({1, 2, 3}, {1: 10, 2: 10}) == 10
    # Node 4 is a learner here: its ack must not help.
    assert committed_index({1, 2, 3}, {1: 10, 4: 10}) == 0


def test_committed_index_of_a_single_voter_is_its_own() -> None:
    assert committed_index({1}, {1: 42}) == 42


def test_committed_index_without_voters_is_zero() -> None:
    assert committed_index(set(), {1: 5}) == 0


def test_committed_index_matches_a_brute_force_definition() -> None:
    rng = random.Random(7)
    for _ in range(500):
        voters = set(range(1, rng.randint(1, 7) + 1))
        acked = {v: rng.randint(0, 20) for v in voters if rng.random() < 0.9}
        expected = max(
            (
                i
                for i in range(0, 21)
                if sum(acked.get(v, 0) >= i for v in voters) * 2 > len(voters)
            ),
            default=0,
        )
        assert committed_index(voters, acked) == expected


def test_vote_result_won_lost_pending() -> None:
    voters = {1, 2, 3}
    assert vote_result(voters, {}) is VoteResult.PENDING
    assert vote_result(voters, {1: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 2: False}) is VoteResult.PENDING
    assert vote_result(voters, {1: False, 2: False}) is VoteResult.LOST
    assert vote_result(voters, {1: True, 2: False, 3: False}) is VoteResult.LOST


def test_vote_result_ignores_votes_of_non_voters() -> None:
    assert vote_result({1, 2, 3}, {1: True, 9: True}) is VoteResult.PENDING


def test_vote_result_in_even_groups_needs_a_strict_majority() -> None:
    voters = {1, 2, 3, 4}
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True, 3: True}) is VoteResult.WON
    assert vote_result(voters, {1: False, 2: False}) is VoteResult.LOST
