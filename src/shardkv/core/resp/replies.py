"""RESP2 reply values and their encoder (server side), plus the command encoder (client side).

A reply is a plain Python value, so command handlers build replies without ceremony:

=====================  ===================  ==========================================
Python value           RESP2 type           wire
=====================  ===================  ==========================================
``SimpleString(t)``    simple string        ``+t\\r\\n``
``ErrorReply(m)``      error                ``-m\\r\\n`` (CR/LF in ``m`` become spaces)
``int``                integer              ``:n\\r\\n`` (signed 64-bit)
``bytes``              bulk string          ``$len\\r\\n...\\r\\n``
``None``               null bulk string     ``$-1\\r\\n``
``list``/``tuple``     array (nested ok)    ``*n\\r\\n`` then each element
``NULL_ARRAY``         null array           ``*-1\\r\\n``
=====================  ===================  ==========================================

``str`` is refused (a handler must choose between a status and a binary-safe bulk), and
so is ``bool`` (an ``int`` subclass that is almost always a bug here): ``TypeError``.
``bytearray`` and ``memoryview`` are encoded as bulk strings, so a large value can be
written without first copying it into ``bytes``.

Text in :class:`SimpleString` and :class:`ErrorReply` is encoded as UTF-8 with
``surrogateescape``, so text decoded from arbitrary wire bytes by the reply parser
round-trips exactly. The encoding is computed once, when the value is built: replying with
a constant such as :data:`OK` is a single ``bytearray +=``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from ._decimal import LL_MAX, LL_MIN

__all__ = [
    "EMPTY_ARRAY",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BytesLike",
    "DoubleReply",
    "ErrorReply",
    "NullArray",
    "PairsReply",
    "Reply",
    "SetReply",
    "SimpleString",
    "encode_command",
    "encode_reply",
    "write_reply",
]


def _text_to_wire(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A lone surrogate that surrogateescape cannot map: keep the reply well-formed.
        return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class SimpleString:
    """A status reply, ``+text\\r\\n``.

    ``text`` must not contain CR or LF (``ValueError``): a status is one line, and silently
    changing it would hide a bug.
    """

    text: str
    _wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "\r" in self.text or "\n" in self.text:
            raise ValueError(f"SimpleString must not contain CR or LF: {self.text!r}")
        object.__setattr__(self, "_wire", b"+" + _text_to_wire(self.text) + b"\r\n")


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply, ``-message\\r\\n``.

    ``message`` starts with the error code, as in Redis: ``"ERR syntax error"``,
    ``"WRONGTYPE Operation against a key holding the wrong kind of value"``,
    ``"MOVED 3999 127.0.0.1:6381"``. CR and LF in it are sent as spaces, so no message can
    split the reply stream. ``message`` itself is kept as given.
    """

    message: str
    _wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.message.replace("\r", " ").replace("\n", " ")
        object.__setattr__(self, "_wire", b"-" + _text_to_wire(text) + b"\r\n")

    @property
    def code(self) -> str:
        """The first word of the message (``"ERR"``, ``"MOVED"``, ...)."""
        return self.message.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class MapReply:
    """A map: a flat ``[k1, v1, k2, v2, ...]`` array in RESP2, a ``%`` map in RESP3
    (what Redis sends for HELLO and CONFIG GET)."""

    items: tuple[tuple[Reply, Reply], ...]


@dataclass(frozen=True, slots=True)
class SetReply:
    """An unordered collection of members: an array in RESP2, a ``~`` set in RESP3 (what
    Redis sends for SMEMBERS, SINTER, ...)."""

    items: tuple[Reply, ...]


@dataclass(frozen=True, slots=True)
class DoubleReply:
    """A floating-point number: a bulk string in RESP2, a ``,`` double in RESP3 (what
    Redis sends for ZSCORE, ZINCRBY, ...). ``text`` is Redis's formatting of it."""

    text: bytes


@dataclass(frozen=True, slots=True)
class PairsReply:
    """Pairs such as ZRANGE ... WITHSCORES or HRANDFIELD ... WITHVALUES: one flat array in
    RESP2, an array of two-element arrays in RESP3."""

    items: tuple[tuple[Reply, Reply], ...]


class NullArray(enum.Enum):
    """Type of the :data:`NULL_ARRAY` sentinel (an enum, so type checkers narrow on it)."""

    NULL_ARRAY = "NULL_ARRAY"

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = NullArray.NULL_ARRAY
"""The null array, ``*-1\\r\\n`` (e.g. ``EXEC`` after a failed ``WATCH``)."""

