"""Which part of the keyspace one KV state machine owns: its group and its slot ranges.

Several shards (Raft groups) share one engine on a node. Each shard's state machine reads
and writes only the DATA keys of its own slots, its own EXPIRY index entries and its own
counters, so a snapshot, a FLUSHALL or a SCAN of one shard never touches another's data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shardkv.core.cluster.slots import SLOT_COUNT, key_slot
from shardkv.core.kv.codec import MAX_GROUP_ID

SlotRange = tuple[int, int]
"""Inclusive ``(first, last)`` slots, ``0 <= first <= last < SLOT_COUNT``."""


@dataclass(frozen=True, slots=True)
class KeyScope:
    """The group id and the sorted, disjoint, inclusive slot ranges a machine owns.

    Raises ``ValueError`` on construction for a group id that does not fit the storage
    layout (``0..codec.MAX_GROUP_ID``) or ranges that are out of bounds, unsorted or
    overlapping: that is a bug in whoever computed the shard map, never client input.
    No ranges at all is allowed (a group whose slots all moved away owns nothing).
    """

    group_id: int
    slot_ranges: tuple[SlotRange, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.group_id <= MAX_GROUP_ID:
            raise ValueError(f"group id must be in 0..{MAX_GROUP_ID}, got {self.group_id}")
        # Lists are accepted (a shard map parsed from JSON) and stored as tuples, so that
        # scopes compare and hash by value.
        ranges = tuple((first, last) for first, last in self.slot_ranges)
        object.__setattr__(self, "slot_ranges", ranges)
        previous = -1
        for first, last in ranges:
            if not (0 <= first <= last < SLOT_COUNT) or first <= previous:
                raise ValueError(f"bad slot ranges {ranges!r}")
            previous = last

    @classmethod
    def whole(cls, group_id: int = 1) -> KeyScope:
        """Every slot: a node with one group (standalone, or a one-shard cluster)."""
        return cls(group_id, ((0, SLOT_COUNT - 1),))

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slot_ranges)

    def owns_key(self, key: bytes) -> bool:
        """Whether the user key ``key`` hashes to one of this scope's slots."""
        return self.owns(key_slot(key))

    def slot_mask(self) -> bytes:
        """``SLOT_COUNT`` bytes, 1 at each owned slot and 0 elsewhere: an O(1) ``owns``
        for hot paths (build it once, index it by slot)."""
        mask = bytearray(SLOT_COUNT)
        for first, last in self.slot_ranges:
            mask[first : last + 1] = b"\x01" * (last - first + 1)
        return bytes(mask)

    def ranges_from(self, slot: int) -> tuple[SlotRange, ...]:
        """The owned slots at or after ``slot``, as ranges (the first one clipped to start at
        ``slot`` if ``slot`` falls inside it)."""
        return tuple((max(first, slot), last) for first, last in self.slot_ranges if last >= slot)

    def describe(self) -> str:
        """The slot ranges for messages: ``"0-99,200,300-16383"`` (``"none"`` if empty)."""
        if not self.slot_ranges:
            return "none"
        return ",".join(
            str(first) if first == last else f"{first}-{last}" for first, last in self.slot_ranges
        )

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slot_ranges)


def split_scope(scope: KeyScope, first_slot: int, child_id: int) -> tuple[KeyScope, KeyScope]:
    """``scope`` cut before ``first_slot``: (what the parent keeps, the slots at and after
    ``first_slot`` as the scope of group ``child_id``). Raises ``ValueError`` unless both
    parts own at least one slot and the child is another group."""
    if child_id == scope.group_id:
        raise ValueError(f"a shard cannot split into itself (group {child_id})")
    kept = tuple(
        (first, min(last, first_slot - 1))
        for first, last in scope.slot_ranges
        if first < first_slot
    )
    moved = scope.ranges_from(first_slot)
    if not kept or not moved:
        raise ValueError(f"slot {first_slot} does not cut slots {scope.describe()} in two")
    return KeyScope(scope.group_id, kept), KeyScope(child_id, moved)


def merge_scopes(survivor: KeyScope, absorbed: KeyScope) -> KeyScope:
    """The scope of ``survivor``'s group owning both scopes' slots (touching ranges are
    joined). Raises ``ValueError`` if the scopes share a slot."""
    joined: list[SlotRange] = []
    for first, last in sorted((*survivor.slot_ranges, *absorbed.slot_ranges)):
        if joined and joined[-1][1] >= first:
            raise ValueError(f"scopes {survivor.describe()} and {absorbed.describe()} overlap")
        if joined and joined[-1][1] + 1 == first:
            joined[-1] = (joined[-1][0], last)
        else:
            joined.append((first, last))
    return KeyScope(survivor.group_id, tuple(joined))


def encode_scope_record(
    epoch: int, slot_ranges: tuple[SlotRange, ...], changed_at: int = 0
) -> bytes:
    """A shard's applied scope as its own log set it: ``{"epoch": E, "ranges": [[a, b]]}``,
    and the log index of the entry that changed its slots (``"changed_at"``; absent for
    a shard's first scope and a retire: no snapshot before it is wrong to send)."""
    doc: dict[str, object] = {"epoch": epoch, "ranges": [list(r) for r in slot_ranges]}
    if changed_at:
        doc["changed_at"] = changed_at
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def scope_record_changed_at(data: bytes) -> int:
    """The ``changed_at`` index of a scope record (0 if none). Raises ``ValueError``."""
    try:
        return int(json.loads(data).get("changed_at", 0))
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"unreadable scope record {data[:80]!r}") from exc


def decode_scope_record(data: bytes) -> tuple[int, tuple[SlotRange, ...]]:
    """Inverse of `encode_scope_record`. Raises ``ValueError`` on anything else."""
    try:
        doc = json.loads(data)
        return int(doc["epoch"]), tuple((int(a), int(b)) for a, b in doc["ranges"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"unreadable scope record {data[:80]!r}") from exc
