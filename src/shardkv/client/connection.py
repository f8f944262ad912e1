"""One RESP connection to one node: pipelined requests, replies matched to requests in order.

Owns the socket (through an asyncio Protocol), the reply parser and the in-flight window.
It never retries, redirects or interprets error replies: a reply, error replies included, is
handed back as parsed. The one exception is a server that turns the connection away at its
connection limit, because that is a fact about the connection, not about a command.

Life of a request:

1. Wait for one of `max_inflight_requests` in-flight slots (the window bounds the bytes we
   buffer toward a slow server and the futures we hold). A request still waiting here when
   the connection breaks, or when its deadline passes, was never written: `RequestNotSent`
   (`ServerBusy` if the server turned the connection away at its connection limit).
2. Encode and hand the bytes to the transport; from now on the server may execute it.
3. Resolve with the next reply off the wire (RESP replies come back in request order). If
   the connection breaks first: `ConnectionLost`; if the deadline passes first:
   `RequestTimeout`. Both are unknown outcomes.

A request that times out closes the connection: its reply, and every later one, may still
arrive, and a server that has not answered the oldest request for a whole timeout is
stalled or gone; a fresh connection finds that out faster than waiting behind it. A caller
that cancels its own request does not close anything: the slot stays taken until the reply
arrives and is dropped.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from shardkv.client.errors import (
    MAX_CLIENTS_MESSAGE,
    Address,
    ConnectionLost,
    ConnectionRefused,
    DefiniteFailure,
    RequestNotSent,
    RequestTimeout,
    ShardKVError,
    format_address,
    server_busy_max_clients,
)
from shardkv.core.resp import (
    NEED_DATA,
    ErrorReply,
    Reply,
    ReplyParser,
    RespLimits,
    RespProtocolError,
    encode_command,
)

DEFAULT_MAX_INFLIGHT_REQUESTS = 256
"""Requests written and not yet answered, per connection."""

DEFAULT_REPLY_LIMITS = RespLimits()
"""Redis's own limits: a reply Redis can send is accepted."""

_MAX_COMMAND_NAME_CHARS = 32
"""Command names quoted in errors are cut to this length (garbage may be sent as a name)."""


def command_name(args: Sequence[bytes]) -> str:
    """The command's name as shown in error messages: `args[0]`, upper case, printable."""
    if not args:
        return "<empty command>"
    return args[0][:_MAX_COMMAND_NAME_CHARS].decode("ascii", "replace").upper()


@dataclass(slots=True)
class _InFlight:
    """A request written to the transport and not yet answered."""

    future: asyncio.Future[Reply]
    command: str
    timeout_s: float | None
    timer: asyncio.TimerHandle | None = None


