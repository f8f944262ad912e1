"""The Raft log as one sequence: the durable part (`Storage`) plus the unstable tail.

Owns the commit and apply cursors. Never writes storage: durability is reported back by
`stable_to` / `stable_snap_to` after the caller persisted a `Ready`.
"""

from __future__ import annotations

from shardkv.core.raft.errors import (
    CompactedError,
    RaftInvariantError,
    StorageError,
    UnavailableError,
)
from shardkv.core.raft.log_unstable import Unstable
from shardkv.core.raft.storage import Storage, limit_size
from shardkv.core.raft.types import NO_LIMIT, Entry, Snapshot


class RaftLog:
    """Storage + unstable tail, with the cursors

    ``applied <= applying <= committed <= last_index()`` and
    ``first_index() - 1 <= applied`` (compaction only discards applied entries).

    ``applying`` is the last index handed to the caller for application (in a `Ready`
    not yet advanced); ``applied`` the last index the caller confirmed applied.
    """

    __slots__ = (
        "applied",
        "applying",
        "committed",
        "max_applying_bytes",
        "storage",
        "unstable",
    )

    def __init__(self, storage: Storage, max_applying_bytes: int = NO_LIMIT) -> None:
        self.storage = storage
        first_index = storage.first_index()
        last_index = storage.last_index()
        self.unstable = Unstable(last_index + 1)
        # The snapshot index is committed and applied by definition.
        self.committed = first_index - 1  # invariant: applying <= committed <= last_index()
        self.applying = first_index - 1  # invariant: applied <= applying <= committed
        self.applied = first_index - 1  # invariant: first_index() - 1 <= applied
        self.max_applying_bytes = max_applying_bytes

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"applying={self.applying}, unstable.offset={self.unstable.offset}, "
            f"unstable.in_progress={self.unstable.offset_in_progress}, "
            f"len(unstable)={len(self.unstable.entries)})"
        )

    # -- shape ----------------------------------------------------------------------

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        if index is not None:
            return index
        return self.storage.first_index()

    def last_index(self) -> int:
        unstable = self.unstable
        if unstable.entries:
            return unstable.offset + len(unstable.entries) - 1
        if unstable.snapshot is not None:
            return unstable.snapshot.metadata.index
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of ``index``; valid for ``first_index() - 1 <= index <= last_index()``.

        Raises `CompactedError` below and `UnavailableError` above that range."""
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        if index < self.first_index() - 1:
            raise CompactedError(f"term({index}): compacted, first index {self.first_index()}")
        if index > self.last_index():
            raise UnavailableError(f"term({index}): last index {self.last_index()}")
        return self.storage.term(index)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        """Whether the log holds an entry (or snapshot point) ``index`` with ``term``."""
        try:
            return self.term(index) == term
        except StorageError:
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (``last_index``, ``last_term``) is at least as up to date
        as ours (Raft section 5.4.1)."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------------

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry of ``entries`` that is missing or has another term in
        our log; 0 if all of them are present.

        By the log matching property, if the last new entry is present with the same term,
        every earlier one is too, which makes the common cases O(1)."""
        if not entries:
            return 0
        first = entries[0]
        last_index = self.last_index()
        if first.index > last_index:
            return first.index
        last = entries[-1]
        if self.match_term(last.index, last.term):
            return 0
        for entry in entries:
            if entry.index > last_index or not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with ``i <= index`` and ``t <= term`` in our log, or the first
        index below which we know nothing (term 0). Used for fast back-off on rejection."""
        while index > 0:
            try:
                our_term = self.term(index)
            except StorageError:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def maybe_append(
        self,
        prev_index: int,
        prev_term: int,
        commit: int,
        entries: tuple[Entry, ...] | list[Entry],
    ) -> int | None:
        """Follower side of AppendEntries: if our log matches at (``prev_index``,
        ``prev_term``), append ``entries`` (truncating a conflicting suffix), raise commit to
        ``min(commit, last new index)`` and return that last new index; else ``None``."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise RaftInvariantError(
                    f"entry {conflict} conflicts with committed entry (committed {self.committed})"
                )
            start = conflict - (prev_index + 1)
            self.append(entries[start:] if start else entries)
        self.commit_to(min(commit, last_new))
        return last_new

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Append ``entries`` (possibly replacing an uncommitted suffix); returns the new
        last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise RaftInvariantError(
                f"append after {after} would overwrite committed entries up to {self.committed}"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- reading --------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``[lo, hi)`` limited to ``max_bytes`` (at least one entry if lo < hi).

        Raises `CompactedError` if ``lo < first_index()``."""
        if lo > hi:
            raise RaftInvariantError(f"invalid slice [{lo}, {hi})")
        if lo < self.first_index():
            raise CompactedError(f"slice [{lo}, {hi}): first index {self.first_index()}")
        if hi > self.last_index() + 1:
            raise RaftInvariantError(f"slice [{lo}, {hi}) beyond last index {self.last_index()}")
        if lo == hi:
            return []
        offset = self.unstable.offset
        if lo >= offset:
            return limit_size(self.unstable.slice(lo, hi), max_bytes)
        cut = min(hi, offset)
        entries = self.storage.entries(lo, cut, max_bytes)
        if hi > cut and len(entries) == cut - lo:
            entries = entries + self.unstable.slice(cut, hi)
            entries = limit_size(entries, max_bytes)
        return entries

    def entries_from(self, index: int, max_bytes: int) -> list[Entry]:
        """Entries from ``index`` to the end, limited to ``max_bytes``."""
        last_index = self.last_index()
        if index > last_index:
            return []
        return self.slice(index, last_index + 1, max_bytes)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- commit and apply --------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        """Raise the commit index to ``index`` (never lowers it)."""
        if index > self.committed:
            if index > self.last_index():
                raise RaftInvariantError(
                    f"commit {index} is out of range [last index {self.last_index()}]"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if that entry is of ``term`` (Raft 5.4.2: a leader only
        counts replicas of entries of its own term)."""
        if index > self.committed and self.term(index) == term:
            self.committed = index
            return True
        return False

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def has_next_committed_entries(self) -> bool:
        if self.unstable.snapshot is not None:
            # Entries above a snapshot wait until the snapshot is installed.
            return False
        return self.committed > self.applying

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet handed out for application, within
        ``max_applying_bytes``. May include entries handed out for persistence in the same
        `Ready` (the caller persists before applying)."""
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applying + 1, self.first_index())
        hi = self.committed + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_bytes)

    def accept_applying(self, index: int) -> None:
        """Entries up to ``index`` were handed out for application."""
        if index > self.applying:
            self.applying = index

    def applied_to(self, index: int) -> None:
        """The caller applied entries up to ``index``."""
        if index == 0 or index <= self.applied:
            return
        if index > self.committed:
            raise RaftInvariantError(f"applied {index} is above committed {self.committed}")
        self.applied = index
        if self.applying < index:
            self.applying = index

    # -- durability -----------------------------------------------------------------

    def next_unstable_entries(self) -> list[Entry]:
        return self.unstable.next_entries()

    def has_next_unstable_entries(self) -> bool:
        unstable = self.unstable
        return unstable.offset_in_progress < unstable.offset + len(unstable.entries)

    def next_unstable_snapshot(self) -> Snapshot | None:
        return self.unstable.next_snapshot()

    def accept_unstable(self) -> None:
        self.unstable.accept_in_progress()

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log with ``snapshot`` (the caller checked it is newer than commit)."""
        self.committed = snapshot.metadata.index
        self.unstable.restore(snapshot)

    def check_invariants(self) -> None:
        """Raise `RaftInvariantError` unless the cursor invariants hold."""
        self.unstable.check_invariants()
        first_index = self.first_index()
        last_index = self.last_index()
        if not (self.applied <= self.applying <= self.committed <= last_index):
            raise RaftInvariantError(
                f"log cursors out of order: applied {self.applied}, applying {self.applying}, "
                f"committed {self.committed}, last {last_index}"
            )
        if self.unstable.snapshot is None and self.applied < first_index - 1:
            raise RaftInvariantError(
                f"applied {self.applied} is below the compacted prefix (first {first_index})"
            )
