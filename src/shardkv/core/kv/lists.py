"""List commands (Redis 7.0 semantics and error texts) over `Collection`.

Element ``i`` (from the left, 0-based) is the SUB record ``FAMILY_LIST + position`` with
position ``head + i`` (8 bytes, big-endian); the metadata keeps ``head`` and ``tail``
(one past the last), so pushes and pops at either end, LINDEX, LSET and LRANGE touch only
the elements they name. LREM, LINSERT and LTRIM rewrite the positions after the change
(O(n), as in Redis for a big list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from shardkv.core.kv.codec import FAMILY_LIST, TYPE_LIST, encode_position
from shardkv.core.kv.collection import Collection
from shardkv.core.kv.typed import (
    ERR_INDEX_OUT_OF_RANGE,
    ERR_NO_SUCH_KEY,
    ERR_NOT_INTEGER,
    ERR_NOT_POSITIVE,
    ERR_SYNTAX,
    ERR_WRONGTYPE,
    parse_i64,
)
from shardkv.core.resp.replies import NULL_ARRAY, OK, ErrorReply, Reply

if TYPE_CHECKING:
    from shardkv.core.kv.machine import KVStateMachine

    Handler = Callable[[KVStateMachine, list[bytes], int], Reply]

_L: Final = FAMILY_LIST
_ERR_RANK_ZERO: Final = ErrorReply(
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or"
    " use negative to start from the end of the list"
)
_ERR_COUNT_NEGATIVE: Final = ErrorReply("ERR COUNT can't be negative")
_ERR_MAXLEN_NEGATIVE: Final = ErrorReply("ERR MAXLEN can't be negative")


def _open(m: KVStateMachine, key: bytes, now_ms: int, create: bool = False) -> Reply | Collection:
    return m.open_collection(key, TYPE_LIST, now_ms, create=create)


def _elements(c: Collection, first: int = 0, last: int | None = None) -> list[bytes]:
    """Elements ``first`` .. ``last`` (inclusive, already within bounds)."""
    stop = c.tail if last is None else c.head + last + 1
    start = encode_position(c.head + first)
    return [value for _, value in c.items(_L, start, encode_position(stop))]


def _push(c: Collection, element: bytes, left: bool) -> None:
    if left:
        c.head -= 1
        c.put(_L, encode_position(c.head), element)
    else:
        c.put(_L, encode_position(c.tail), element)
        c.tail += 1


def _pop(c: Collection, left: bool) -> bytes:
    if left:
        value = c.remove(_L, encode_position(c.head))
        c.head += 1
    else:
        c.tail -= 1
        value = c.remove(_L, encode_position(c.tail))
    assert value is not None
    return value


def _rewrite(c: Collection, elements: list[bytes]) -> None:
    """Replace every element by ``elements`` (from the same head)."""
    for position, _ in list(c.items(_L)):
        c.remove(_L, position)
    c.tail = c.head
    for element in elements:
        _push(c, element, left=False)


def _push_command(left: bool, only_existing: bool) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        c = _open(m, args[1], now_ms, create=not only_existing)
        if c is None:
            return 0
        if not isinstance(c, Collection):
            return c
        for element in args[2:]:
            _push(c, element, left)
        c.save()
        return c.size

    return handler


def _pop_command(left: bool) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
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
            return None if count is None else NULL_ARRAY
        if not isinstance(c, Collection):
            return c
        if count is None:
            value = _pop(c, left)
            c.save()
            return value
        popped = [_pop(c, left) for _ in range(min(count, c.size))]
        if popped:
            c.save()
        return tuple(popped)

    return handler


def llen(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return c.size


def _window(size: int, start: int, end: int) -> tuple[int, int] | None:
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


def lrange(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    start = parse_i64(args[2])
    end = parse_i64(args[3])
    if start is None or end is None:
        return ERR_NOT_INTEGER
    c = _open(m, args[1], now_ms)
    if c is None:
        return []
    if not isinstance(c, Collection):
        return c
    window = _window(c.size, start, end)
    return () if window is None else tuple(_elements(c, *window))


def _index(c: Collection, text: bytes) -> int | ErrorReply | None:
    index = parse_i64(text)
    if index is None:
        return ERR_NOT_INTEGER
    if index < 0:
        index += c.size
    return index if 0 <= index < c.size else None


def lindex(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if not isinstance(c, Collection):
        return c
    index = _index(c, args[2])
    if index is None or isinstance(index, ErrorReply):
        return index
    return c.get(_L, encode_position(c.head + index))


def lset(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return ERR_NO_SUCH_KEY
    if not isinstance(c, Collection):
        return c
    index = _index(c, args[2])
    if isinstance(index, ErrorReply):
        return index
    if index is None:
        return ERR_INDEX_OUT_OF_RANGE
    c.put(_L, encode_position(c.head + index), args[3])
    c.save()
    return OK


def lrem(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    count = parse_i64(args[2])
    if count is None:
        return ERR_NOT_INTEGER
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    elements = _elements(c)
    target = args[3]
    removed = 0
    limit = abs(count) if count else len(elements)
    order = range(len(elements) - 1, -1, -1) if count < 0 else range(len(elements))
    drop: set[int] = set()
    for i in order:
        if removed >= limit:
            break
        if elements[i] == target:
            drop.add(i)
            removed += 1
    if removed:
        _rewrite(c, [e for i, e in enumerate(elements) if i not in drop])
        c.save()
    return removed


def ltrim(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    start = parse_i64(args[2])
    end = parse_i64(args[3])
    if start is None or end is None:
        return ERR_NOT_INTEGER
    c = _open(m, args[1], now_ms)
    if c is None:
        return OK
    if not isinstance(c, Collection):
        return c
    window = _window(c.size, start, end)
    keep_from, keep_to = (c.size, c.size - 1) if window is None else window
    for _ in range(keep_from):
        _pop(c, left=True)
    for _ in range(c.size - (keep_to - keep_from + 1)):
        _pop(c, left=False)
    c.save()
    return OK


def linsert(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    where = args[2].lower()
    if where not in (b"before", b"after"):
        return ERR_SYNTAX
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    elements = _elements(c)
    try:
        at = elements.index(args[3])
    except ValueError:
        return -1
    elements.insert(at if where == b"before" else at + 1, args[4])
    _rewrite(c, elements)
    c.save()
    return c.size


def lpos(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    rank = 1
    count: int | None = None
    maxlen = 0
    i = 3
    while i < len(args):
        option = args[i].lower()
        if i + 1 >= len(args):
            return ERR_SYNTAX
        value = parse_i64(args[i + 1])
        if option == b"rank":
            if value is None:
                return ERR_NOT_INTEGER
            if value == 0:
                return _ERR_RANK_ZERO
            rank = value
        elif option == b"count":
            if value is None:
                return ERR_NOT_INTEGER
            if value < 0:
                return _ERR_COUNT_NEGATIVE
            count = value
        elif option == b"maxlen":
            if value is None:
                return ERR_NOT_INTEGER
            if value < 0:
                return _ERR_MAXLEN_NEGATIVE
            maxlen = value
        else:
            return ERR_SYNTAX
        i += 2
    c = _open(m, args[1], now_ms)
    if c is None:
        return None if count is None else []
    if not isinstance(c, Collection):
        return c
    elements = _elements(c)
    indexes = range(len(elements)) if rank > 0 else range(len(elements) - 1, -1, -1)
    skip = abs(rank) - 1
    wanted = 1 if count is None else (count or len(elements))
    found: list[Reply] = []
    for checked, index in enumerate(indexes):
        if maxlen and checked >= maxlen:
            break
        if elements[index] != args[2]:
            continue
        if skip:
            skip -= 1
            continue
        found.append(index)
        if len(found) >= wanted:
            break
    if count is None:
        return found[0] if found else None
    return found


def _move(
    m: KVStateMachine, source: bytes, target: bytes, left_from: bool, left_to: bool, now_ms: int
) -> Reply:
    c = _open(m, source, now_ms)
    if not isinstance(c, Collection):
        return c
    if m.type_of(target, now_ms) not in (None, TYPE_LIST):
        return ERR_WRONGTYPE
    value = _pop(c, left_from)
    c.save()
    d = _open(m, target, now_ms, create=True)
    assert isinstance(d, Collection)
    _push(d, value, left_to)
    d.save()
    return value


def _side(word: bytes) -> bool | None:
    lowered = word.lower()
    if lowered == b"left":
        return True
    if lowered == b"right":
        return False
    return None


def lmove(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    left_from = _side(args[3])
    left_to = _side(args[4])
    if left_from is None or left_to is None:
        return ERR_SYNTAX
    return _move(m, args[1], args[2], left_from, left_to, now_ms)


def rpoplpush(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    return _move(m, args[1], args[2], False, True, now_ms)


HANDLERS: Final = {
    "lpush": _push_command(True, False),
    "rpush": _push_command(False, False),
    "lpushx": _push_command(True, True),
    "rpushx": _push_command(False, True),
    "lpop": _pop_command(True),
    "rpop": _pop_command(False),
    "llen": llen,
    "lrange": lrange,
    "lindex": lindex,
    "lset": lset,
    "lrem": lrem,
    "ltrim": ltrim,
    "linsert": linsert,
    "lpos": lpos,
    "lmove": lmove,
    "rpoplpush": rpoplpush,
}
