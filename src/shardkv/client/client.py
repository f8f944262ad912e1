"""The asyncio ShardKV client: connection pools per node, redirects, retries with backoff.

Owns: choosing the node and connection for a command, following `-MOVED`, retrying what is
safe to retry (`shardkv.client.policy`), turning error replies into typed errors
(`shardkv.client.errors`). Never: RESP framing (`shardkv.core.resp`), socket handling
(`shardkv.client.connection`).

Routing: a command goes to the seed node (`host`, `port`) and follows `-MOVED` to the node
it names. The client remembers which node served each slot (learned from MOVED only) and
sends the next keyed command for that slot there directly, computing the slot of the first
key with `key_slot` (Redis Cluster's CRC16 rule by default). A node that cannot be reached
sends the command back to the seed. Against a server that never redirects (one node, plain
Redis) the cache stays empty and everything goes to the seed.
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from shardkv.client.connection import DEFAULT_MAX_INFLIGHT_REQUESTS, Connection, command_name
from shardkv.client.errors import (
    Address,
    ClientClosed,
    CommandError,
    ConnectionRefused,
    DefiniteFailure,
    Moved,
    RequestNotSent,
    ServerBusy,
    UnexpectedReply,
    UnknownOutcome,
    error_from_reply,
    format_address,
)
from shardkv.client.policy import backoff_delay_s, is_safe_to_repeat
from shardkv.core.cluster.slots import SLOT_COUNT
from shardkv.core.cluster.slots import key_slot as cluster_key_slot
from shardkv.core.resp import ErrorReply, Reply, SimpleString

Arg = bytes | bytearray | memoryview | str | int | float
"""What a command argument may be: bytes as is, str as UTF-8, numbers in decimal."""


MAX_NODE_POOLS = 64
"""Nodes the client keeps connection pools for; the least recently used is closed beyond."""

_CONNECTION_FAILURES = (ConnectionRefused, RequestNotSent, ServerBusy, UnknownOutcome)
"""Failures that say the node, not the shard, is the problem: go back to the seed."""

# Commands whose first key is args[1] (single- and multi-key). Only these are routed by the
# slot cache; anything else goes to the seed.
_KEYED_COMMANDS = frozenset(
    {
        b"GET", b"SET", b"SETNX", b"SETEX", b"PSETEX", b"GETSET", b"GETDEL", b"GETEX",
        b"INCR", b"INCRBY", b"INCRBYFLOAT", b"DECR", b"DECRBY", b"APPEND", b"STRLEN",
        b"GETRANGE", b"SETRANGE", b"SUBSTR", b"MGET", b"MSET", b"MSETNX", b"DEL", b"UNLINK",
        b"EXISTS", b"TYPE", b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT", b"PERSIST",
        b"TTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME",
    }
)  # fmt: skip


@dataclass(slots=True)
class ClientStats:
    """Counters since the client was created; for tests, logs and metrics."""

    commands: int = 0
    connects: int = 0
    connect_failures: int = 0
    retries: int = 0
    redirects: int = 0
    backoff_total_s: float = 0.0


def encode_arg(value: Arg) -> bytes:
    """One command argument as bytes. `bool` is refused: `True` would be sent as `True`."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("bool is not a valid command argument; send b'1'/b'0' or an int")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{type(value).__name__} is not a valid command argument")


