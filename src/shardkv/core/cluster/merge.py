"""Merging two shards: the log commands that fold a retired shard into a survivor.

Like a split, a merge moves no data: every key is stored under its slot, and a merge only
happens between shards whose replicas are on the same nodes (the scheduler co-locates them
first), so on every node the absorbed shard's keys are already where the survivor reads.
What must not happen is a replica of the absorbed shard applying an old write into slots
the survivor already serves. So the hand-off has two log commands, in two logs:

1. ``RETIRE <survivor> <epoch>`` in the absorbed shard's log. Each of its replicas, on
   applying it, stops serving for good (its scope becomes empty at ``epoch``; every later
   client command, expiry sweep or split in its log is refused). Its data stays on disk,
   untouched from then on.
2. Once every replica of the absorbed shard reported it applied the retire (status
   polls), the placement group orders ``ABSORB <absorbed> <epoch> <slot ranges>`` in the
   survivor's log. Each survivor replica, on applying it, first checks that its node's
   replica of the absorbed shard has retired (if not, it waits: it applies nothing more
   until that replica caught up with its own log), then takes the slots, the expiry
   entries and the counters of the absorbed shard, in one write with its applied index.

The placement group then records the survivor with both shards' slots and drops the
absorbed shard (whose retired replicas are then destroyed). The survivor's epoch after the
absorb is above every epoch the absorbed shard served at, so no slot is ever served by two
groups at one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shardkv.core.kv.scope import KeyScope, SlotRange

#: ``\x00retire``: a log-only command (the prefix keeps it out of the client table).
RETIRE_COMMAND: Final = b"\x00retire"
#: ``\x00absorb``: likewise.
ABSORB_COMMAND: Final = b"\x00absorb"


class MergeCommandError(ValueError):
    """A retire or absorb command that does not parse. The message says which field."""


@dataclass(frozen=True, slots=True)
class RetireOrder:
    """Shard ``source`` stops serving at ``epoch``, to be absorbed by ``survivor``."""

    source: int
    survivor: int
    epoch: int


@dataclass(frozen=True, slots=True)
class AbsorbOrder:
    """Shard ``survivor`` takes the retired shard ``source``'s slots at ``epoch``."""

    survivor: int
    source: int
    epoch: int
    source_ranges: tuple[SlotRange, ...]

    @property
    def source_scope(self) -> KeyScope:
        return KeyScope(self.source, self.source_ranges)


def retire_command(order: RetireOrder) -> list[bytes]:
    return [RETIRE_COMMAND, str(order.survivor).encode(), str(order.epoch).encode()]


def decode_retire_command(source: int, args: list[bytes]) -> RetireOrder:
    """The retire order of shard ``source``'s command. Raises `MergeCommandError`."""
    if len(args) != 3 or args[0] != RETIRE_COMMAND:
        raise MergeCommandError(f"a retire command has 3 fields, got {len(args)}")
    try:
        order = RetireOrder(source, int(args[1]), int(args[2]))
    except ValueError as exc:
        raise MergeCommandError(f"unreadable retire command: {exc}") from exc
    if order.survivor in (0, source):
        raise MergeCommandError(f"shard {source} cannot retire into shard {order.survivor}")
    return order


def absorb_command(order: AbsorbOrder) -> list[bytes]:
    ranges = ",".join(f"{first}-{last}" for first, last in order.source_ranges)
    return [ABSORB_COMMAND, str(order.source).encode(), str(order.epoch).encode(), ranges.encode()]


def decode_absorb_command(survivor: int, args: list[bytes]) -> AbsorbOrder:
    """The absorb order of shard ``survivor``'s command. Raises `MergeCommandError`."""
    if len(args) != 4 or args[0] != ABSORB_COMMAND:
        raise MergeCommandError(f"an absorb command has 4 fields, got {len(args)}")
    try:
        ranges = tuple(
            (int(first), int(last))
            for first, last in (part.split(b"-") for part in args[3].split(b",") if part)
        )
        order = AbsorbOrder(survivor, int(args[1]), int(args[2]), ranges)
        KeyScope(order.source, ranges)  # raises on bad ranges
    except ValueError as exc:
        raise MergeCommandError(f"unreadable absorb command: {exc}") from exc
    if order.source in (0, survivor) or not ranges:
        raise MergeCommandError(f"shard {survivor} cannot absorb shard {order.source}")
    return order
