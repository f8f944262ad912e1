"""Sorted-set commands (Redis 7.0 semantics and error texts) over `Collection`.

Two SUB records per member: ``FAMILY_MEMBER + member -> score`` (8 bytes, `encode_score`)
and the score index ``FAMILY_SCORE + score + member -> b""``, which orders members by
(score, member) as Redis does, so ranges by score walk the index and ranges by rank count
along it (O(rank), where Redis's skiplist is O(log n)). Scores are replied with Redis
7.0's ``%.17g``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from shardkv.core.kv.codec import (
    FAMILY_MEMBER,
    FAMILY_SCORE,
    TYPE_SET,
    TYPE_ZSET,
    decode_score,
    encode_score,
)
from shardkv.core.kv.collection import Collection
from shardkv.core.kv.typed import (
    ERR_NOT_FLOAT,
    ERR_NOT_INTEGER,
    ERR_NOT_POSITIVE,
    ERR_SYNTAX,
    ERR_WRONGTYPE,
    parse_i64,
    scan_cursor,
    scan_page,
)
from shardkv.core.resp.replies import DoubleReply, ErrorReply, PairsReply, Reply

if TYPE_CHECKING:
    from shardkv.core.kv.machine import KVStateMachine

    Handler = Callable[[KVStateMachine, list[bytes], int], Reply]

_M: Final = FAMILY_MEMBER
_S: Final = FAMILY_SCORE
_FLOAT: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITY: Final = re.compile(rb"([+-]?)inf(?:inity)?", re.IGNORECASE)
_ERR_RANGE_FLOAT: Final = ErrorReply("ERR min or max is not a float")
_ERR_RANGE_LEX: Final = ErrorReply("ERR min or max not valid string range item")
_ERR_NAN: Final = ErrorReply("ERR resulting score is not a number (NaN)")
_ERR_XX_NX: Final = ErrorReply("ERR XX and NX options at the same time are not compatible")
_ERR_GT_LT_NX: Final = ErrorReply(
    "ERR GT, LT, and/or NX options at the same time are not compatible"
)
_ERR_INCR_PAIR: Final = ErrorReply("ERR INCR option supports a single increment-element pair")
_ERR_WEIGHT: Final = ErrorReply("ERR weight value is not a float")
_ERR_WITHSCORES_BYLEX: Final = ErrorReply(
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
)
_ERR_LIMIT: Final = ErrorReply(
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)


def parse_double(text: bytes) -> float | None:
    """Redis's ``string2d`` (``strtod``, whole string, no NaN), decimal and infinities."""
    if _FLOAT.fullmatch(text):
        value = float(text)
        return value
    match = _INFINITY.fullmatch(text)
    if match:
        return -math.inf if match.group(1) == b"-" else math.inf
    return None


