"""Client side of RESP2: bytes from a server in, :data:`Reply` values out.

Sans-I/O like the command parser: ``feed(bytes)``, then ``next_reply()`` until it returns
:data:`NEED_DATA`. Errors sent by the server (``-ERR ...``) are values
(:class:`ErrorReply`), not exceptions; only a malformed stream raises
:class:`RespProtocolError`.

Why not ``hiredis.Reader``: it maps both ``$-1`` and ``*-1`` to ``None`` (we need the null
array to stay distinct, also inside nested arrays), and it allocates the list for an array
from the announced count before any element arrived.

The parser is strict, unlike the server side: every line must end with CRLF, a bulk's data
must be followed by CRLF, and a status or error line may not contain a lone CR or LF.
Nested arrays are parsed with an explicit stack (no recursion) whose depth is bounded by
``max_nesting_depth``; no byte is searched twice while a reply trickles in.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from ._decimal import parse_decimal
from .errors import RespProtocolError
from .limits import RespLimits
from .replies import NULL_ARRAY, ErrorReply, Reply, SimpleString

__all__ = ["NEED_DATA", "NeedData", "ReplyParser"]

_DEFAULT_LIMITS: Final = RespLimits()


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by :meth:`ReplyParser.next_reply` when no complete reply is buffered."""


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class ReplyParser:
    """Incremental parser of RESP2 replies.

    Contract:

    * ``feed(data)`` appends input; it raises :class:`RespProtocolError` if that would make
      :attr:`buffered_bytes` exceed ``limits.max_unparsed_bytes``.
    * ``next_reply()`` returns the next complete reply, or :data:`NEED_DATA`. Arrays come
      back as ``list``.
    * Malformed input raises :class:`RespProtocolError`; the parser is then poisoned
      (every later call raises the same error) and the connection must be dropped.

    Limits used: ``max_bulk_bytes`` (bulk length), ``max_args`` (elements in one array),
    ``max_inline_bytes`` (a line without its CRLF), ``max_nesting_depth``,
    ``max_unparsed_bytes``.
    """

    __slots__ = (
        "_buf",
        "_bulk_len",
        "_error",
        "_examined_bytes",
        "_limits",
        "_partial_bytes",
        "_pos",
        "_scan_from",
        "_stack",
    )

    def __init__(self, limits: RespLimits = _DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._pos = 0
        # Arrays being filled, outermost first: [elements so far, elements still expected].
        self._stack: list[tuple[list[Reply], list[int]]] = []
        # Announced length of the bulk whose data is awaited, or -1.
        self._bulk_len = -1
        # Wire bytes of the incomplete reply already consumed into the stack.
        self._partial_bytes = 0
        # Bytes from _pos known not to hold the CR that ends the current line.
        self._scan_from = 0
        self._error: RespProtocolError | None = None
        self._examined_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Input bytes held that are not part of a reply already returned."""
        return len(self._buf) - self._pos + self._partial_bytes

    @property
    def examined_bytes(self) -> int:
        """Upper bound on the bytes searched or copied so far (for linear-time tests)."""
        return self._examined_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server (see the class docstring for errors)."""
        if self._error is not None:
            raise self._error
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        limit = self._limits.max_unparsed_bytes
        if self.buffered_bytes + size > limit:
            self._error = RespProtocolError(f"reply buffer exceeds max_unparsed_bytes ({limit})")
            raise self._error
        self._buf += data

    def next_reply(self) -> Reply | Literal[NeedData.NEED_DATA]:
        """Return the next complete reply, or :data:`NEED_DATA`."""
        if self._error is not None:
            raise self._error
        start = self._pos - self._partial_bytes
        try:
            reply = self._parse()
        except RespProtocolError as exc:
            self._error = exc
            raise
        if reply is NEED_DATA:
            self._partial_bytes = self._pos - start
        else:
            self._partial_bytes = 0
        if self._pos:
            # O(1) amortized in CPython: bytearray deletes a prefix by moving its start.
            del self._buf[: self._pos]
            self._pos = 0
        return reply

    def _parse(self) -> Reply | Literal[NeedData.NEED_DATA]:
        buf = self._buf
        end = len(buf)
        limits = self._limits
        stack = self._stack
        value: Reply
        while True:
            pos = self._pos
            if self._bulk_len >= 0:
                bulk_len = self._bulk_len
                if end - pos < bulk_len + 2:
                    return NEED_DATA
                stop = pos + bulk_len
                if buf[stop : stop + 2] != b"\r\n":
                    raise RespProtocolError("bulk string not terminated by CRLF")
                with memoryview(buf) as view:
                    value = view[pos:stop].tobytes()
                self._examined_bytes += bulk_len
                self._pos = stop + 2
                self._bulk_len = -1
            else:
                if pos >= end:
                    return NEED_DATA
                search_from = pos + self._scan_from
                cr = buf.find(b"\r", search_from)
                self._examined_bytes += (end if cr < 0 else cr + 1) - search_from
                if cr < 0 or cr + 1 >= end:
                    if (end if cr < 0 else cr) - pos > limits.max_inline_bytes:
                        raise RespProtocolError("reply line too long")
                    self._scan_from = end - pos if cr < 0 else cr - pos
                    return NEED_DATA
                self._scan_from = 0
                if cr - pos > limits.max_inline_bytes:
                    raise RespProtocolError("reply line too long")
                if buf[cr + 1] != 0x0A:
                    raise RespProtocolError("expected LF after CR")
                kind = buf[pos]
                line = bytes(buf[pos + 1 : cr])
                self._pos = cr + 2
                if kind == 0x2B:  # '+'
                    if 0x0A in line:
                        raise RespProtocolError("LF inside a status reply")
                    value = SimpleString(_decode(line))
                elif kind == 0x2D:  # '-'
                    if 0x0A in line:
                        raise RespProtocolError("LF inside an error reply")
                    value = ErrorReply(_decode(line))
                elif kind == 0x3A:  # ':'
                    number = parse_decimal(line)
                    if number is None:
                        raise RespProtocolError("invalid integer reply")
                    value = number
                elif kind == 0x24:  # '$'
                    announced = parse_decimal(line)
                    if announced is None or announced < -1 or announced > limits.max_bulk_bytes:
                        raise RespProtocolError("invalid bulk length")
                    if announced >= 0:
                        self._bulk_len = announced
                        continue
                    value = None
                elif kind == 0x2A:  # '*'
                    count = parse_decimal(line)
                    if count is None or count < -1 or count > limits.max_args:
                        raise RespProtocolError("invalid multibulk length")
                    if count > 0:
                        if len(stack) >= limits.max_nesting_depth:
                            raise RespProtocolError("arrays nested too deeply")
                        stack.append(([], [count]))
                        continue
                    value = [] if count == 0 else NULL_ARRAY
                else:
                    raise RespProtocolError(f"unknown reply type byte {bytes([kind])!r}")
            # Attach the finished value to the innermost open array, closing every array
            # it completes; a value with no open array is a whole reply.
            while stack:
                elements, remaining = stack[-1]
                elements.append(value)
                remaining[0] -= 1
                if remaining[0]:
                    break
                stack.pop()
                value = elements
            else:
                return value
