"""What the state machine's commands share: Redis 7's error replies (strings use them too), the
SCAN-family options, and the deterministic random choices of HRANDFIELD, SRANDMEMBER,
SPOP and ZRANDMEMBER.

Randomness: the state machine may not use global randomness (replicas must agree, and the
core is deterministic). A command that picks at random draws from a ``Random`` seeded by
the leader-stamped time and the key, so every replica picks the same members.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from random import Random
from typing import Final

from shardkv.core.kv.glob import GlobPattern
from shardkv.core.resp.replies import ErrorReply, Reply

ERR_SYNTAX: Final = ErrorReply("ERR syntax error")
ERR_NOT_INTEGER: Final = ErrorReply("ERR value is not an integer or out of range")
ERR_NOT_FLOAT: Final = ErrorReply("ERR value is not a valid float")
ERR_OVERFLOW: Final = ErrorReply("ERR increment or decrement would overflow")
ERR_NAN_OR_INFINITY: Final = ErrorReply("ERR increment would produce NaN or Infinity")
ERR_WRONGTYPE: Final = ErrorReply(
    "WRONGTYPE Operation against a key holding the wrong kind of value"
)
ERR_INVALID_CURSOR: Final = ErrorReply("ERR invalid cursor")
ERR_NOT_POSITIVE: Final = ErrorReply("ERR value is out of range, must be positive")
ERR_NO_SUCH_KEY: Final = ErrorReply("ERR no such key")
ERR_INDEX_OUT_OF_RANGE: Final = ErrorReply("ERR index out of range")

#: Redis answers HSCAN/SSCAN/ZSCAN of a collection this small in one reply (cursor 0),
#: as it does for its compact encodings (listpack, intset: at most 128 entries).
SCAN_WHOLE_MEMBERS: Final = 128


def arity_error(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


def seeded_random(now_ms: int, key: bytes) -> Random:
    """The random source of a command on ``key`` stamped ``now_ms``: the same on every
    replica."""
    return Random(now_ms.to_bytes(8, "big", signed=True) + key)


def parse_i64(text: bytes) -> int | None:
    """Redis's strict integer parsing (see ``machine.parse_i64``)."""
    from shardkv.core.kv.machine import parse_i64 as parse

    return parse(text)


def scan_cursor(text: bytes) -> int | ErrorReply:
    """The cursor of HSCAN/SSCAN/ZSCAN (checked before the key, as Redis does)."""
    from shardkv.core.kv.machine import parse_scan_cursor

    cursor = parse_scan_cursor(text)
    return ERR_INVALID_CURSOR if cursor is None else cursor


def scan_page(
    args: list[bytes],
    cursor: int,
    size: int,
    entries: Iterator[tuple[bytes, Sequence[Reply]]],
) -> Reply:
    """The reply of HSCAN/SSCAN/ZSCAN over a collection of ``size`` members whose
    ``entries`` (member, reply items) come in a stable order: the options ``args[3:]``
    (MATCH, COUNT) are checked, then a small collection is returned whole (cursor 0), a
    big one ``COUNT`` members from position ``cursor`` on. The cursor is a position, so
    members added or removed during an iteration may shift it (Redis guarantees more:
    every member present throughout is returned)."""
    count = 10
    matcher: GlobPattern | None = None
    i = 3
    while i < len(args):
        option = args[i].lower()
        if i + 1 >= len(args):
            return ERR_SYNTAX
        if option == b"count":
            parsed = parse_i64(args[i + 1])
            if parsed is None:
                return ERR_NOT_INTEGER
            if parsed < 1:
                return ERR_SYNTAX
            count = parsed
        elif option == b"match":
            matcher = None if args[i + 1] == b"*" else GlobPattern(args[i + 1])
        else:
            return ERR_SYNTAX
        i += 2
    if size <= SCAN_WHOLE_MEMBERS:
        start, stop, next_cursor = 0, size, 0
    else:
        start, stop = cursor, cursor + count
        next_cursor = stop if stop < size else 0
    items: list[Reply] = []
    for position, (member, reply_items) in enumerate(entries):
        if position >= stop:
            break
        if position >= start and (matcher is None or matcher.matches(member)):
            items.extend(reply_items)
    return [str(next_cursor).encode(), items]
