"""One client connection: bytes in, commands to the committer, replies out, in order.

Event-driven (an ``asyncio.Protocol``, not a coroutine per client) because this is the hot
path. A connection has at most one group of commands in the committer at a time; while it
waits, input keeps arriving into the parser until ``input_pause_bytes``, then reading
pauses (TCP pushes back on the client). Output above ``output_high_water_bytes`` pauses
both reading and processing; a client whose output passes ``max_output_buffer_bytes``, or
stays paused for ``output_stall_timeout_s``, is dropped. So no client can make the server
hold more than the parser bound plus the output bound.

Network trouble (reset, EOF, half-close) ends the connection quietly: one debug line, no
traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from shardkv.core.acl import DEFAULT_USER, NO_AUTH_COMMANDS, AclUser, permission_error
from shardkv.core.commands import CommandKind, CommandSpec, lookup, resolve
from shardkv.core.kv.transaction import WATCH_DIGESTS_COMMAND, encode_transaction
from shardkv.core.resp import (
    OK,
    QUEUED,
    CommandParser,
    ErrorReply,
    Reply,
    RespProtocolError,
    write_reply,
    write_reply_resp3,
)
from shardkv.observability.logging import get_logger
from shardkv.server.commands import NOAUTH

if TYPE_CHECKING:
    from shardkv.server.app import Server

log = get_logger(__name__)

MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
PROTECTED_MODE_REPLY = (
    b"-DENIED ShardKV is running in protected mode because protected mode is enabled and no "
    b"password is set for the default user. In this mode connections are only accepted "
    b"from the loopback interface. Set a password (--requirepass, or ACL SETUSER default "
    b">PASSWORD from a loopback client), or start the server with --protected-mode no.\r\n"
)


#: Commands that drive a transaction: the connection answers them itself.
TRANSACTION_COMMANDS = frozenset({"multi", "exec", "discard", "watch", "unwatch"})
#: Connection commands that still run at once inside MULTI (the rest are refused there).
RUN_INSIDE_MULTI = frozenset({"quit", "reset"})
EXECABORT = ErrorReply("EXECABORT Transaction discarded because of previous errors.")


class ClientConnection(asyncio.Protocol):
    """Protocol for one accepted client. Created by :class:`shardkv.server.app.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.id = 0
        self.name = b""
        self.peer = "?"
        self.local = "?"
        self.created_s = time.monotonic()
        self.last_command_s = self.created_s
        self.last_input_s = self.created_s  # when bytes last arrived (idle timeout)
        self.last_command = b"NULL"
        self.readonly = False
        #: The ACL user this client is logged in as; None before AUTH when the default
        #: user needs a password (every command but AUTH, HELLO and QUIT is refused).
        self.user_name: str | None = None
        self.protocol = 2  # HELLO 3 switches this connection to RESP3 encoding
        self._transport: asyncio.Transport | None = None
        self._parser = CommandParser(self.config.resp_limits)
        # Commands taken from the parser, not yet run (at most max_commands_per_read).
        self._queue: deque[list[bytes]] = deque()
        self._busy = False  # a group is in the committer
        self._in_process = False
        self._output_paused = False
        self._reading_paused = False
        self._closing = False
        self._close_after_write = False
        self._eof = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._admitted = False
        # MULTI ... EXEC: the queued commands (None outside a transaction), whether one of
        # them was refused (EXEC then aborts), and the WATCHed keys with their digests.
        self._multi: list[list[bytes]] | None = None
        self._multi_failed = False
        self._watches: list[tuple[bytes, bytes]] = []

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = _fmt_addr(peer)
        self.local = _fmt_addr(local)
        if not self.server.admit(self):
            self._refuse("max_clients", "max number of clients reached", MAX_CLIENTS_REPLY)
            return
        self._admitted = True
        transport.set_write_buffer_limits(high=self.config.output_high_water_bytes)
        default_open = self.server.acl.default_open()
        if default_open and self.config.protected_mode and not is_loopback(peer):
            self._refuse("protected_mode", "protected mode", PROTECTED_MODE_REPLY)
            return
        if default_open:
            self.user_name = DEFAULT_USER

    def _refuse(self, label: str, reason: str, reply: bytes) -> None:
        assert self._transport is not None
        self.server.metrics.connections_rejected.labels(reason=label).inc()
        log.warning("client_rejected", peer=self.peer, reason=reason)
        self._transport.write(reply)
        self._transport.close()
        self._closing = True

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.server.metrics.bytes_in.inc(len(data))
        self.last_input_s = time.monotonic()
        try:
            self._parser.feed(data)
        except RespProtocolError as exc:
            self._protocol_error(exc)
            return
        if self._busy or self._output_paused:
            if self._parser.buffered_bytes > self.config.input_pause_bytes:
                self._pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        # Half-close: the client sent everything it will send. Finish what it sent, then close.
        self._eof = True
        if not self._busy and not self._in_process:
            self._process()
            self._close_when_done()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        if self._admitted:
            self.server.release(self)
            if exc is not None:
                log.debug("client_connection_lost", peer=self.peer, error=str(exc))

    def pause_writing(self) -> None:
        self._output_paused = True
        self._pause_reading()
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(
                self.config.output_stall_timeout_s, self._drop, "output_stalled"
            )

    def resume_writing(self) -> None:
        self._output_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not self._busy and not self._in_process:
            self._process()

    # -- processing ---------------------------------------------------------------------

    def _process(self) -> None:
        """Run queued commands in order until one group needs the committer or input runs
        out. Connection commands run only after every data command before them replied."""
        self._in_process = True
        try:
            while not (self._busy or self._output_paused or self._closing):
                if not self._queue:
                    try:
                        self._queue.extend(self._parser.drain(self.config.max_commands_per_read))
                    except RespProtocolError as exc:
                        self._protocol_error(exc)
                        return
                    if not self._queue:
                        break
                self._run_queued()
        finally:
            self._in_process = False
        if not self._busy and not self._output_paused:
            self._resume_reading()
            if self._eof:
                self._close_when_done()

    def _run_queued(self) -> None:
        queue = self._queue
        out = bytearray()
        write = write_reply if self.protocol == 2 else write_reply_resp3
        record = self.server.metrics.commands.record
        data_kind = CommandKind.DATA
        group: list[list[bytes]] = []
        names: list[str] = []
        has_write = False
        self.last_command_s = time.monotonic()
        user = self._user()
        while queue:
            args = queue[0]
            spec = resolve(args)
            if type(spec) is not ErrorReply and (user is None or not user.unrestricted):
                assert not isinstance(spec, ErrorReply)
                denied = self._denied(user, spec, args)
                if denied is not None:
                    spec = denied
            if type(spec) is ErrorReply:
                queue.popleft()
                if group:  # an error reply must follow the group's replies
                    queue.appendleft(args)
                    break
                if self._multi is not None:
                    self._multi_failed = True  # Redis: EXEC then answers EXECABORT
                known = lookup(args[0])
                write(out, spec)
                record(known.name if known is not None else "unknown", "error", 0.0)
                continue
            assert not isinstance(spec, ErrorReply)
            if spec.name in TRANSACTION_COMMANDS or (
                self._multi is not None and spec.name not in RUN_INSIDE_MULTI
            ):
                if group:
                    break  # answered in order, after the data commands before it
                queue.popleft()
                self.last_command = args[0]
                step = self._transaction_step(spec, args)
                if step is None:  # sent to the cluster: answered when it returns
                    if out:
                        self._write(out)
                    return
                write(out, step)
                record(spec.name, "error" if type(step) is ErrorReply else "ok", 0.0)
                continue
            if spec.kind is data_kind:
                has_write = has_write or spec.is_write
                group.append(queue.popleft())
                names.append(spec.name)
                self.last_command = args[0]
                continue
            if group:
                break  # connection commands wait for the data commands before them
            queue.popleft()
            self.last_command = args[0]
            reply = self.server.run_connection_command(self, spec.name, args)
            if asyncio.iscoroutine(reply):
                if out:
                    self._write(out)
                self._await_reply(spec.name, reply)
                return
            # HELLO 3 answers in the protocol it chose.
            write = write_reply if self.protocol == 2 else write_reply_resp3
            write(out, reply)
            record(spec.name, "error" if type(reply) is ErrorReply else "ok", 0.0)
            user = self._user()  # AUTH or HELLO AUTH may have logged in as another user
            if self._close_after_write:
                queue.clear()  # QUIT: nothing after it runs
                break
        if out:
            self._write(out)
        if not group or self._closing:
            return
        self._busy = True
        started = time.perf_counter()

        def done(results: list[Reply]) -> None:
            # The committer may run only a prefix of the group (its reply bytes bound);
            # the rest goes back to the front of the queue and runs next turn.
            self._busy = False
            if len(results) < len(group):
                queue.extendleft(reversed(group[len(results) :]))
            latency_s = time.perf_counter() - started
            out = bytearray()
            for reply, name in zip(results, names, strict=False):
                write(out, reply)
                record(name, "error" if type(reply) is ErrorReply else "ok", latency_s)
            self._write(out)
            if not self._in_process and not self._closing:
                self._process()

        self.server.committer.submit(group, done, allow_stale=self.readonly, has_write=has_write)

    # -- transactions ---------------------------------------------------------------------

    def _transaction_step(self, spec: CommandSpec, args: list[bytes]) -> Reply | None:
        """MULTI, EXEC, DISCARD, WATCH, UNWATCH, or a command inside MULTI: the reply, or
        None when the step went to the cluster (EXEC, WATCH) and answers later. The
        queued commands travel as one command (``core.kv.transaction``), so the block is
        one log entry, applied atomically on every replica."""
        name = spec.name
        if name == "multi":
            if self._multi is not None:
                return ErrorReply("ERR MULTI calls can not be nested")
            self._multi = []
            self._multi_failed = False
            return OK
        if name == "exec":
            if self._multi is None:
                return ErrorReply("ERR EXEC without MULTI")
            commands, failed = self._multi, self._multi_failed
            watches = self._watches
            self._end_transaction()
            if failed:
                return EXECABORT
            if not commands and not watches:
                return []
            self._submit_one(encode_transaction(watches, commands), "exec", lambda r: r)
            return None
        if name == "discard":
            if self._multi is None:
                return ErrorReply("ERR DISCARD without MULTI")
            self._end_transaction()
            return OK
        if name == "unwatch" and self._multi is None:
            self._watches = []
            return OK
        if name == "watch" and self._multi is None:
            keys = args[1:]

            def watched(reply: Reply) -> Reply:
                if type(reply) is ErrorReply or not isinstance(reply, list):
                    return reply
                for key, digest in zip(keys, reply, strict=True):
                    assert isinstance(digest, bytes)
                    self._watches.append((key, digest))
                return OK

            self._submit_one([WATCH_DIGESTS_COMMAND, *keys], "watch", watched)
            return None
        # Inside MULTI.
        assert self._multi is not None
        if name == "watch":
            return ErrorReply("ERR WATCH inside MULTI is not allowed")
        if spec.kind is not CommandKind.DATA:
            self._multi_failed = True
            return ErrorReply(
                f"ERR {name.upper()} cannot be queued in a transaction on ShardKV: only data"
                " commands can (send it before MULTI or after EXEC)"
            )
        if len(self._multi) >= self.config.max_transaction_commands:
            self._multi_failed = True
            return ErrorReply(
                "ERR transaction too long: at most"
                f" {self.config.max_transaction_commands} commands can be queued"
                " (max_transaction_commands)"
            )
        self._multi.append(args)
        return QUEUED

    def _end_transaction(self) -> None:
        """Leave MULTI and forget the watched keys (EXEC and DISCARD both do)."""
        self._multi = None
        self._multi_failed = False
        self._watches = []

    def _submit_one(self, args: list[bytes], name: str, finish: Callable[[Reply], Reply]) -> None:
        """Send one data command to the cluster; answer ``finish(reply)``. The connection
        runs nothing else until then."""
        self._busy = True
        started = time.perf_counter()

        def done(results: list[Reply]) -> None:
            self._busy = False
            reply = finish(results[0]) if results else ErrorReply("ERR no reply")
            out = bytearray()
            (write_reply if self.protocol == 2 else write_reply_resp3)(out, reply)
            self.server.metrics.commands.record(
                name, "error" if type(reply) is ErrorReply else "ok", time.perf_counter() - started
            )
            self._write(out)
            if not self._in_process and not self._closing:
                self._process()

        self.server.committer.submit([args], done, has_write=name == "exec")

    def _user(self) -> AclUser | None:
        """The logged-in user as it is now (None: not logged in, or the user was deleted
        or switched off since: the client must AUTH again)."""
        if self.user_name is None:
            return None
        user = self.server.acl.user(self.user_name)
        return user if user is not None and user.enabled else None

    def _denied(
        self, user: AclUser | None, spec: CommandSpec, args: list[bytes]
    ) -> ErrorReply | None:
        if spec.name in NO_AUTH_COMMANDS:
            return None  # Redis's no-auth commands: any client may log in or leave
        if user is None:
            denied: ErrorReply | None = NOAUTH
        else:
            denied = permission_error(user, spec, args)
        if denied is not None:
            self.server.metrics.permission_denials.inc()
        return denied

    def _await_reply(self, name: str, pending: Coroutine[Any, Any, Reply]) -> None:
        """Answer a connection command whose reply needs the cluster (ACL SETUSER): the
        connection is busy (runs nothing else) until it is written."""
        self._busy = True
        task = asyncio.get_running_loop().create_task(pending)

        def done(task: asyncio.Task[Reply]) -> None:
            self._busy = False
            if task.cancelled():
                reply: Reply = ErrorReply(f"ERR {name} was cancelled (the server is stopping)")
            elif task.exception() is not None:
                reply = ErrorReply(f"ERR {name} failed: {task.exception()!r}")
            else:
                reply = task.result()
            out = bytearray()
            (write_reply if self.protocol == 2 else write_reply_resp3)(out, reply)
            self.server.metrics.commands.record(
                name, "error" if type(reply) is ErrorReply else "ok", 0.0
            )
            self._write(out)
            if not self._in_process and not self._closing:
                self._process()

        task.add_done_callback(done)

    def _write(self, out: bytearray) -> None:
        if self._closing or self._transport is None:
            return
        self.server.metrics.bytes_out.inc(len(out))
        self._transport.write(out)
        if self._close_after_write:
            self._closing = True
            self._transport.close()
            return
        if self._transport.get_write_buffer_size() > self.config.max_output_buffer_bytes:
            self._drop("output_limit")

    # -- helpers ---------------------------------------------------------------------

    def request_close_after_reply(self) -> None:
        """QUIT: write the pending replies, then close."""
        self._close_after_write = True

    def _close_when_done(self) -> None:
        if self._transport is not None and not self._closing and not self._busy:
            self._closing = True
            self._transport.close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._closing:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._closing:
            self._reading_paused = False
            self._transport.resume_reading()

    def _protocol_error(self, exc: RespProtocolError) -> None:
        self.server.metrics.protocol_errors.inc()
        log.info("client_protocol_error", peer=self.peer, error=str(exc))
        if self._transport is not None and not self._closing:
            out = bytearray()
            write_reply(out, ErrorReply(f"ERR Protocol error: {exc}"))
            self._transport.write(out)
            self._closing = True
            self._transport.close()

    def _drop(self, reason: str) -> None:
        if self._closing or self._transport is None:
            return
        self.server.metrics.connections_dropped.labels(reason=reason).inc()
        log.warning(
            "client_dropped",
            peer=self.peer,
            reason=reason,
            output_buffer_bytes=self._transport.get_write_buffer_size(),
        )
        self._closing = True
        self._transport.abort()

    def close_idle(self) -> None:
        """Close a client that exceeded ``idle_timeout_s`` (Redis closes it silently)."""
        if self._transport is not None and not self._closing:
            self.server.metrics.connections_dropped.labels(reason="idle_timeout").inc()
            log.info("client_idle_timeout", peer=self.peer)
            self._closing = True
            self._transport.close()

    def close_for_shutdown(self) -> None:
        if self._transport is not None and not self._closing:
            self._closing = True
            self._transport.close()

    def stop_reading(self) -> None:
        self._pause_reading()

    @property
    def idle(self) -> bool:
        return not self._busy

    def info_line(self, now_s: float) -> str:
        """One ``CLIENT LIST`` line, with Redis's field names."""
        t = self._transport
        obl = t.get_write_buffer_size() if t is not None else 0
        return (
            f"id={self.id} addr={self.peer} laddr={self.local} fd=-1 "
            f"name={self.name.decode(errors='replace')} age={int(now_s - self.created_s)} "
            f"idle={int(now_s - self.last_command_s)} flags={'r' if self.readonly else 'N'} "
            f"db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={self._parser.buffered_bytes} "
            f"qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem={obl} tot-mem=0 "
            f"events=r cmd={self.last_command.decode(errors='replace').lower()} "
            f"user={self.user_name or ''} redir=-1 resp={self.protocol}"
        )


def is_loopback(addr: object) -> bool:
    """Whether a socket peer address (as asyncio gives it) is on this machine's loopback."""
    if isinstance(addr, str):
        addr = (addr,)
    if not isinstance(addr, tuple) or not addr:
        return False  # unknown: not trusted
    try:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _fmt_addr(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
