"""The unstable tail of the Raft log: entries (and possibly a snapshot) not yet durable.

Owns only in-memory bookkeeping of what still has to be written and what has been handed
to the caller for writing ("in progress"). It never reads storage.
"""

from __future__ import annotations

from shardkv.core.raft.errors import RaftInvariantError
from shardkv.core.raft.types import Entry, Snapshot


class Unstable:
    """Entries ``offset ..`` and an optional incoming snapshot, not yet persisted.

    ``entries[i]`` has index ``offset + i``. Entries below ``offset_in_progress`` were
    handed out in a `Ready` and are being written; entries from it on are not yet handed
    out. Invariants (checked by `check_invariants`):

    - ``offset <= offset_in_progress <= offset + len(entries)``
    - if ``snapshot`` is set: ``offset == snapshot.metadata.index + 1``
    - ``snapshot_in_progress`` implies ``snapshot`` is set
    """

    __slots__ = ("entries", "offset", "offset_in_progress", "snapshot", "snapshot_in_progress")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.snapshot_in_progress = False
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset

    def maybe_first_index(self) -> int | None:
        """First log index if an unstable snapshot defines it, else ``None``."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """Last log index if the unstable part defines it, else ``None``."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, index: int) -> int | None:
        """Term of ``index`` if the unstable part knows it, else ``None``."""
        position = index - self.offset
        if position < 0:
            snapshot = self.snapshot
            if snapshot is not None and snapshot.metadata.index == index:
                return snapshot.metadata.term
            return None
        if position < len(self.entries):
            return self.entries[position].term
        return None

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        start = self.offset_in_progress - self.offset
        if start >= len(self.entries):
            return []
        return self.entries[start:]

    def next_snapshot(self) -> Snapshot | None:
        """The snapshot if it has not been handed out for persistence yet."""
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """Mark everything currently unstable as handed out (being persisted)."""
        if self.entries:
            self.offset_in_progress = self.offset + len(self.entries)
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (whose term was ``term`` when handed out) are durable.

        Ignored if that entry has since been replaced by a different term (the newer one
        will be persisted by a later Ready) or is no longer unstable."""
        if self.maybe_term(index) != term or index < self.offset:
            return
        count = index + 1 - self.offset
        del self.entries[:count]
        self.offset = index + 1
        if self.offset_in_progress < self.offset:
            self.offset_in_progress = self.offset

    def stable_snap_to(self, index: int) -> None:
        """The unstable snapshot at ``index`` is durable."""
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot`` (a follower catching up by snapshot)."""
        self.offset = snapshot.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snapshot
        self.snapshot_in_progress = False

    def truncate_and_append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append ``entries``, first discarding any existing entries from
        ``entries[0].index`` on. The caller guarantees contiguity with the log."""
        first = entries[0].index
        end = self.offset + len(self.entries)
        if first == end:
            self.entries.extend(entries)
        elif first <= self.offset:
            # Replaces the whole unstable part (and a suffix of storage, which the next
            # persist overwrites).
            self.offset = first
            self.offset_in_progress = first
            self.entries = list(entries)
        elif first < end:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)
            if self.offset_in_progress > first:
                self.offset_in_progress = first
        else:
            raise RaftInvariantError(f"unstable append leaves a gap: end {end}, appending {first}")

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``; the caller checks ``offset <= lo <= hi <= end``."""
        return self.entries[lo - self.offset : hi - self.offset]

    def check_invariants(self) -> None:
        if not (self.offset <= self.offset_in_progress <= self.offset + len(self.entries)):
            raise RaftInvariantError(
                f"unstable: offset {self.offset}, in progress {self.offset_in_progress}, "
                f"{len(self.entries)} entries"
            )
        if self.snapshot is not None and self.offset != self.snapshot.metadata.index + 1:
            raise RaftInvariantError(
                f"unstable: offset {self.offset} does not follow snapshot "
                f"{self.snapshot.metadata.index}"
            )
        if self.snapshot_in_progress and self.snapshot is None:
            raise RaftInvariantError("unstable: snapshot in progress without a snapshot")
        for position, entry in enumerate(self.entries):
            if entry.index != self.offset + position:
                raise RaftInvariantError(
                    f"unstable: entry {entry.index} at position of {self.offset + position}"
                )
