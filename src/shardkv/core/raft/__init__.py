"""Raft consensus as a pure, deterministic state machine (etcd-io/raft's RawNode design).

This package does the algorithm only. The caller owns the disk, the network, the clock and
the state machine; the core owns terms, votes, the log cursors and what to send to whom.
Nothing here does I/O, reads a clock or uses global randomness.

Driving one replica (see `RawNode.ready` for the exact contract)::

    storage = MemoryStorage.bootstrap(ConfState.of([1, 2, 3]))   # or the RocksDB one
    node = RawNode(Config(node_id=1, group_id=7), storage, random.Random(seed))
    loop:
        node.tick()                       # every tick interval
        node.step(message)                # for every message received for (group 7, node 1)
        node.propose(b"cmd")              # leader only; NotLeaderError otherwise
        if node.has_ready():
            rd = node.ready()
            send(rd.messages)                             # may go at once
            storage.persist_ready(rd)                     # snapshot, entries, hard state; fsync
            send(rd.messages_after_persist)               # only once durable
            install(rd.snapshot); apply(rd.committed_entries); serve(rd.read_states)
            node.advance(rd)

Public API:

- `RawNode(config, storage, rng, *, on_event=None)` with inputs ``tick()``, ``campaign()``,
  ``step(message)``, ``propose(data) -> Proposed``, ``propose_many(batch) -> Proposed``,
  ``propose_conf_change(change) -> Proposed``, ``read_index(context)``,
  ``transfer_leader(node_id)``, ``report_unreachable(node_id)``,
  ``report_snapshot(node_id, success=...)``; outputs ``has_ready()``, ``ready() -> Ready``,
  ``advance(ready)``; inspection ``status()``, ``conf_state()``, ``check_invariants()``,
  ``node_id``, ``group_id``, ``term``, ``lead``, ``role``.
- `Config`: ids, tick-based timeouts, every queue/window bound, ``pre_vote``,
  ``check_quorum``, ``applied_index`` for restarts.
- `Ready`, `Status`, `ProgressStatus`.
- Data: `Message`, `MessageType`, `Entry`, `EntryType`, `HardState`, `ConfState`,
  `ConfChange`, `ConfChangeType`, `Snapshot`, `SnapshotMetadata`, `SoftState`, `Role`,
  `ReadState`, `Proposed`, `NO_NODE`.
- Storage: the `Storage` protocol (``initial_state``, ``entries``, ``term``,
  ``first_index``, ``last_index``, ``snapshot``) and `MemoryStorage` (adds
  ``bootstrap``, ``append``, ``set_hard_state``, ``apply_snapshot``,
  ``create_snapshot(index, conf_state, data)``, ``compact(index)``, ``persist_ready``).
- Errors: `RaftError` > `RaftUsageError` > `WrongGroupError`; `ProposalDroppedError` >
  `NotLeaderError`; `StorageError` > `CompactedError`, `UnavailableError`,
  `SnapshotOutOfDateError`, `SnapshotTemporarilyUnavailableError`;
  `RaftInvariantError`; `InvalidTransitionError`.

Features: randomized election timeouts, pre-vote, check-quorum (with the election lease),
an empty entry on election, flow-controlled replication (bytes per message, inflight
window, probe/replicate/snapshot progress), fast conflict back-off, commit only by
counting entries of the current term, snapshots and compaction, ReadIndex (safe mode),
leadership transfer, learners, single-server membership changes applied at apply time
(why single-server: see ``raft.py``).

Membership: a change takes effect on each replica when its entry is applied (inside
``advance``); ``conf_state()`` then reports it. A leader that applies its own removal steps
down; a removed replica stays an idle follower that never campaigns, and the shell should
destroy it once ``node_id`` is no longer in ``conf_state()``. A new replica starts from an
empty `MemoryStorage` (no configuration), is added as a learner, and is caught up by
snapshot and log before being promoted.

Snapshots and compaction are driven by the caller: after applying index ``i``, call
``storage.create_snapshot(i, node.conf_state(), data)`` then ``storage.compact(j)`` for
some ``j <= i``. A leader whose follower needs compacted entries sends it
``storage.snapshot()``.
"""

from shardkv.core.raft.errors import (
    CompactedError,
    InvalidTransitionError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    RaftInvariantError,
    RaftUsageError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    StorageError,
    UnavailableError,
    WrongGroupError,
)
from shardkv.core.raft.progress import ProgressState
from shardkv.core.raft.raft import Config, EventSink
from shardkv.core.raft.rawnode import ProgressStatus, RawNode, Ready, Status
from shardkv.core.raft.storage import MemoryStorage, Storage
from shardkv.core.raft.types import (
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
    SnapshotMetadata,
    SoftState,
)

__all__ = [
    "NO_NODE",
    "CompactedError",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "EventSink",
    "HardState",
    "InvalidTransitionError",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeaderError",
    "ProgressState",
    "ProgressStatus",
    "ProposalDroppedError",
    "Proposed",
    "RaftError",
    "RaftInvariantError",
    "RaftUsageError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "Status",
    "Storage",
    "StorageError",
    "UnavailableError",
    "WrongGroupError",
]
