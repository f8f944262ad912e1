"""Server side of RESP: bytes from a client in, commands (lists of ``bytes``) out.

Sans-I/O, in the manner of h11: the caller reads the socket, hands the bytes to
:meth:`CommandParser.feed`, and takes complete commands out with
:meth:`CommandParser.drain`. Nothing here does I/O, and nothing here can be made to hold
more than :attr:`RespLimits.max_unparsed_bytes` of input.

Accepted input is what Redis 7 accepts (``processMultibulkBuffer`` and
``processInlineBuffer`` in ``networking.c``):

* RESP arrays of bulk strings, ``*<count>\\r\\n`` then ``count`` times
  ``$<len>\\r\\n<len bytes>\\r\\n``. Arrays with a count of zero or less are skipped.
  Like Redis, the two bytes after a header's ``\\r`` and after a bulk's data are not
  checked to be ``\\r\\n``: they are skipped.
* Inline commands: any line not starting with ``*``, ended by ``\\n`` (an ``\\r`` before it
  is dropped), split like Redis's ``sdssplitargs`` (quotes, ``\\xHH`` escapes). Empty lines
  are skipped. As in ``sdssplitargs``, a NUL byte ends the line's content.

Two deliberate differences from Redis, both to make the result independent of how the
input was chunked:

* Redis checks a line's length only while its terminator has not arrived, so a long line
  delivered in one read can slip through. We refuse any line (inline command or header)
  longer than ``max_inline_bytes``, whether or not its terminator came with it.
* Redis searches with ``strchr``, which stops at a NUL byte and then waits forever for a
  terminator it already has. We search the whole buffer.

Linear time: the parser keeps a read position and the partial state of the array being
parsed (arguments so far, length of the pending bulk, how far an incomplete line was
already searched), so no byte is searched twice while a command trickles in, and waiting
for the rest of a known-length bulk costs O(1) per ``feed``.
"""

from __future__ import annotations

import re
from typing import Final

from ._decimal import parse_decimal
from .errors import RespProtocolError
from .limits import RespLimits

__all__ = ["CommandParser"]

_DEFAULT_LIMITS: Final = RespLimits()

# A bulk this long that finished arriving after we started waiting for it is copied out of
# the input buffer directly instead of through a parse snapshot: one copy instead of two.
# Redis uses the same threshold (PROTO_MBULK_BIG_ARG) for the same purpose.
_BIG_BULK_BYTES: Final = 32 * 1024

# Header lines are looked up whole in these tables: one dict lookup replaces a prefix
# check, a strict integer parse and two range checks for all usual sizes. Only canonical
# spellings are keys, so the tables accept nothing that parse_decimal would refuse.
_CACHED_BULK_LENGTHS: Final = 4096
_CACHED_ARG_COUNTS: Final = 1024
_BULK_HEADERS: Final[dict[bytes, int]] = {b"$%d" % n: n for n in range(_CACHED_BULK_LENGTHS + 1)}
_COUNT_HEADERS: Final[dict[bytes, int]] = {b"*%d" % n: n for n in range(_CACHED_ARG_COUNTS + 1)}

_CR: Final = 0x0D
_LF: Final = 0x0A
_STAR: Final = 0x2A
_DOLLAR: Final = 0x24

# --- inline commands (sdssplitargs) -------------------------------------------------------

# Bytes that make the simple split (bytes.split()) differ from sdssplitargs: quotes, the NUL
# that ends a C string, and \v \f (skipped between arguments by isspace() but, unlike
# bytes.split(), kept inside an argument).
_INLINE_SPECIAL: Final = re.compile(rb"[\"'\x00\x0b\x0c]")
_C_ISSPACE: Final = frozenset(b" \t\n\v\f\r")
_UNQUOTED_ARG_END: Final = frozenset(b" \n\r\t")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}