class _NodePool:
    """Up to `size` connections to one node, opened lazily.

    A command gets the connection with the lightest load (slots taken plus waiters). A new
    connection is opened only when every open one is busy, so a sequential caller uses one
    connection and concurrent callers spread over up to `size`. Concurrent callers that
    need the same new connection share one connect attempt.
    """

    def __init__(
        self,
        address: Address,
        *,
        size: int,
        open_connection: Callable[[Address], Awaitable[Connection]],
    ) -> None:
        self.address = address
        self._open_connection = open_connection
        self._connections: list[Connection | None] = [None] * size
        self._connecting: list[asyncio.Task[Connection] | None] = [None] * size
        self._connect_waiters = [0] * size

    async def acquire(self) -> Connection:
        """A usable connection; raises what `Connection.open` raises (`ConnectionRefused`)."""
        index = self._pick()
        connection = self._connections[index]
        if connection is not None:
            return connection
        task = self._connecting[index]
        if task is None:
            task = asyncio.create_task(self._connect(index))
            task.add_done_callback(_consume_exception)
            self._connecting[index] = task
        self._connect_waiters[index] += 1
        try:
            # shield: one caller giving up must not cancel the attempt the others share.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or current.cancelling() == 0):
                # The pool was closed under us; our caller did not ask to be cancelled.
                raise RequestNotSent(
                    f"the connection attempt to {format_address(self.address)} was abandoned"
                    " because the client closed or dropped this node. Nothing was sent.",
                    address=self.address,
                ) from None
            raise
        finally:
            self._connect_waiters[index] -= 1

    @property
    def inflight_count(self) -> int:
        return sum(c.inflight_count for c in self._connections if c is not None)

    def abort(self) -> None:
        """Close every connection and cancel connect attempts, without waiting."""
        for index, task in enumerate(self._connecting):
            if task is not None:
                task.cancel()
                self._connecting[index] = None
        for connection in self._connections:
            if connection is not None:
                connection.abort()

    async def close(self) -> None:
        """`abort()`, then wait for the transports to close."""
        connections = [c for c in self._connections if c is not None]
        self.abort()
        self._connections = [None] * len(self._connections)
        await asyncio.gather(*(c.close() for c in connections))

    def _pick(self) -> int:
        # Key: (load, kind); an open connection beats a pending connect beats a new one at
        # equal load, so the pool grows only when the open connections are all busy.
        best_index = 0
        best_key: tuple[int, int] | None = None
        for index, connection in enumerate(self._connections):
            if connection is not None and connection.is_closed:
                self._connections[index] = connection = None
            if connection is not None:
                key = (connection.load, 0)
            elif self._connecting[index] is not None:
                key = (self._connect_waiters[index], 1)
            else:
                key = (0, 2)
            if best_key is None or key < best_key:
                best_index, best_key = index, key
        return best_index

    async def _connect(self, index: int) -> Connection:
        try:
            connection = await self._open_connection(self.address)
        finally:
            self._connecting[index] = None
        self._connections[index] = connection
        return connection


def _consume_exception(task: asyncio.Task[Connection]) -> None:
    # Every waiter may have given up; mark the failure retrieved so asyncio does not log it.
    if not task.cancelled():
        task.exception()