def format_score(score: float) -> bytes:
    """Redis 7.0's reply text of a score."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score


def _double(score: float) -> DoubleReply:
    return DoubleReply(format_score(score))


def _open(m: KVStateMachine, key: bytes, now_ms: int, create: bool = False) -> Reply | Collection:
    return m.open_collection(key, TYPE_ZSET, now_ms, create=create)


def _score_of(c: Collection, member: bytes) -> float | None:
    raw = c.get(_M, member)
    return None if raw is None else decode_score(raw)


def _set_score(c: Collection, member: bytes, score: float, old: float | None) -> None:
    if old is not None:
        c.remove(_S, encode_score(old) + member, counts=False)
    raw = encode_score(score)
    c.put(_M, member, raw)
    c.put(_S, raw + member, b"", counts=False)


def _remove(c: Collection, member: bytes) -> bool:
    raw = c.remove(_M, member)
    if raw is None:
        return False
    c.remove(_S, raw + member, counts=False)
    return True


def _ordered(c: Collection, *, reverse: bool = False) -> Iterator[tuple[bytes, float]]:
    """(member, score) by (score, member), or the reverse."""
    for key, _ in c.items(_S, reverse=reverse):
        yield key[8:], decode_score(key)


def zadd(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    nx = xx = gt = lt = ch = incr = False
    i = 2
    while i < len(args):
        word = args[i].lower()
        if word == b"nx":
            nx = True
        elif word == b"xx":
            xx = True
        elif word == b"gt":
            gt = True
        elif word == b"lt":
            lt = True
        elif word == b"ch":
            ch = True
        elif word == b"incr":
            incr = True
        else:
            break
        i += 1
    elements = len(args) - i
    if elements % 2 or not elements:
        return ERR_SYNTAX
    if nx and xx:
        return _ERR_XX_NX
    if (gt and nx) or (lt and nx) or (gt and lt):
        return _ERR_GT_LT_NX
    if incr and elements > 2:
        return _ERR_INCR_PAIR
    pairs: list[tuple[float, bytes]] = []
    for j in range(i, len(args), 2):
        score = parse_double(args[j])
        if score is None:
            return ERR_NOT_FLOAT
        pairs.append((score, args[j + 1]))
    c = _open(m, args[1], now_ms, create=not xx)
    if c is None:
        return None if incr else 0
    if not isinstance(c, Collection):
        return c
    added = updated = 0
    result: float | None = None
    for score, member in pairs:
        current = _score_of(c, member)
        if current is None:
            if xx:
                continue
            _set_score(c, member, score, None)
            added += 1
            result = score
            continue
        if nx:
            continue
        if incr:
            score += current
            if math.isnan(score):
                return _ERR_NAN
        if (lt and score >= current) or (gt and score <= current):
            continue
        result = score
        if score != current:
            _set_score(c, member, score, current)
            updated += 1
    if added or updated:
        c.save()
    if incr:
        return None if result is None else _double(result)
    return added + updated if ch else added


def zincrby(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    increment = parse_double(args[2])
    if increment is None:
        return ERR_NOT_FLOAT
    c = _open(m, args[1], now_ms, create=True)
    if not isinstance(c, Collection):
        return c
    current = _score_of(c, args[3])
    score = increment + (current or 0.0)
    if math.isnan(score):
        return _ERR_NAN
    if score != current:
        _set_score(c, args[3], score, current)
        c.save()
    return _double(score)


def zrem(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    removed = sum(_remove(c, member) for member in args[2:])
    if removed:
        c.save()
    return removed


def zscore(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if not isinstance(c, Collection):
        return c
    score = _score_of(c, args[2])
    return None if score is None else _double(score)


def zmscore(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return [None] * (len(args) - 2)
    if not isinstance(c, Collection):
        return c
    scores = (_score_of(c, member) for member in args[2:])
    return [None if s is None else _double(s) for s in scores]


def zcard(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return c.size


# -- ranges -------------------------------------------------------------------------------


class _ScoreRange:
    __slots__ = ("max", "max_open", "min", "min_open")

    def __init__(self, low: float, low_open: bool, high: float, high_open: bool) -> None:
        self.min, self.min_open, self.max, self.max_open = low, low_open, high, high_open

    def above_min(self, score: float) -> bool:
        return score > self.min if self.min_open else score >= self.min

    def below_max(self, score: float) -> bool:
        return score < self.max if self.max_open else score <= self.max


def _score_bound(text: bytes) -> tuple[float, bool] | None:
    exclusive = text.startswith(b"(")
    value = parse_double(text[1:] if exclusive else text)
    if value is None:
        return None
    return value, exclusive


def _parse_score_range(low: bytes, high: bytes) -> _ScoreRange | None:
    lo = _score_bound(low)
    hi = _score_bound(high)
    if lo is None or hi is None:
        return None
    return _ScoreRange(lo[0], lo[1], hi[0], hi[1])


def _lex_bound(text: bytes) -> _LexBound | None:
    if text == b"+":
        return None, False, "+"
    if text == b"-":
        return None, False, "-"
    if text[:1] == b"(":
        return text[1:], True, ""
    if text[:1] == b"[":
        return text[1:], False, ""
    return None


_LexBound = tuple[bytes | None, bool, str]


def _rank_slice(size: int, start: int, end: int) -> tuple[int, int] | None:
    """Redis's rank normalisation: ``(first, last)`` inclusive, or None if empty."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


class _RangeRequest:
    __slots__ = ("by", "count", "high", "limited", "low", "offset", "reverse", "withscores")

    def __init__(self) -> None:
        self.by = "rank"
        self.reverse = False
        self.withscores = False
        self.limited = False
        self.offset = 0
        self.count = -1
        self.low = b""
        self.high = b""


