"""Splitting a shard: the log command that cuts a shard's slots in two.

A split moves no data. Every key is stored under its slot (``core/kv/codec.py``), and
every replica of a shard holds all of the shard's slots, so a shard becomes two by a
command in its own log: at the entry ``SPLIT <child> <first slot> <epoch> <voters>
<learners>``, each replica of the parent, deterministically,

1. stops serving the slots from ``first slot`` on (its scope shrinks, its epoch becomes
   ``epoch``),
2. hands those slots' expiry entries and counts to the child group, and
3. starts a replica of the child group on the same node, with the parent's members
   (carried in the command, so every replica starts the child alike), whose Raft log
   begins at `SPLIT_INIT_INDEX` holding the data already on disk.

Every client command before the entry ran in the parent; every one after it, for those
slots, runs in the child (the parent answers ``-TRYAGAIN`` until clients learn the new
map). No slot is ever served by both groups at one epoch.

Who decides (the placement group's leader, which puts a `SplitOrder` on the parent's map
entry), who proposes the command (the parent's leader) and who records the result (the
placement group's leader again, once the child reports a leader) live in the node driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shardkv.core.cluster.slots import SLOT_COUNT

#: ``\x00split``: a log-only command (the prefix keeps it out of the client table).
SPLIT_COMMAND: Final = b"\x00split"
#: Index and term at which a child group's log starts: its state at that index is what
#: the parent left on disk (every child replica starts there alike).
SPLIT_INIT_INDEX: Final = 5
SPLIT_INIT_TERM: Final = 5
#: A child's first snapshot data until its first real snapshot is built (its data is
#: already on disk; the driver builds the snapshot after the child's first entry).
#: Storage answers "temporarily unavailable" for it: no replica is sent a placeholder.
SPLIT_PENDING_SNAPSHOT_DATA: Final = b"\x00split-pending"


class SplitCommandError(ValueError):
    """A split command that does not parse. The message says which field."""


@dataclass(frozen=True, slots=True)
class SplitOrder:
    """Cut shard ``parent`` before ``first_slot``: the slots from there on become shard
    ``child``. ``epoch`` is both shards' epoch after the cut."""

    parent: int
    child: int
    first_slot: int
    epoch: int

    def __post_init__(self) -> None:
        if not 0 < self.first_slot < SLOT_COUNT:
            raise SplitCommandError(f"split slot must be in 1..{SLOT_COUNT - 1}")
        if self.child == self.parent or self.child < 1:
            raise SplitCommandError(f"bad child shard id {self.child}")


def split_command(
    order: SplitOrder, voters: tuple[int, ...], learners: tuple[int, ...]
) -> list[bytes]:
    """The log command carrying ``order`` and the parent's members at proposal time."""
    return [
        SPLIT_COMMAND,
        str(order.child).encode(),
        str(order.first_slot).encode(),
        str(order.epoch).encode(),
        ",".join(map(str, voters)).encode(),
        ",".join(map(str, learners)).encode(),
    ]


def decode_split_command(
    parent: int, args: list[bytes]
) -> tuple[SplitOrder, tuple[int, ...], tuple[int, ...]]:
    """(order, voters, learners) of a split command of shard ``parent``. Raises
    `SplitCommandError`."""
    if len(args) != 6 or args[0] != SPLIT_COMMAND:
        raise SplitCommandError(f"a split command has 6 fields, got {len(args)}")
    try:
        order = SplitOrder(parent, int(args[1]), int(args[2]), int(args[3]))
        voters = tuple(int(n) for n in args[4].split(b",") if n)
        learners = tuple(int(n) for n in args[5].split(b",") if n)
    except ValueError as exc:
        raise SplitCommandError(f"unreadable split command: {exc}") from exc
    if not voters:
        raise SplitCommandError("a split command names no voters")
    return order, voters, learners