class Client:
    """An asyncio client for ShardKV (and Redis): `await client.get(b"k")`.

    Create and use it inside one running event loop; any number of tasks may share it, and
    their commands are pipelined over at most `pool_size` connections per node. Close it
    with `await client.close()` or `async with Client(...) as client:`.

    Errors (see `shardkv.client.errors`): `CommandError` when the server rejects a command,
    `DefiniteFailure` once `max_retries` retries of a command that was not executed are used
    up (or `Moved` after `max_redirects` redirects), `UnknownOutcome` when a command that is
    not safe to repeat was sent and got no reply (or when retries of a safe one ran out).

    Parameters:
        host, port: the seed node; every command starts there unless the slot cache knows
            better.
        pool_size: connections per node.
        connect_timeout_s: bound on opening one connection (TCP + TLS).
        request_timeout_s: bound on one attempt of one command, from getting a connection
            (connecting is bounded by `connect_timeout_s`) to its reply. None: no bound (a
            stalled server then blocks the caller forever). There is no overall deadline:
            a call takes at most about (max_retries + 1) * (connect_timeout_s +
            request_timeout_s) plus backoff; wrap it in `asyncio.timeout` for less.
        max_retries: retries after the first attempt, for definite failures and for unknown
            outcomes of commands safe to repeat. Redirects do not count.
        backoff_base_s, backoff_max_s: retry n sleeps uniform(0, min(max, base * 2**n)).
        max_redirects: MOVED replies followed for one command before raising `Moved`.
        max_inflight_requests: pipelined requests per connection awaiting replies.
        retry_idempotent_writes: repeat plain SET and MSET after an unknown outcome (see
            `shardkv.client.policy` for why a linearizability test must turn this off).
        key_slot: key -> slot for the slot cache (None turns the cache off).
        ssl: a client `SSLContext` for TLS; None for plain TCP.
        username, password: log every connection in (``AUTH [username] password``) before
            it carries commands; a refused login raises `CommandError` (``WRONGPASS``),
            which is never retried. None: no login (the server's default user).
        rng: the randomness for backoff jitter; pass a seeded one for reproducible tests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7379,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float | None = 10.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        max_redirects: int = 5,
        max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS,
        retry_idempotent_writes: bool = True,
        key_slot: Callable[[bytes], int] | None = cluster_key_slot,
        ssl: ssl_module.SSLContext | None = None,
        rng: random.Random | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        for name, value in (
            ("pool_size", pool_size),
            ("max_inflight_requests", max_inflight_requests),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, not {value}")
        for name, value in (("max_retries", max_retries), ("max_redirects", max_redirects)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if connect_timeout_s <= 0 or (request_timeout_s is not None and request_timeout_s <= 0):
            raise ValueError("timeouts must be positive")
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff delays must be >= 0")
        self._seed: Address = (host, port)
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_redirects = max_redirects
        self._max_inflight_requests = max_inflight_requests
        self._retry_idempotent_writes = retry_idempotent_writes
        self._key_slot = key_slot
        self._ssl = ssl
        self._login: list[bytes] | None = None
        if password is not None:
            self._login = [b"AUTH", *([username.encode()] if username else []), password.encode()]
        elif username is not None:
            raise ValueError("a username needs a password")
        self._rng = rng if rng is not None else random.Random()
        # Most recently used last; bounded by MAX_NODE_POOLS.
        self._pools: OrderedDict[Address, _NodePool] = OrderedDict()
        # slot -> node that last served it; at most SLOT_COUNT entries.
        self._slot_owners: dict[int, Address] = {}
        self._closed = False
        self.stats = ClientStats()

    @property
    def seed_address(self) -> Address:
        return self._seed

    @property
    def inflight_count(self) -> int:
        """Requests written to some connection and not yet answered, across all nodes."""
        return sum(pool.inflight_count for pool in self._pools.values())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection. Commands in flight fail (`ConnectionLost` if they were
        sent, so their outcome is unknown); later calls raise `ClientClosed`. Idempotent.
        """
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(pool.close() for pool in pools))

    # --- the generic path -------------------------------------------------------------

    async def execute(self, *args: Arg) -> Reply:
        """Run one command, e.g. `await client.execute("SET", "k", "v")`, and return the reply
        as parsed (`SimpleString`, bytes, int, None, list, `NULL_ARRAY`).

        An error reply is raised (`CommandError`, or a definite failure that was retried
        until `max_retries`). Retries and redirects follow the module's policy.
        """
        if not args:
            raise ValueError("execute needs at least the command name")
        command = [encode_arg(arg) for arg in args]
        name = command_name(command)
        safe_to_repeat = is_safe_to_repeat(
            command, retry_idempotent_writes=self._retry_idempotent_writes
        )
        slot = self._slot_of(command)
        address = self._slot_owners.get(slot, self._seed) if slot is not None else self._seed
        retries = 0
        redirects = 0
        self.stats.commands += 1
        while True:
            if self._closed:
                raise ClientClosed(f"{name} was not sent: the client is closed.", command=name)
            try:
                return await self._attempt(address, command, name)
            except Moved as exc:
                if redirects >= self._max_redirects:
                    exc.add_note(f"gave up after following {redirects} redirects")
                    raise
                redirects += 1
                self.stats.redirects += 1
                address = (exc.host, exc.port)
                if slot is not None and 0 <= exc.slot < SLOT_COUNT:
                    self._slot_owners[exc.slot] = address
                continue
            except (DefiniteFailure, UnknownOutcome) as exc:
                if self._closed:
                    raise
                if isinstance(exc, UnknownOutcome) and not safe_to_repeat:
                    exc.add_note(f"{name} is not safe to repeat, so the client did not retry it")
                    raise
                if retries >= self._max_retries:
                    exc.add_note(
                        f"gave up after {retries + 1} attempts (max_retries={self._max_retries})"
                    )
                    raise
                if isinstance(exc, _CONNECTION_FAILURES) and address != self._seed:
                    # The node we were sent to is unreachable: ask the seed for the route.
                    if slot is not None and self._slot_owners.get(slot) == address:
                        del self._slot_owners[slot]
                    address = self._seed
            delay_s = backoff_delay_s(
                retries, base_s=self._backoff_base_s, max_s=self._backoff_max_s, rng=self._rng
            )
            retries += 1
            self.stats.retries += 1
            self.stats.backoff_total_s += delay_s
            await asyncio.sleep(delay_s)

    async def transaction(self, commands: Sequence[Sequence[Arg]]) -> Reply:
        """Run ``commands`` as one MULTI/EXEC block and return EXEC's reply: the list of
        their replies (an error reply of one command is in the list as an `ErrorReply`;
        the others still ran, as in Redis).

        The block goes over a connection of its own to the node that leads the slot of its
        first key (every key must be in one slot: hash tags). Raises `DefiniteFailure` if
        the block did not run (refused before EXEC, or EXEC answered MOVED, TRYAGAIN, ...;
        retried and redirected like `execute`), `UnknownOutcome` if EXEC was sent and no
        reply came (never repeated: the block may have run), `CommandError` for EXECABORT
        (a command of the block was refused when queued).
        """
        encoded = [[encode_arg(arg) for arg in command] for command in commands]
        if not encoded:
            raise ValueError("a transaction needs at least one command")
        first_keyed = next((c for c in encoded if len(c) >= 2), None)
        slot = self._key_slot(first_keyed[1]) if first_keyed and self._key_slot else None
        address = self._slot_owners.get(slot, self._seed) if slot is not None else self._seed
        retries = redirects = 0
        self.stats.commands += 1
        while True:
            if self._closed:
                raise ClientClosed("EXEC was not sent: the client is closed.", command="EXEC")
            try:
                return await self._transaction_attempt(address, encoded)
            except Moved as exc:
                if redirects >= self._max_redirects:
                    raise
                redirects += 1
                self.stats.redirects += 1
                address = (exc.host, exc.port)
                if slot is not None and 0 <= exc.slot < SLOT_COUNT:
                    self._slot_owners[exc.slot] = address
                continue
            except DefiniteFailure:
                if retries >= self._max_retries:
                    raise
                if address != self._seed:
                    address = self._seed
            delay_s = backoff_delay_s(
                retries, base_s=self._backoff_base_s, max_s=self._backoff_max_s, rng=self._rng
            )
            retries += 1
            self.stats.retries += 1
            await asyncio.sleep(delay_s)

    async def _transaction_attempt(self, address: Address, commands: list[list[bytes]]) -> Reply:
        connection = await self._open_connection(address)
        try:
            try:
                for command in [[b"MULTI"], *commands]:
                    reply = await connection.request(command, timeout_s=self._request_timeout_s)
                    if isinstance(reply, ErrorReply):
                        raise error_from_reply(reply.message, address=address, command="MULTI")
            except UnknownOutcome as exc:
                # EXEC was never sent: nothing of the block ran.
                raise RequestNotSent(
                    f"the transaction was not executed: {exc}", address=address, command="EXEC"
                ) from exc
            reply = await connection.request([b"EXEC"], timeout_s=self._request_timeout_s)
            if isinstance(reply, ErrorReply):
                raise error_from_reply(reply.message, address=address, command="EXEC")
            return reply
        finally:
            await connection.close()

    async def _attempt(self, address: Address, command: list[bytes], name: str) -> Reply:
        connection = await self._pool(address).acquire()
        reply = await connection.request(command, timeout_s=self._request_timeout_s)
        if isinstance(reply, ErrorReply):
            raise error_from_reply(reply.message, address=address, command=name)
        return reply

    def _pool(self, address: Address) -> _NodePool:
        pool = self._pools.get(address)
        if pool is not None:
            self._pools.move_to_end(address)
            return pool
        if len(self._pools) >= MAX_NODE_POOLS:
            evicted = next((a for a in self._pools if a != self._seed), None)
            if evicted is not None:
                # Requests still in flight there fail (ConnectionLost): the client has been
                # sent to MAX_NODE_POOLS other nodes since this one was used.
                self._pools.pop(evicted).abort()
        pool = _NodePool(address, size=self._pool_size, open_connection=self._open_connection)
        self._pools[address] = pool
        return pool

    async def _open_connection(self, address: Address) -> Connection:
        self.stats.connects += 1
        try:
            connection = await Connection.open(
                address[0],
                address[1],
                connect_timeout_s=self._connect_timeout_s,
                ssl=self._ssl,
                max_inflight_requests=self._max_inflight_requests,
            )
        except ConnectionRefused:
            self.stats.connect_failures += 1
            raise
        if self._login is not None:
            reply = await connection.request(self._login, timeout_s=self._connect_timeout_s)
            if isinstance(reply, ErrorReply):
                await connection.close()
                raise CommandError(
                    f"{address[0]}:{address[1]} refused the login: {reply.message}",
                    code=reply.message.split(" ", 1)[0],
                    server_message=reply.message,
                    address=address,
                    command="AUTH",
                )
        return connection

    def _slot_of(self, command: Sequence[bytes]) -> int | None:
        if self._key_slot is None or len(command) < 2 or command[0].upper() not in _KEYED_COMMANDS:
            return None
        return self._key_slot(command[1])

    # --- typed helpers ----------------------------------------------------------------

    async def ping(self) -> bool:
        """PING; True when the server answers PONG."""
        reply = await self.execute("PING")
        return isinstance(reply, SimpleString) and reply.text == "PONG"

    async def get(self, key: Arg) -> bytes | None:
        """GET: the value, or None if the key does not exist."""
        return _bulk_or_none(await self.execute("GET", key), "GET")

    async def set(
        self,
        key: Arg,
        value: Arg,
        *,
        ex_s: int | None = None,
        px_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
    ) -> bool:
        """SET with EX (`ex_s` seconds), PX (`px_ms` milliseconds), NX, XX, KEEPTTL.

        Returns True when the value was written, False when NX/XX prevented it. At most one
        of `ex_s`, `px_ms`, `keepttl`, and at most one of `nx`, `xx` (ValueError otherwise).
        """
        if sum((ex_s is not None, px_ms is not None, keepttl)) > 1:
            raise ValueError("give at most one of ex_s, px_ms, keepttl")
        if nx and xx:
            raise ValueError("give at most one of nx, xx")
        args: list[Arg] = ["SET", key, value]
        if ex_s is not None:
            args += ["EX", ex_s]
        if px_ms is not None:
            args += ["PX", px_ms]
        if keepttl:
            args.append("KEEPTTL")
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        reply = await self.execute(*args)
        if reply is None:
            return False
        if isinstance(reply, SimpleString) and reply.text == "OK":
            return True
        raise _unexpected(reply, "SET")

    async def delete(self, *keys: Arg) -> int:
        """DEL: how many of `keys` existed and were removed. Not retried after an unknown
        outcome (a repeat would report 0 for keys the first attempt removed)."""
        return _int(await self.execute("DEL", *keys), "DEL")

    async def exists(self, *keys: Arg) -> int:
        """EXISTS: how many of `keys` exist (a key given twice counts twice)."""
        return _int(await self.execute("EXISTS", *keys), "EXISTS")

    async def incr(self, key: Arg) -> int:
        """INCR: the value after adding 1. Never retried after an unknown outcome."""
        return _int(await self.execute("INCR", key), "INCR")

    async def incrby(self, key: Arg, amount: int) -> int:
        """INCRBY: the value after adding `amount`. Never retried after an unknown outcome."""
        return _int(await self.execute("INCRBY", key, amount), "INCRBY")

    async def append(self, key: Arg, value: Arg) -> int:
        """APPEND: the value's length afterwards. Never retried after an unknown outcome."""
        return _int(await self.execute("APPEND", key, value), "APPEND")

    async def mget(self, *keys: Arg) -> list[bytes | None]:
        """MGET: the values, in the order of `keys`, None for missing keys."""
        reply = await self.execute("MGET", *keys)
        if not isinstance(reply, list):
            raise _unexpected(reply, "MGET")
        return [_bulk_or_none(item, "MGET") for item in reply]

    async def mset(self, mapping: Mapping[Arg, Arg]) -> None:
        """MSET: write every key of `mapping` at once."""
        if not mapping:
            raise ValueError("mset needs at least one key")
        args: list[Arg] = ["MSET"]
        for key, value in mapping.items():
            args += [key, value]
        reply = await self.execute(*args)
        if not (isinstance(reply, SimpleString) and reply.text == "OK"):
            raise _unexpected(reply, "MSET")

    async def expire(self, key: Arg, ttl_s: int) -> bool:
        """EXPIRE: True if the key exists and now expires in `ttl_s` seconds."""
        return _int(await self.execute("EXPIRE", key, ttl_s), "EXPIRE") == 1

    async def ttl(self, key: Arg) -> int:
        """TTL in seconds; -1 if the key has no expiry, -2 if it does not exist."""
        return _int(await self.execute("TTL", key), "TTL")

    async def scan(
        self,
        cursor: int = 0,
        *,
        match: Arg | None = None,
        count: int | None = None,
        type_: str | None = None,
    ) -> tuple[int, list[bytes]]:
        """One SCAN step: (next cursor, keys). Start at 0; the scan is done when the next
        cursor is 0. `count` is a hint for the work per step, not a page size."""
        args: list[Arg] = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        if type_ is not None:
            args += ["TYPE", type_]
        reply = await self.execute(*args)
        if isinstance(reply, list) and len(reply) == 2:
            next_cursor, page = reply
            if isinstance(next_cursor, bytes) and next_cursor.isdigit() and isinstance(page, list):
                keys = [key for key in page if isinstance(key, bytes)]
                if len(keys) == len(page):
                    return int(next_cursor), keys
        raise _unexpected(reply, "SCAN")

    async def scan_iter(
        self,
        match: Arg | None = None,
        *,
        count: int | None = None,
        type_: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Every key matching `match` (a glob), one SCAN step at a time. As with Redis, a
        key present for the whole scan is yielded at least once; it may be yielded twice.
        Scans the keyspace of the node that answers (the seed), not the whole cluster.
        """
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, match=match, count=count, type_=type_)
            for key in keys:
                yield key
            if cursor == 0:
                return


def _unexpected(reply: object, command: str) -> UnexpectedReply:
    return UnexpectedReply(
        f"unexpected reply to {command}: {type(reply).__name__}. The command was executed;"
        " the server is not speaking ShardKV/Redis semantics for it.",
        command=command,
    )


def _bulk_or_none(reply: object, command: str) -> bytes | None:
    if reply is None or isinstance(reply, bytes):
        return reply
    raise _unexpected(reply, command)


def _int(reply: object, command: str) -> int:
    if isinstance(reply, int) and not isinstance(reply, bool):
        return reply
    raise _unexpected(reply, command)


__all__ = ["MAX_NODE_POOLS", "Arg", "Client", "ClientStats", "encode_arg"]