def _parse_range(
    args: list[bytes], first: int, by: str, reverse: bool, *, store: bool
) -> _RangeRequest | ErrorReply:
    """Options of ZRANGE-family commands from ``args[first + 2:]``; ``by``/``reverse`` fixed
    by the legacy commands (``"auto"`` lets ZRANGE/ZRANGESTORE choose)."""
    request = _RangeRequest()
    request.reverse = reverse
    auto = by == "auto"
    request.by = "rank" if auto else by
    j = first + 2
    while j < len(args):
        word = args[j].lower()
        if word == b"withscores" and not store:
            request.withscores = True
        elif word == b"limit" and j + 2 < len(args):
            offset = parse_i64(args[j + 1])
            count = parse_i64(args[j + 2])
            if offset is None or count is None:
                return ERR_NOT_INTEGER
            request.limited = True
            request.offset, request.count = offset, count
            j += 2
        elif auto and word == b"byscore":
            request.by = "score"
        elif auto and word == b"bylex":
            request.by = "lex"
        elif auto and word == b"rev":
            request.reverse = True
        else:
            return ERR_SYNTAX
        j += 1
    if request.withscores and request.by == "lex":
        return _ERR_WITHSCORES_BYLEX
    if request.limited and request.by == "rank":
        return _ERR_LIMIT
    low, high = args[first], args[first + 1]
    if request.reverse and request.by != "rank":
        low, high = high, low
    request.low, request.high = low, high
    return request


def _select(c: Collection, request: _RangeRequest) -> list[tuple[bytes, float]] | ErrorReply:
    if request.by == "rank":
        start = parse_i64(request.low)
        end = parse_i64(request.high)
        if start is None or end is None:
            return ERR_NOT_INTEGER
        window = _rank_slice(c.size, start, end)
        if window is None:
            return []
        chosen: list[tuple[bytes, float]] = []
        for position, item in enumerate(_ordered(c, reverse=request.reverse)):
            if position > window[1]:
                break
            if position >= window[0]:
                chosen.append(item)
        return chosen
    if request.by == "score":
        score_range = _parse_score_range(request.low, request.high)
        if score_range is None:
            return _ERR_RANGE_FLOAT
        items = _in_score_range(c, score_range, request.reverse)
    else:
        low = _lex_bound(request.low)
        high = _lex_bound(request.high)
        if low is None or high is None:
            return _ERR_RANGE_LEX
        items = _in_lex_range(c, low, high, request.reverse)
    offset, count = request.offset, request.count
    if offset < 0:
        return []
    out: list[tuple[bytes, float]] = []
    for item in items:
        if offset:
            offset -= 1
            continue
        if count == 0:
            break
        out.append(item)
        count -= 1
    return out


def _in_score_range(
    c: Collection, score_range: _ScoreRange, reverse: bool
) -> Iterator[tuple[bytes, float]]:
    for member, score in _ordered(c, reverse=reverse):
        inside_far = score_range.above_min(score) if reverse else score_range.below_max(score)
        if not inside_far:
            return  # past the far end: scores are ordered
        if score_range.above_min(score) and score_range.below_max(score):
            yield member, score


def _in_lex_range(
    c: Collection, low: _LexBound, high: _LexBound, reverse: bool
) -> Iterator[tuple[bytes, float]]:
    """Members in a lex range, walked in score order as Redis walks its sorted set: from
    the first member within the near bound, while members stay within the far bound
    (only the far bound is checked from then on, as Redis does). With
    equal scores (the case BYLEX is meant for) that is exactly the members in the range;
    with mixed scores Redis's answer is unspecified, and this gives the answer Redis 7.0
    gives for a small sorted set (its listpack walk)."""
    lowest = next(_ordered(c), None)
    highest = next(_ordered(c, reverse=True), None)
    if lowest is None or highest is None:
        return
    # Redis first checks that the range can hold anything at all (zzlIsInLexRange).
    if not _lex_above_min(highest[0], low) or not _lex_below_max(lowest[0], high):
        return
    started = False
    for member, score in _ordered(c, reverse=reverse):
        if not started:
            near_ok = _lex_below_max(member, high) if reverse else _lex_above_min(member, low)
            if not near_ok:
                continue
            started = True
        if not (_lex_above_min(member, low) if reverse else _lex_below_max(member, high)):
            return
        yield member, score


def _lex_above_min(member: bytes, low: _LexBound) -> bool:
    value, exclusive, kind = low
    if kind == "-":
        return True
    if kind == "+":
        return False
    assert value is not None
    return member > value if exclusive else member >= value


