"""Hash commands (Redis 7.0 semantics and error texts) over `Collection`.

Each field is one SUB record ``prefix + FAMILY_FIELD + field -> value``; fields come back
in byte order (Redis's order is its encoding's and unspecified).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from shardkv.core.kv.codec import FAMILY_FIELD, TYPE_HASH
from shardkv.core.kv.collection import Collection
from shardkv.core.kv.longdouble import add_long_double, format_long_double, parse_long_double
from shardkv.core.kv.typed import (
    ERR_NAN_OR_INFINITY,
    ERR_NOT_FLOAT,
    ERR_NOT_INTEGER,
    ERR_OVERFLOW,
    ERR_SYNTAX,
    arity_error,
    parse_i64,
    scan_cursor,
    scan_page,
    seeded_random,
)
from shardkv.core.resp.replies import OK, ErrorReply, MapReply, PairsReply, Reply

if TYPE_CHECKING:
    from shardkv.core.kv.machine import KVStateMachine

_F: Final = FAMILY_FIELD
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_ERR_HASH_NOT_INTEGER: Final = ErrorReply("ERR hash value is not an integer")
_ERR_HASH_NOT_FLOAT: Final = ErrorReply("ERR hash value is not a float")
_ERR_INCR_NAN: Final = ErrorReply("ERR value is NaN or Infinity")


def _open(m: KVStateMachine, key: bytes, now_ms: int, create: bool = False) -> Reply | Collection:
    return m.open_collection(key, TYPE_HASH, now_ms, create=create)


def hset(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    if len(args) % 2 == 1:
        return arity_error(args[0].decode("latin-1").lower())
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    added = 0
    for i in range(2, len(args), 2):
        added += c.put(_F, args[i], args[i + 1])
    c.save()
    return OK if args[0].lower() == b"hmset" else added


def hsetnx(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    if c.get(_F, args[2]) is not None:
        return 0
    c.put(_F, args[2], args[3])
    c.save()
    return 1


def hget(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if not isinstance(c, Collection):
        return c
    return c.get(_F, args[2])


def hmget(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return [None] * (len(args) - 2)
    if not isinstance(c, Collection):
        return c
    return [c.get(_F, field) for field in args[2:]]


def hgetall(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return MapReply(())
    if not isinstance(c, Collection):
        return c
    return MapReply(tuple(c.items(_F)))


def hkeys(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return []
    if not isinstance(c, Collection):
        return c
    return [field for field, _ in c.items(_F)]


def hvals(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return []
    if not isinstance(c, Collection):
        return c
    return [value for _, value in c.items(_F)]


def hdel(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    removed = sum(c.remove(_F, field) is not None for field in args[2:])
    if removed:
        c.save()
    return removed


def hlen(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return c.size


def hexists(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return int(c.get(_F, args[2]) is not None)


def hstrlen(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    value = c.get(_F, args[2])
    return 0 if value is None else len(value)


def hincrby(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    increment = parse_i64(args[3])
    if increment is None:
        return ERR_NOT_INTEGER
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    current = 0
    old = c.get(_F, args[2])
    if old is not None:
        parsed = parse_i64(old)
        if parsed is None:
            return _ERR_HASH_NOT_INTEGER
        current = parsed
    result = current + increment
    if not _I64_MIN <= result <= _I64_MAX:
        return ERR_OVERFLOW
    c.put(_F, args[2], str(result).encode())
    c.save()
    return result


def hincrbyfloat(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    increment = parse_long_double(args[3])
    if increment is None:
        return ERR_NOT_FLOAT
    if isinstance(increment, float):
        return _ERR_INCR_NAN
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    current = parse_long_double(b"0")
    old = c.get(_F, args[2])
    if old is not None:
        current = parse_long_double(old)
        if current is None:
            return _ERR_HASH_NOT_FLOAT
    assert current is not None
    total = add_long_double(current, increment)
    if total is None:
        return ERR_NAN_OR_INFINITY
    text = format_long_double(total)
    c.put(_F, args[2], text)
    c.save()
    return text


def hscan(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    cursor = scan_cursor(args[2])
    if isinstance(cursor, ErrorReply):
        return cursor
    c = _open(m, args[1], now_ms)
    if c is None:
        return [b"0", []]
    if not isinstance(c, Collection):
        return c
    entries = ((field, [field, value]) for field, value in c.items(_F))
    return scan_page(args, cursor, c.size, entries)


def hrandfield(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    with_values = False
    count: int | None = None
    if len(args) >= 3:
        count = parse_i64(args[2])
        if count is None:
            return ERR_NOT_INTEGER
        if len(args) == 4 and args[3].lower() == b"withvalues":
            with_values = True
        elif len(args) >= 4:
            return ERR_SYNTAX
    c = _open(m, args[1], now_ms)
    if c is None:
        return None if count is None else []
    if not isinstance(c, Collection):
        return c
    rng = seeded_random(now_ms, args[1])
    fields = list(c.items(_F))
    if count is None:
        return rng.choice(fields)[0]
    if count >= 0:
        chosen = fields if count >= len(fields) else rng.sample(fields, count)
    else:
        chosen = [rng.choice(fields) for _ in range(-count)]
    if with_values:
        return PairsReply(tuple(chosen))
    return [field for field, _ in chosen]


HANDLERS: Final = {
    "hset": hset,
    "hmset": hset,
    "hsetnx": hsetnx,
    "hget": hget,
    "hmget": hmget,
    "hgetall": hgetall,
    "hdel": hdel,
    "hlen": hlen,
    "hexists": hexists,
    "hkeys": hkeys,
    "hvals": hvals,
    "hincrby": hincrby,
    "hincrbyfloat": hincrbyfloat,
    "hstrlen": hstrlen,
    "hscan": hscan,
    "hrandfield": hrandfield,
}
