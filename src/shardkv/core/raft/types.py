"""Plain data exchanged between the Raft core and its caller.

Everything here is an immutable value (frozen, slotted dataclass or enum) with no behaviour
beyond small conversions, so the transport can map it one-to-one onto protobuf messages and
the storage layer onto its own encoding. None of these types may hold references to live
core objects.

Node ids are positive integers; ``NO_NODE`` (0) means "nobody" (no vote, no known leader).
Indexes and terms are non-negative integers; index 0 / term 0 stand for "before the log".
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

NO_NODE: Final = 0
"""The id that means "no node": no vote cast, no leader known."""

NO_LIMIT: Final = 1 << 62
"""A byte budget that never limits (used for ``max_bytes`` arguments)."""

ENTRY_OVERHEAD_BYTES: Final = 16
"""Bytes charged per entry on top of its payload when enforcing byte budgets.

It approximates the encoded size of term + index + type so that budgets also bound streams
of empty entries."""


class MessageType(enum.IntEnum):
    """The kind of a `Message`. Only peer-to-peer types exist: local inputs (tick,
    campaign, propose, ...) are `RawNode` method calls, not messages."""

    APP = 1
    APP_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9
    TIMEOUT_NOW = 10
    READ_INDEX = 11
    READ_INDEX_RESP = 12

    @property
    def label(self) -> str:
        """etcd-style display name, e.g. ``MsgAppResp``."""
        return _MESSAGE_LABELS[self]


_MESSAGE_LABELS: Final = {
    t: "Msg" + "".join(part.capitalize() for part in t.name.split("_")) for t in MessageType
}

AFTER_PERSIST_MESSAGE_TYPES: Final = frozenset(
    {MessageType.APP_RESP, MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP}
)
"""Messages that acknowledge durable state (a vote, appended entries): the core puts them
in `Ready.messages_after_persist`, never in `Ready.messages`."""


class EntryType(enum.IntEnum):
    """What an entry's ``data`` holds: an opaque command, or an encoded `ConfChange`."""

    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``data`` is opaque to Raft for ``NORMAL`` entries and an encoded
    `ConfChange` for ``CONF_CHANGE`` entries. A leader appends one empty ``NORMAL`` entry
    when it takes office; the state machine must treat empty data as a no-op."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


def entry_size_bytes(entry: Entry) -> int:
    """The size charged for ``entry`` against byte budgets (payload + fixed overhead)."""
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class HardState:
    """State that must be durable before messages depending on it are sent.

    ``term`` and ``vote`` must never go back on disk; ``commit`` may be persisted lazily
    (it is recomputed from the quorum after a restart) but never above the persisted log.
    """

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


EMPTY_HARD_STATE: Final = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    """A group's membership: voters decide elections and commits, learners only receive
    the log. Both tuples are sorted and disjoint."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    @staticmethod
    def of(
        voters: tuple[int, ...] | list[int] | frozenset[int] | set[int],
        learners: tuple[int, ...] | list[int] | frozenset[int] | set[int] = (),
    ) -> ConfState:
        """Build a normalised (sorted, de-duplicated) ConfState."""
        return ConfState(tuple(sorted(set(voters))), tuple(sorted(set(learners))))

    def is_member(self, node_id: int) -> bool:
        return node_id in self.voters or node_id in self.learners


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Which log prefix a snapshot replaces: everything up to and including ``index``
    (whose entry had ``term``), and the membership in force at that index."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = ConfState()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image at ``metadata.index``; ``data`` is opaque to Raft."""

    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT: Final = Snapshot()


class ConfChangeType(enum.IntEnum):
    """A single-server membership change.

    ``ADD_NODE`` adds a voter or promotes a learner; ``ADD_LEARNER_NODE`` adds a learner or
    demotes a (non-leader) voter; ``REMOVE_NODE`` removes a voter or learner.
    """

    ADD_NODE = 0
    ADD_LEARNER_NODE = 1
    REMOVE_NODE = 2


_CONF_CHANGE_HEADER: Final = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change proposal. ``context`` is opaque (e.g. the new node's address)
    and travels with the committed entry to every replica."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        """Deterministic encoding stored in the ``data`` of a ``CONF_CHANGE`` entry."""
        return _CONF_CHANGE_HEADER.pack(int(self.type), self.node_id) + self.context

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        """Inverse of `encode`. Raises ``ValueError`` on malformed data."""
        if len(data) < _CONF_CHANGE_HEADER.size:
            raise ValueError(f"conf change entry too short: {len(data)} bytes")
        kind, node_id = _CONF_CHANGE_HEADER.unpack_from(data)
        return ConfChange(ConfChangeType(kind), node_id, bytes(data[_CONF_CHANGE_HEADER.size :]))


@dataclass(frozen=True, slots=True)
class Message:
    """A Raft message. Field meaning by type (as in etcd):

    - ``APP``: ``index``/``log_term`` identify the entry preceding ``entries``; ``commit`` is
      the leader's commit index.
    - ``APP_RESP``: ``index`` is the last index now matching (accept) or the rejected
      ``index`` (reject, with ``reject_hint``/``log_term`` the follower's best guess of the
      last matching (index, term)).
    - ``VOTE``/``PRE_VOTE``: ``index``/``log_term`` describe the candidate's last entry;
      ``context`` is ``CAMPAIGN_TRANSFER`` for leadership transfers.
    - ``HEARTBEAT``/``HEARTBEAT_RESP``: ``commit`` and a ReadIndex ``context`` echo.
    - ``SNAP``: ``snapshot`` to install.
    - ``READ_INDEX``/``READ_INDEX_RESP``: ``context`` is the caller's request id and
      ``index`` the read index in the response. A forwarded ``READ_INDEX`` keeps the
      original requester in ``from_`` and has ``term == 0`` (as in etcd), so the leader
      answers the requester directly.
    - ``TIMEOUT_NOW``: the leader asks ``to`` to campaign at once (leadership transfer).

    ``group_id`` names the Raft group; a `RawNode` refuses messages of other groups.
    """

    type: MessageType
    group_id: int
    to: int
    from_: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


CAMPAIGN_TRANSFER: Final = b"CampaignTransfer"
"""Vote-request context marking an election started by a leadership transfer; it bypasses
the check-quorum lease on the voters."""


class Role(enum.Enum):
    """The role a node plays in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting (not persisted): who leads and our role."""

    lead: int
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A completed ReadIndex request: once the local state machine has applied ``index``,
    a read identified by ``request_ctx`` may be served linearizably."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class Proposed:
    """Where accepted proposals landed: entries ``first_index..last_index`` of ``term``.

    If the entry later applied at one of these indexes has a different term, the proposal
    was definitely not committed (it was overwritten by another leader)."""

    term: int
    first_index: int
    last_index: int
