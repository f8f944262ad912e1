"""Errors raised by the Raft core.

Two families, as in h11: `RaftUsageError` means the caller misused the API (a bug in the
shell, fail loudly); `ProposalDroppedError` and its subclasses are normal outcomes the shell
turns into client errors (the request did not enter the log and will not be applied).
Storage errors are raised by `Storage` implementations and interpreted by the core.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raised by ``shardkv.core.raft``."""


class RaftUsageError(RaftError):
    """The caller broke the API contract (wrong group, local message type from the
    network, advance without ready, ...). Indicates a bug in the caller."""


class WrongGroupError(RaftUsageError):
    """A message addressed to another Raft group (or another node) reached this one."""


class InvalidTransitionError(RaftError):
    """An illegal role transition was attempted (e.g. leader -> candidate); a core bug."""


class RaftInvariantError(RaftError):
    """An internal invariant does not hold; state is corrupt, stop the replica."""


class ProposalDroppedError(RaftError):
    """The proposal (or read request) was not accepted; it will never be applied.

    A definite failure: safe to report to the client as "not done"."""


class NotLeaderError(ProposalDroppedError):
    """This node is not the leader. ``leader`` is the known leader id or ``NO_NODE``."""

    def __init__(self, message: str, leader: int) -> None:
        super().__init__(message)
        self.leader = leader


class StorageError(RaftError):
    """Base class of the errors a `Storage` raises for out-of-range requests."""


class CompactedError(StorageError):
    """The requested index is below the first available index (compacted away)."""


class UnavailableError(StorageError):
    """The requested index is above the last index in storage."""


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than the current one was offered to storage."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """Storage cannot produce a snapshot right now; the leader retries later."""