def _lex_below_max(member: bytes, high: _LexBound) -> bool:
    value, exclusive, kind = high
    if kind == "+":
        return True
    if kind == "-":
        return False
    assert value is not None
    return member < value if exclusive else member <= value


def _range_reply(items: list[tuple[bytes, float]], withscores: bool) -> Reply:
    if withscores:
        return PairsReply(tuple((member, _double(score)) for member, score in items))
    return [member for member, _ in items]


def _validate_range_bounds(request: _RangeRequest) -> ErrorReply | None:
    """Range texts are checked before the key is looked up, as Redis does."""
    if request.by == "rank":
        if parse_i64(request.low) is None or parse_i64(request.high) is None:
            return ERR_NOT_INTEGER
    elif request.by == "score":
        if _parse_score_range(request.low, request.high) is None:
            return _ERR_RANGE_FLOAT
    elif _lex_bound(request.low) is None or _lex_bound(request.high) is None:
        return _ERR_RANGE_LEX
    return None


def _range_command(by: str, reverse: bool) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        request = _parse_range(args, 2, by, reverse, store=False)
        if isinstance(request, ErrorReply):
            return request
        error = _validate_range_bounds(request)
        if error is not None:
            return error
        c = _open(m, args[1], now_ms)
        if c is None:
            return []
        if not isinstance(c, Collection):
            return c
        items = _select(c, request)
        if isinstance(items, ErrorReply):
            return items
        return _range_reply(items, request.withscores)

    return handler


