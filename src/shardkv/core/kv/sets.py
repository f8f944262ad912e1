"""Set commands (Redis 7.0 semantics and error texts) over `Collection`.

Each member is one SUB record ``prefix + FAMILY_MEMBER + member -> b""``; members come
back in byte order (Redis's order is its encoding's and unspecified).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from shardkv.core.kv.codec import FAMILY_MEMBER, TYPE_SET
from shardkv.core.kv.collection import Collection
from shardkv.core.kv.typed import (
    ERR_NOT_INTEGER,
    ERR_NOT_POSITIVE,
    ERR_SYNTAX,
    parse_i64,
    scan_cursor,
    scan_page,
    seeded_random,
)
from shardkv.core.resp.replies import ErrorReply, Reply, SetReply

if TYPE_CHECKING:
    from shardkv.core.kv.machine import KVStateMachine

_M: Final = FAMILY_MEMBER


def _open(m: KVStateMachine, key: bytes, now_ms: int, create: bool = False) -> Reply | Collection:
    return m.open_collection(key, TYPE_SET, now_ms, create=create)


def _members(c: Collection) -> list[bytes]:
    return [member for member, _ in c.items(_M)]


def sadd(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    added = sum(c.put(_M, member, b"") for member in args[2:])
    if added:
        c.save()
    return added


def srem(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    removed = sum(c.remove(_M, member) is not None for member in args[2:])
    if removed:
        c.save()
    return removed


def sismember(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return int(c.get(_M, args[2]) is not None)


def smismember(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return [0] * (len(args) - 2)
    if not isinstance(c, Collection):
        return c
    return [int(c.get(_M, member) is not None) for member in args[2:]]


def smembers(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return SetReply(())
    if not isinstance(c, Collection):
        return c
    return SetReply(tuple(_members(c)))


def scard(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return c.size


def spop(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    count: int | None = None
    if len(args) == 3:
        count = parse_i64(args[2])
        if count is None:
            return ERR_NOT_INTEGER
        if count < 0:
            return ERR_NOT_POSITIVE
    elif len(args) > 3:
        return ERR_SYNTAX
    c = _open(m, args[1], now_ms)
    if c is None:
        return None if count is None else SetReply(())
    if not isinstance(c, Collection):
        return c
    rng = seeded_random(now_ms, args[1])
    members = _members(c)
    if count is None:
        chosen = [rng.choice(members)]
    else:
        chosen = members if count >= len(members) else rng.sample(members, count)
    for member in chosen:
        c.remove(_M, member)
    if chosen:
        c.save()
    return chosen[0] if count is None else SetReply(tuple(chosen))


def srandmember(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    count: int | None = None
    if len(args) == 3:
        count = parse_i64(args[2])
        if count is None:
            return ERR_NOT_INTEGER
    elif len(args) > 3:
        return ERR_SYNTAX
    c = _open(m, args[1], now_ms)
    if c is None:
        return None if count is None else []
    if not isinstance(c, Collection):
        return c
    rng = seeded_random(now_ms, args[1])
    members = _members(c)
    if count is None:
        return rng.choice(members)
    if count >= 0:
        return tuple(members if count >= len(members) else rng.sample(members, count))
    return tuple(rng.choice(members) for _ in range(-count))


def _combine(
    m: KVStateMachine, keys: list[bytes], now_ms: int, how: str
) -> list[bytes] | ErrorReply:
    """The members of SINTER/SUNION/SDIFF of ``keys`` (a missing key is an empty set),
    sorted; WRONGTYPE if any key holds another type."""
    sets: list[set[bytes]] = []
    for key in keys:
        c = _open(m, key, now_ms)
        if isinstance(c, ErrorReply):
            return c
        sets.append(set() if c is None else set(_members(c)))  # type: ignore[arg-type]
    result = sets[0]
    for other in sets[1:]:
        if how == "inter":
            result &= other
        elif how == "union":
            result |= other
        else:
            result -= other
    return sorted(result)


def _combine_command(how: str) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        members = _combine(m, args[1:], now_ms, how)
        if isinstance(members, ErrorReply):
            return members
        return SetReply(tuple(members))

    return handler


def _store_command(how: str) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        members = _combine(m, args[2:], now_ms, how)
        if isinstance(members, ErrorReply):
            return members
        m.delete_key(args[1])
        if members:
            c = _open(m, args[1], now_ms, create=True)
            assert isinstance(c, Collection)
            for member in members:
                c.put(_M, member, b"")
            c.save()
        return len(members)

    return handler


def smove(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    source = _open(m, args[1], now_ms)
    destination = _open(m, args[2], now_ms)
    if source is None:
        return 0
    if not isinstance(source, Collection):
        return source
    if destination is not None and not isinstance(destination, Collection):
        return destination
    member = args[3]
    if args[1] == args[2]:
        return int(source.get(_M, member) is not None)
    if source.remove(_M, member) is None:
        return 0
    source.save()
    if destination is None:
        destination = _open(m, args[2], now_ms, create=True)
        assert isinstance(destination, Collection)
    destination.put(_M, member, b"")
    destination.save()
    return 1


def sscan(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    cursor = scan_cursor(args[2])
    if isinstance(cursor, ErrorReply):
        return cursor
    c = _open(m, args[1], now_ms)
    if c is None:
        return [b"0", []]
    if not isinstance(c, Collection):
        return c
    entries = ((member, [member]) for member, _ in c.items(_M))
    return scan_page(args, cursor, c.size, entries)


if TYPE_CHECKING:
    from collections.abc import Callable

    Handler = Callable[[KVStateMachine, list[bytes], int], Reply]

HANDLERS: Final = {
    "sadd": sadd,
    "srem": srem,
    "sismember": sismember,
    "smismember": smismember,
    "smembers": smembers,
    "scard": scard,
    "spop": spop,
    "srandmember": srandmember,
    "sinter": _combine_command("inter"),
    "sunion": _combine_command("union"),
    "sdiff": _combine_command("diff"),
    "sinterstore": _store_command("inter"),
    "sunionstore": _store_command("union"),
    "sdiffstore": _store_command("diff"),
    "smove": smove,
    "sscan": sscan,
}