Reply: TypeAlias = (
    SimpleString
    | ErrorReply
    | int
    | bytes
    | Literal[NullArray.NULL_ARRAY]
    | list["Reply"]
    | tuple["Reply", ...]
    | MapReply
    | SetReply
    | DoubleReply
    | PairsReply
    | None
)
"""Any RESP2 reply value; arrays nest."""

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""What the encoders accept as a bulk string (the reply parser always returns ``bytes``)."""

OK: Final = SimpleString("OK")
PONG: Final = SimpleString("PONG")
QUEUED: Final = SimpleString("QUEUED")
EMPTY_ARRAY: Final[tuple[Reply, ...]] = ()

# Bulk headers for common lengths, built once: indexing a tuple is cheaper than formatting.
_BULK_PREFIX_CACHED: Final = 1024
_BULK_PREFIXES: Final = tuple(b"$%d\r\n" % n for n in range(_BULK_PREFIX_CACHED))
_ARRAY_PREFIXES: Final = tuple(b"*%d\r\n" % n for n in range(_BULK_PREFIX_CACHED))
_SMALL_INTS: Final = tuple(b":%d\r\n" % n for n in range(_BULK_PREFIX_CACHED))
_NULL_BULK_WIRE: Final = b"$-1\r\n"
_NULL_ARRAY_WIRE: Final = b"*-1\r\n"


def write_reply(out: bytearray, reply: Reply | BytesLike) -> None:
    """Append the encoding of ``reply`` to ``out``.

    Raises ``TypeError`` for a value that is not a :data:`Reply` (``str``, ``bool``, ...)
    and ``ValueError`` for an ``int`` outside the signed 64-bit range. On error, ``out``
    may hold a partial encoding of an array: the caller must discard it.
    """
    # Exact-type dispatch first: this runs once per command on the server.
    kind = type(reply)
    if kind is bytes:
        size = len(reply)  # type: ignore[arg-type]
        out += _BULK_PREFIXES[size] if size < _BULK_PREFIX_CACHED else b"$%d\r\n" % size
        out += reply  # type: ignore[arg-type]
        out += b"\r\n"
    elif kind is SimpleString or kind is ErrorReply:
        out += reply._wire  # type: ignore[union-attr]
    elif reply is None:
        out += _NULL_BULK_WIRE
    elif kind is int:
        _write_int(out, reply)  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        _write_array(out, reply)  # type: ignore[arg-type]
    else:
        _write_other(out, reply)


def _write_int(out: bytearray, value: int) -> None:
    if 0 <= value < _BULK_PREFIX_CACHED:
        out += _SMALL_INTS[value]
    elif LL_MIN <= value <= LL_MAX:
        out += b":%d\r\n" % value
    else:
        raise ValueError(f"integer reply out of the signed 64-bit range: {value}")


def _write_array(out: bytearray, items: Sequence[Reply]) -> None:
    size = len(items)
    out += _ARRAY_PREFIXES[size] if size < _BULK_PREFIX_CACHED else b"*%d\r\n" % size
    for item in items:
        write_reply(out, item)


def _write_other(out: bytearray, reply: object) -> None:
    # Subclasses and the less common types; the rejections are here too.
    if reply is NULL_ARRAY:
        out += _NULL_ARRAY_WIRE
    elif isinstance(reply, bool):
        raise TypeError("bool is not a reply; use 1/0 or OK explicitly")
    elif isinstance(reply, str):
        raise TypeError("str is not a reply; use SimpleString(...) or bytes")
    elif isinstance(reply, int):
        _write_int(out, int(reply))
    elif isinstance(reply, bytes | bytearray | memoryview):
        with memoryview(reply) as view:
            out += b"$%d\r\n" % view.nbytes
            out += view
            out += b"\r\n"
    elif isinstance(reply, SimpleString | ErrorReply):
        out += reply._wire
    elif isinstance(reply, list | tuple):
        _write_array(out, reply)
    elif isinstance(reply, MapReply | PairsReply):
        _write_array(out, [x for pair in reply.items for x in pair])
    elif isinstance(reply, SetReply):
        _write_array(out, reply.items)
    elif isinstance(reply, DoubleReply):
        write_reply(out, reply.text)
    else:
        raise TypeError(f"{type(reply).__name__} is not a reply")


_RESP3_NULL_WIRE: Final = b"_\r\n"


def write_reply_resp3(out: bytearray, reply: Reply | BytesLike) -> None:
    """Like :func:`write_reply`, for a connection that chose RESP3 with ``HELLO 3``: nulls
    are ``_`` and :class:`MapReply` is a ``%`` map; everything else is encoded as in RESP2.
    Same errors as :func:`write_reply`."""
    kind = type(reply)
    if reply is None or reply is NULL_ARRAY:
        out += _RESP3_NULL_WIRE
    elif kind is list or kind is tuple:
        items: Sequence[Reply] = reply  # type: ignore[assignment]
        out += b"*%d\r\n" % len(items)
        for item in items:
            write_reply_resp3(out, item)
    elif isinstance(reply, MapReply):
        out += b"%%%d\r\n" % len(reply.items)
        for key, value in reply.items:
            write_reply_resp3(out, key)
            write_reply_resp3(out, value)
    elif isinstance(reply, SetReply):
        out += b"~%d\r\n" % len(reply.items)
        for member in reply.items:
            write_reply_resp3(out, member)
    elif isinstance(reply, DoubleReply):
        out += b"," + reply.text + b"\r\n"
    elif isinstance(reply, PairsReply):
        out += b"*%d\r\n" % len(reply.items)
        for first, second in reply.items:
            out += b"*2\r\n"
            write_reply_resp3(out, first)
            write_reply_resp3(out, second)
    else:
        write_reply(out, reply)


def encode_reply(reply: Reply | BytesLike) -> bytes:
    """Return the encoding of ``reply``; same errors as :func:`write_reply`."""
    kind = type(reply)
    if kind is SimpleString or kind is ErrorReply:
        return reply._wire  # type: ignore[union-attr]
    out = bytearray()
    write_reply(out, reply)
    return bytes(out)


def encode_command(args: Sequence[BytesLike]) -> bytes:
    """Encode a command as a RESP array of bulk strings (what clients send).

    Each argument must be ``bytes``, ``bytearray`` or ``memoryview``: ``TypeError``
    otherwise (a ``str`` or ``int`` has more than one reasonable encoding; the caller
    chooses). An empty ``args`` encodes ``*0``, which servers skip.
    """
    parts: list[BytesLike] = [b"*%d\r\n" % len(args)]
    for arg in args:
        if type(arg) is bytes:
            size = len(arg)
        elif isinstance(arg, bytes | bytearray | memoryview):
            size = memoryview(arg).nbytes
        else:
            raise TypeError(f"command arguments must be bytes, got {type(arg).__name__}")
        parts.append(_BULK_PREFIXES[size] if size < _BULK_PREFIX_CACHED else b"$%d\r\n" % size)
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)