def _split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line like Redis's ``sdssplitargs``.

    Raises :class:`RespProtocolError` ("unbalanced quotes in request") for an unterminated
    quote, or a closing quote followed by something other than a space.
    """
    if _INLINE_SPECIAL.search(line) is None:
        return line.split()
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    n = len(line)

    def at(i: int) -> int:
        # C string semantics: reading past the end yields the terminating NUL.
        return line[i] if i < n else 0

    argv: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _C_ISSPACE:
            i += 1
        if i >= n:
            return argv
        current = bytearray()
        in_double = in_single = done = False
        while not done:
            c = at(i)
            if in_double:
                if (
                    c == 0x5C
                    and at(i + 1) == 0x78
                    and at(i + 2) in _HEX_DIGITS
                    and at(i + 3) in _HEX_DIGITS
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and at(i + 1):
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    follower = at(i + 1)
                    if follower and follower not in _C_ISSPACE:
                        raise RespProtocolError("unbalanced quotes in request")
                    done = True
                elif c == 0:
                    raise RespProtocolError("unbalanced quotes in request")
                else:
                    current.append(c)
            elif in_single:
                if c == 0x5C and at(i + 1) == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    follower = at(i + 1)
                    if follower and follower not in _C_ISSPACE:
                        raise RespProtocolError("unbalanced quotes in request")
                    done = True
                elif c == 0:
                    raise RespProtocolError("unbalanced quotes in request")
                else:
                    current.append(c)
            elif c == 0 or c in _UNQUOTED_ARG_END:
                done = True
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            if i < n:
                i += 1
        argv.append(bytes(current))


def _printable(byte: int) -> str:
    # Redis prints the raw byte with %c, then addReplyErrorFormat turns CR/LF into spaces;
    # we do the same, so the message is what Redis sends. Non-ASCII bytes are escaped so that
    # the message stays loggable.
    if byte in (_CR, _LF):
        return " "
    return chr(byte) if byte < 0x80 else f"\\x{byte:02x}"


class CommandParser:
    """Incremental parser of client commands (RESP2 arrays and inline commands).

    Usage, once per connection::

        parser = CommandParser(limits)
        while connection is open:
            parser.feed(received_bytes)          # may raise RespProtocolError
            while commands := parser.drain(64):  # may raise RespProtocolError
                execute(commands)

    Contract:

    * ``feed`` appends input; it raises :class:`RespProtocolError` if that would make
      :attr:`buffered_bytes` exceed ``limits.max_unparsed_bytes``. Complete commands
      count until drained, so drain before feeding more (or stop reading).
    * ``drain(max_commands)`` returns up to ``max_commands`` complete commands, in order; an
      empty list means more input is needed. Each command is a non-empty ``list[bytes]``.
    * A protocol error is raised by the ``drain`` call that reaches it, unless that call
      already parsed commands: then those are returned and the *next* call raises. So the
      caller executes everything the client sent before the error, as Redis does, and then
      replies ``-ERR Protocol error: <str(e)>`` and closes.
    * After an error the parser is poisoned: ``feed`` and ``drain`` raise the same error.

    Memory: nothing is allocated from an announced length; bulks are sliced out of data
    that actually arrived. While a ``drain`` call works, and between calls that stopped at
    ``max_commands`` with no ``feed`` since, the parser holds an immutable copy of the
    unparsed input, so transient memory is up to twice :attr:`buffered_bytes`.
    """

    __slots__ = (
        "_args",
        "_buf",
        "_bulk_headers",
        "_bulk_len",
        "_count_headers",
        "_error",
        "_examined_bytes",
        "_limits",
        "_partial_bytes",
        "_remaining",
        "_scan_from",
        "_snap_pos",
        "_snapshot",
    )

    def __init__(self, limits: RespLimits = _DEFAULT_LIMITS) -> None:
        self._limits = limits
        # Unparsed input. Bytes before the start of the incomplete item (command, header
        # line or bulk) are deleted as soon as a drain ends, so buf[0] is that start.
        self._buf = bytearray()
        # Immutable copy of _buf that drain parses (slicing bytes is one copy; slicing a
        # bytearray would be two). Dropped by feed. _snap_pos is where _buf[0] is in it.
        self._snapshot: bytes | None = None
        self._snap_pos = 0
        # Partial array: arguments still expected (0 = between commands), arguments so far,
        # and the announced length of the pending bulk (-1 = its header is next).
        self._remaining = 0
        self._args: list[bytes] = []
        self._bulk_len = -1
        # Wire bytes of the incomplete command already turned into self._args.
        self._partial_bytes = 0
        # Bytes from _buf[0] known not to hold the terminator of the incomplete line.
        self._scan_from = 0
        self._error: RespProtocolError | None = None
        self._examined_bytes = 0
        if limits.max_bulk_bytes >= _CACHED_BULK_LENGTHS:
            self._bulk_headers = _BULK_HEADERS
        else:
            self._bulk_headers = {
                k: v for k, v in _BULK_HEADERS.items() if v <= limits.max_bulk_bytes
            }
        if limits.max_args >= _CACHED_ARG_COUNTS:
            self._count_headers = _COUNT_HEADERS
        else:
            self._count_headers = {k: v for k, v in _COUNT_HEADERS.items() if v <= limits.max_args}

    @property
    def limits(self) -> RespLimits:
        return self._limits

    @property
    def buffered_bytes(self) -> int:
        """Input bytes held that are not part of a command returned by ``drain``.

        Includes the wire size of the arguments already parsed from an incomplete command.
        Never exceeds ``limits.max_unparsed_bytes``.
        """
        return len(self._buf) + self._partial_bytes

    @property
    def examined_bytes(self) -> int:
        """Upper bound on the bytes this parser has searched or copied so far.

        For tests of linear-time behaviour: it grows by at most a small constant times the
        number of bytes fed, however the input is chunked.
        """
        return self._examined_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes.

        Raises :class:`RespProtocolError` if the parser is poisoned, or if the input would
        make :attr:`buffered_bytes` exceed ``limits.max_unparsed_bytes`` (the data is then
        not kept, and the parser is poisoned).
        """
        if self._error is not None:
            raise self._error
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if not size:
            return
        limit = self._limits.max_unparsed_bytes
        if len(self._buf) + self._partial_bytes + size > limit:
            self._error = RespProtocolError(f"query buffer exceeds max_unparsed_bytes ({limit})")
            raise self._error
        self._buf += data
        self._snapshot = None

    def drain(self, max_commands: int) -> list[list[bytes]]:
        """Return up to ``max_commands`` complete commands; ``[]`` means "feed more".

        Raises ``ValueError`` if ``max_commands < 1`` and :class:`RespProtocolError` as
        described in the class docstring.
        """
        if self._error is not None:
            raise self._error
        if max_commands < 1:
            raise ValueError(f"max_commands must be >= 1, got {max_commands}")
        out: list[list[bytes]] = []
        try:
            if self._snapshot is None and not self._can_progress(out):
                return out
            if len(out) < max_commands and self._buf:
                self._parse(out, max_commands)
        except RespProtocolError as exc:
            self._error = exc
            self._snapshot = None
            if not out:
                raise
        return out

    def _can_progress(self, out: list[list[bytes]]) -> bool:
        """Decide, without copying, whether parsing the buffer can make progress.

        Called when new input arrived since the last parse stopped for lack of data. Only
        the new bytes are searched; a bulk that is still short costs nothing. A long bulk
        that just completed is moved to the arguments here (and its command to ``out``).
        """
        buf = self._buf
        avail = len(buf)
        if not avail:
            return False
        if self._remaining and self._bulk_len >= 0:
            bulk_len = self._bulk_len
            if avail < bulk_len + 2:
                return False
            if bulk_len >= _BIG_BULK_BYTES:
                with memoryview(buf) as view:
                    self._args.append(view[:bulk_len].tobytes())
                del buf[: bulk_len + 2]
                self._examined_bytes += bulk_len
                self._bulk_len = -1
                self._remaining -= 1
                self._partial_bytes += bulk_len + 2
                if not self._remaining:
                    out.append(self._args)
                    self._args = []
                    self._partial_bytes = 0
                return bool(buf)
            return True
        search_from = self._scan_from
        if self._remaining or buf[0] == _STAR:
            end_of_line = buf.find(b"\r", search_from)
            ready = 0 <= end_of_line <= avail - 2
        else:
            end_of_line = buf.find(b"\n", search_from)
            ready = end_of_line >= 0
        self._examined_bytes += (avail if end_of_line < 0 else end_of_line + 1) - search_from
        if end_of_line > self._limits.max_inline_bytes or (
            end_of_line < 0 and avail > self._limits.max_inline_bytes
        ):
            raise self._line_too_big(buf[0])
        if not ready:
            self._scan_from = avail if end_of_line < 0 else end_of_line
        return ready

    def _line_too_big(self, first_byte: int) -> RespProtocolError:
        if self._remaining:
            return RespProtocolError("too big bulk count string")
        if first_byte == _STAR:
            return RespProtocolError("too big mbulk count string")
        return RespProtocolError("too big inline request")

    def _parse(self, out: list[list[bytes]], max_commands: int) -> None:
        """Parse commands from the snapshot into ``out``; save the partial state at the end.

        This is the hot loop: state lives in locals, headers are dict lookups, bulks are
        single slices of an immutable ``bytes``.
        """
        data = self._snapshot
        if data is None:
            data = self._snapshot = bytes(self._buf)
            self._snap_pos = 0
            self._examined_bytes += len(data)
        pos = base = self._snap_pos
        end = len(data)
        find = data.find
        remaining = self._remaining
        args = self._args
        bulk_len = self._bulk_len
        cmd_start = pos - self._partial_bytes
        scan_from = 0
        max_line = self._limits.max_inline_bytes
        bulk_headers = self._bulk_headers
        count = len(out)
        try:
            while True:
                if not remaining:
                    if count >= max_commands or pos >= end:
                        break
                    cmd_start = pos
                    if data[pos] != _STAR:
                        lf = find(b"\n", pos)
                        if lf < 0:
                            if end - pos > max_line:
                                raise RespProtocolError("too big inline request")
                            scan_from = end - pos
                            break
                        if lf - pos > max_line:
                            raise RespProtocolError("too big inline request")
                        stop = lf - 1 if lf > pos and data[lf - 1] == _CR else lf
                        argv = _split_inline(data[pos:stop])
                        pos = lf + 1
                        if argv:
                            out.append(argv)
                            count += 1
                        continue
                    cr = find(b"\r", pos)
                    if cr < 0:
                        if end - pos > max_line:
                            raise RespProtocolError("too big mbulk count string")
                        scan_from = end - pos
                        break
                    if cr - pos > max_line:
                        raise RespProtocolError("too big mbulk count string")
                    if cr + 2 > end:
                        scan_from = cr - pos
                        break
                    n_args = self._count_headers.get(data[pos:cr])
                    if n_args is None:
                        n_args = self._slow_count(data[pos + 1 : cr])
                    pos = cr + 2
                    if n_args <= 0:
                        continue
                    remaining = n_args
                    args = []
                while remaining:
                    if bulk_len < 0:
                        cr = find(b"\r", pos)
                        if cr < 0:
                            if end - pos > max_line:
                                raise RespProtocolError("too big bulk count string")
                            scan_from = end - pos
                            break
                        if cr - pos > max_line:
                            raise RespProtocolError("too big bulk count string")
                        if cr + 2 > end:
                            scan_from = cr - pos
                            break
                        bulk_len = bulk_headers.get(data[pos:cr], -1)
                        if bulk_len < 0:
                            bulk_len = self._slow_bulk_len(data, pos, cr)
                        pos = cr + 2
                    stop = pos + bulk_len
                    if stop + 2 > end:
                        break
                    args.append(data[pos:stop])
                    pos = stop + 2
                    bulk_len = -1
                    remaining -= 1
                if remaining:
                    break
                out.append(args)
                count += 1
        finally:
            # Runs on errors too, harmlessly: the parser is poisoned by then. Compacting on
            # every call is cheap: CPython deletes a bytearray prefix by moving its start
            # pointer (O(1) amortized), and the memory is reclaimed when the buffer regrows.
            del self._buf[: pos - base]
            if remaining:
                self._partial_bytes = pos - cmd_start
                self._remaining = remaining
                self._args = args
                self._bulk_len = bulk_len
            else:
                self._partial_bytes = 0
                self._remaining = 0
                self._args = []
                self._bulk_len = -1
            self._scan_from = scan_from
            if count >= max_commands and not remaining and pos < end:
                # Stopped early with whole commands left: keep the copy for the next call.
                self._snap_pos = pos
            else:
                self._snapshot = None

    def _slow_count(self, digits: bytes) -> int:
        n_args = parse_decimal(digits)
        if n_args is None or n_args > self._limits.max_args:
            raise RespProtocolError("invalid multibulk length")
        return n_args

    def _slow_bulk_len(self, data: bytes, pos: int, cr: int) -> int:
        if data[pos] != _DOLLAR:
            raise RespProtocolError(f"expected '$', got '{_printable(data[pos])}'")
        bulk_len = parse_decimal(data[pos + 1 : cr])
        if bulk_len is None or bulk_len < 0 or bulk_len > self._limits.max_bulk_bytes:
            raise RespProtocolError("invalid bulk length")
        return bulk_len