class _Protocol(asyncio.Protocol):
    """Forwards transport events to its `Connection`; holds no state of its own."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence the cast).
        self._connection._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._connection._on_data(data)

    def eof_received(self) -> bool:
        # The server closed its side; it will send nothing more, so nothing in flight can
        # be answered. Returning False lets the transport close, which reports the loss.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection._on_lost(exc)


class Connection:
    """A pipelined RESP connection. Create it with `await Connection.open(...)`.

    Use from one event loop only. Any number of tasks may call `request` concurrently; at
    most `max_inflight_requests` requests are on the wire at once and the rest wait, in
    arrival order, for a slot. Once broken (`is_closed`), a connection stays broken: open a
    new one.
    """

    def __init__(
        self, address: Address, *, max_inflight_requests: int, reply_limits: RespLimits
    ) -> None:
        """Internal: use `Connection.open`."""
        if max_inflight_requests < 1:
            raise ValueError(f"max_inflight_requests must be >= 1, not {max_inflight_requests}")
        self._address = address
        self._max_inflight_requests = max_inflight_requests
        self._transport: asyncio.Transport | None = None
        self._parser = ReplyParser(reply_limits)
        # Requests on the wire, oldest first; replies resolve them front to back.
        self._inflight: deque[_InFlight] = deque()
        # Slots taken: requests on the wire plus slots granted to a waiter not yet written.
        self._slots_used = 0
        # Callers waiting for a slot, oldest first, with their command's name. Each is a
        # caller's own suspended task (no bytes are buffered for it), so the callers'
        # concurrency bounds this queue. Futures that timed out or were cancelled stay here
        # until a release skips them; `_waiting_count` counts the live ones.
        self._slot_waiters: deque[tuple[asyncio.Future[None], str]] = deque()
        self._waiting_count = 0
        self._replies_received = 0
        # Why the connection broke; None while it is usable.
        self._broken_reason: str | None = None
        # The server turned the connection away at its connection limit.
        self._refused_busy = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        connect_timeout_s: float,
        ssl: ssl_module.SSLContext | None = None,
        max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS,
        reply_limits: RespLimits = DEFAULT_REPLY_LIMITS,
    ) -> Connection:
        """Connect (and finish the TLS handshake, with `ssl`) within `connect_timeout_s`.

        `reply_limits` bounds what the server can make us buffer (reply size, nesting); a
        reply beyond them breaks the connection (`ConnectionLost` for what is in flight).

        Raises `ConnectionRefused` if the node cannot be reached in time for any reason
        (refused, unreachable, DNS, timeout, TLS failure); nothing was sent.
        """
        loop = asyncio.get_running_loop()
        address = (host, port)
        connection = cls(
            address, max_inflight_requests=max_inflight_requests, reply_limits=reply_limits
        )
        where = format_address(address)
        try:
            async with asyncio.timeout(connect_timeout_s):
                await loop.create_connection(lambda: _Protocol(connection), host, port, ssl=ssl)
        except TimeoutError:
            raise ConnectionRefused(
                f"could not connect to {where} within {connect_timeout_s}s. Nothing was sent;"
                " check that the server is running and reachable.",
                address=address,
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectionRefused(
                f"could not connect to {where}: {reason}. Nothing was sent; check that the"
                " server is running and reachable.",
                address=address,
            ) from exc
        return connection

    @property
    def address(self) -> Address:
        return self._address

    @property
    def is_closed(self) -> bool:
        """True once the connection broke or was closed; it accepts no more requests."""
        return self._broken_reason is not None

    @property
    def inflight_count(self) -> int:
        """Requests written and not yet answered (including ones whose caller gave up)."""
        return len(self._inflight)

    @property
    def waiting_count(self) -> int:
        """Callers waiting for an in-flight slot."""
        return self._waiting_count

    @property
    def load(self) -> int:
        """Slots taken plus callers waiting: what a pool compares to pick a connection."""
        return self._slots_used + self._waiting_count

    async def request(self, args: Sequence[bytes], *, timeout_s: float | None) -> Reply:
        """Send one command and return its reply, error replies included (as parsed values).

        `timeout_s` bounds the whole call, slot wait included (None: no bound). Raises
        `RequestNotSent` (never written: connection broken or closed, or no slot within the
        deadline), `ServerBusy` (the server turned the connection away at its connection
        limit; nothing ran), `RequestTimeout` (written, no reply in time; the connection is
        closed) or `ConnectionLost` (written, connection broke before the reply).
        """
        loop = asyncio.get_running_loop()
        command = command_name(args)
        deadline = None if timeout_s is None else loop.time() + timeout_s
        if self._broken_reason is not None:
            raise self._not_sent_error(command)
        if self._slots_used < self._max_inflight_requests and self._waiting_count == 0:
            self._slots_used += 1
        else:
            await self._wait_for_slot(loop, deadline, command, timeout_s)
        # A slot is ours from here on: every path must write the request or release it.
        transport = self._transport
        if self._broken_reason is not None or transport is None or transport.is_closing():
            self._release_slot()
            raise self._not_sent_error(command)
        try:
            payload = encode_command(args)
        except BaseException:
            self._release_slot()
            raise
        entry = _InFlight(loop.create_future(), command, timeout_s)
        if deadline is not None:
            entry.timer = loop.call_at(deadline, self._on_request_timeout, entry)
        self._inflight.append(entry)
        transport.write(payload)
        return await entry.future

    def abort(self) -> None:
        """Close now without waiting. Requests in flight fail with `ConnectionLost` (the server
        may or may not have executed them); requests waiting for a slot fail with
        `RequestNotSent`. Idempotent.
        """
        self._break("the client closed the connection")

    async def close(self) -> None:
        """`abort()`, then wait until the transport is closed. Idempotent."""
        self.abort()
        if self._transport is not None:
            await asyncio.shield(self._lost)

    # --- internals ------------------------------------------------------------------------

    async def _wait_for_slot(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float | None,
        command: str,
        timeout_s: float | None,
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._slot_waiters.append((waiter, command))
        self._waiting_count += 1
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, self._on_slot_wait_timeout, waiter, command, timeout_s)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The slot was handed to us just before the cancellation: pass it on.
                self._release_slot()
            raise
        finally:
            self._waiting_count -= 1
            if timer is not None:
                timer.cancel()

    def _release_slot(self) -> None:
        """Give a freed slot to the oldest live waiter, or return it to the pool of slots."""
        while self._slot_waiters:
            waiter, _ = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots_used -= 1

    def _on_slot_wait_timeout(
        self, waiter: asyncio.Future[None], command: str, timeout_s: float | None
    ) -> None:
        if not waiter.done():
            waiter.set_exception(
                RequestNotSent(
                    f"{command} was not sent to {format_address(self._address)}: all"
                    f" {self._max_inflight_requests} in-flight slots stayed busy for"
                    f" {timeout_s}s. The command was not executed; retry, or raise"
                    " max_inflight_requests / pool_size if the server keeps up.",
                    address=self._address,
                    command=command,
                )
            )

    def _on_request_timeout(self, entry: _InFlight) -> None:
        if entry.future.done():
            return  # its caller cancelled; the reply is still owed, so the timeout still counts
        entry.future.set_exception(
            RequestTimeout(
                f"no reply from {format_address(self._address)} to {entry.command} within"
                f" {entry.timeout_s}s. The command may or may not have been executed (it may"
                " still be); read the affected keys to find out. The connection was closed.",
                address=self._address,
                command=entry.command,
            )
        )
        self._break(f"an earlier request ({entry.command}) got no reply within {entry.timeout_s}s")

    def _on_data(self, data: bytes) -> None:
        if self._broken_reason is not None:
            return
        try:
            self._parser.feed(data)
        except RespProtocolError as exc:
            self._break(f"the server sent more than the reply buffer holds ({exc})")
            return
        while True:
            try:
                reply = self._parser.next_reply()
            except RespProtocolError as exc:
                self._break(f"the server sent a malformed reply ({exc})")
                return
            if reply is NEED_DATA:
                return
            if self._replies_received == 0 and _is_max_clients_error(reply):
                # Sent on accept, before the server read anything (often before we wrote
                # anything): nothing in flight ran.
                self._break(f"the server refused the connection: {MAX_CLIENTS_MESSAGE}", busy=True)
                return
            if not self._inflight:
                self._break("the server sent a reply no request was waiting for")
                return
            self._replies_received += 1
            entry = self._inflight.popleft()
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_result(reply)
            self._release_slot()

    def _on_lost(self, exc: Exception | None) -> None:
        self._break(
            "the server closed the connection" if exc is None else f"the connection failed ({exc})"
        )
        if not self._lost.done():
            self._lost.set_result(None)

    def _break(self, reason: str, *, busy: bool = False) -> None:
        """Mark the connection broken, fail everything pending, abort the transport."""
        if self._broken_reason is not None:
            return
        self._broken_reason = reason
        self._refused_busy = busy
        inflight, self._inflight = self._inflight, deque()
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for entry in inflight:
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                error: ShardKVError
                if busy:
                    error = server_busy_max_clients(address=self._address, command=entry.command)
                else:
                    error = self._lost_error(entry.command)
                entry.future.set_exception(error)
        for waiter, command in waiters:
            if not waiter.done():
                waiter.set_exception(self._not_sent_error(command))
        if self._transport is not None:
            self._transport.abort()

    def _lost_error(self, command: str) -> ConnectionLost:
        return ConnectionLost(
            f"{command} was sent to {format_address(self._address)} but the connection broke"
            f" before the reply: {self._broken_reason}. The command may or may not have been"
            " executed; read the affected keys to find out.",
            address=self._address,
            command=command,
        )

    def _not_sent_error(self, command: str) -> DefiniteFailure:
        if self._refused_busy:
            return server_busy_max_clients(address=self._address, command=command)
        return RequestNotSent(
            f"{command} was not sent to {format_address(self._address)}: the connection is"
            f" closed ({self._broken_reason or 'it was never opened'}). The command was not"
            " executed; retry on a new connection.",
            address=self._address,
            command=command,
        )


def _is_max_clients_error(reply: Reply) -> bool:
    return isinstance(reply, ErrorReply) and reply.message == f"ERR {MAX_CLIENTS_MESSAGE}"
