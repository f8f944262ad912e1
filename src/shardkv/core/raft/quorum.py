"""Majority arithmetic: the commit index a set of voters agrees on, and election tallies.

Pure functions over plain collections; no knowledge of progress, terms or messages.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping


class VoteResult(enum.Enum):
    """Outcome of a tally: ``WON`` (a majority granted), ``LOST`` (a majority can no
    longer grant), ``PENDING`` (not decided yet)."""

    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority_size(voter_count: int) -> int:
    """Smallest number of voters that forms a majority of ``voter_count``."""
    return voter_count // 2 + 1


def committed_index(voters: Collection[int], acked_index: Mapping[int, int]) -> int:
    """The largest index acknowledged by a majority of ``voters``.

    ``acked_index`` maps voter id to the highest index it durably holds; voters missing
    from it count as 0. With no voters the result is 0 (nothing can be committed)."""
    if not voters:
        return 0
    indexes = sorted((acked_index.get(voter, 0) for voter in voters), reverse=True)
    return indexes[majority_size(len(indexes)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally ``votes`` (voter id -> granted) over ``voters``; non-voters are ignored.

    With no voters the election is trivially won (a group with an empty configuration has
    nothing to protect; the core never campaigns then)."""
    if not voters:
        return VoteResult.WON
    granted = rejected = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is None:
            continue
        if vote:
            granted += 1
        else:
            rejected += 1
    needed = majority_size(len(voters))
    if granted >= needed:
        return VoteResult.WON
    if len(voters) - rejected < needed:
        return VoteResult.LOST
    return VoteResult.PENDING