def zrangestore(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    request = _parse_range(args, 3, "auto", False, store=True)
    if isinstance(request, ErrorReply):
        return request
    error = _validate_range_bounds(request)
    if error is not None:
        return error
    source = _open(m, args[2], now_ms)
    if source is not None and not isinstance(source, Collection):
        return source
    items: list[tuple[bytes, float]] | ErrorReply = []
    if source is not None:
        items = _select(source, request)
    if isinstance(items, ErrorReply):
        return items
    _store(m, args[1], now_ms, items)
    return len(items)


def _store(m: KVStateMachine, key: bytes, now_ms: int, items: list[tuple[bytes, float]]) -> None:
    m.delete_key(key)
    if not items:
        return
    c = _open(m, key, now_ms, create=True)
    assert isinstance(c, Collection)
    for member, score in items:
        _set_score(c, member, score, None)
    c.save()


def zcount(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    score_range = _parse_score_range(args[2], args[3])
    if score_range is None:
        return _ERR_RANGE_FLOAT
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    return sum(
        1
        for _, score in _ordered(c)
        if score_range.above_min(score) and score_range.below_max(score)
    )


def _rank_command(reverse: bool) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        c = _open(m, args[1], now_ms)
        if not isinstance(c, Collection):
            return c
        if c.get(_M, args[2]) is None:
            return None
        for position, (member, _) in enumerate(_ordered(c, reverse=reverse)):
            if member == args[2]:
                return position
        return None

    return handler


def _pop_command(reverse: bool) -> Handler:
    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        count = 1
        if len(args) == 3:
            parsed = parse_i64(args[2])
            if parsed is None:
                return ERR_NOT_INTEGER
            if parsed < 0:
                return ERR_NOT_POSITIVE
            count = parsed
        elif len(args) > 3:
            return ERR_SYNTAX
        c = _open(m, args[1], now_ms)
        if c is None:
            return []
        if not isinstance(c, Collection):
            return c
        popped: list[tuple[bytes, float]] = []
        for item in _ordered(c, reverse=reverse):
            if len(popped) >= count:
                break
            popped.append(item)
        for member, _ in popped:
            _remove(c, member)
        if popped:
            c.save()
        if len(args) == 2:
            return [x for member, score in popped for x in (member, _double(score))]
        return PairsReply(tuple((member, _double(score)) for member, score in popped))

    return handler


def zremrangebyscore(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    request = _RangeRequest()
    request.by, request.low, request.high = "score", args[2], args[3]
    return _remove_range(m, args, now_ms, request)


def zremrangebyrank(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    request = _RangeRequest()
    request.low, request.high = args[2], args[3]
    return _remove_range(m, args, now_ms, request)


def _remove_range(
    m: KVStateMachine, args: list[bytes], now_ms: int, request: _RangeRequest
) -> Reply:
    error = _validate_range_bounds(request)
    if error is not None:
        return error
    c = _open(m, args[1], now_ms)
    if c is None:
        return 0
    if not isinstance(c, Collection):
        return c
    items = _select(c, request)
    if isinstance(items, ErrorReply):
        return items
    for member, _ in items:
        _remove(c, member)
    if items:
        c.save()
    return len(items)


def zscan(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
    cursor = scan_cursor(args[2])
    if isinstance(cursor, ErrorReply):
        return cursor
    c = _open(m, args[1], now_ms)
    if c is None:
        return [b"0", []]
    if not isinstance(c, Collection):
        return c
    entries = ((member, [member, format_score(score)]) for member, score in _ordered(c))
    return scan_page(args, cursor, c.size, entries)


def _combine_store(inter: bool) -> Handler:
    name = "zinterstore" if inter else "zunionstore"

    def handler(m: KVStateMachine, args: list[bytes], now_ms: int) -> Reply:
        numkeys = parse_i64(args[2])
        if numkeys is None:
            return ERR_NOT_INTEGER
        if numkeys < 1:
            return ErrorReply(f"ERR at least 1 input key is needed for '{name}' command")
        if numkeys > len(args) - 3:
            return ERR_SYNTAX
        keys = args[3 : 3 + numkeys]
        weights = [1.0] * numkeys
        aggregate = b"sum"
        j = 3 + numkeys
        while j < len(args):
            word = args[j].lower()
            if word == b"weights" and len(args) - j - 1 >= numkeys:
                for n in range(numkeys):
                    weight = parse_double(args[j + 1 + n])
                    if weight is None:
                        return _ERR_WEIGHT
                    weights[n] = weight
                j += numkeys + 1
            elif word == b"aggregate" and j + 1 < len(args):
                aggregate = args[j + 1].lower()
                if aggregate not in (b"sum", b"min", b"max"):
                    return ERR_SYNTAX
                j += 2
            else:
                return ERR_SYNTAX
        sources: list[dict[bytes, float]] = []
        for key in keys:
            type_tag = m.type_of(key, now_ms)
            if type_tag is None:
                sources.append({})
            elif type_tag == TYPE_ZSET:
                c = _open(m, key, now_ms)
                assert isinstance(c, Collection)
                sources.append({member: score for member, score in _ordered(c)})
            elif type_tag == TYPE_SET:
                s = m.open_collection(key, TYPE_SET, now_ms)
                assert isinstance(s, Collection)
                sources.append({member: 1.0 for member, _ in s.items(FAMILY_MEMBER)})
            else:
                return ERR_WRONGTYPE
        result: dict[bytes, float] = {}
        for n, source in enumerate(sources):
            if inter and n and not result:
                break
            weighted = {member: _weighted(score, weights[n]) for member, score in source.items()}
            if inter and n:
                result = {
                    member: _aggregate(result[member], score, aggregate)
                    for member, score in weighted.items()
                    if member in result
                }
            elif inter:
                result = weighted
            else:
                for member, score in weighted.items():
                    result[member] = (
                        _aggregate(result[member], score, aggregate) if member in result else score
                    )
        _store(m, args[1], now_ms, sorted(result.items()))
        return len(result)

    return handler


def _weighted(score: float, weight: float) -> float:
    value = score * weight
    return 0.0 if math.isnan(value) else value


def _aggregate(current: float, score: float, how: bytes) -> float:
    if how == b"sum":
        total = current + score
        return 0.0 if math.isnan(total) else total
    return min(current, score) if how == b"min" else max(current, score)


HANDLERS: Final = {
    "zadd": zadd,
    "zrem": zrem,
    "zscore": zscore,
    "zmscore": zmscore,
    "zincrby": zincrby,
    "zcard": zcard,
    "zcount": zcount,
    "zrank": _rank_command(False),
    "zrevrank": _rank_command(True),
    "zrange": _range_command("auto", False),
    "zrangestore": zrangestore,
    "zrangebyscore": _range_command("score", False),
    "zrevrangebyscore": _range_command("score", True),
    "zrangebylex": _range_command("lex", False),
    "zrevrange": _range_command("rank", True),
    "zpopmin": _pop_command(False),
    "zpopmax": _pop_command(True),
    "zremrangebyscore": zremrangebyscore,
    "zremrangebyrank": zremrangebyrank,
    "zscan": zscan,
    "zunionstore": _combine_store(False),
    "zinterstore": _combine_store(True),
}
