"""`shardkv.client` against a real RESP server process on 127.0.0.1.

The server is Debian's `redis-server` unless SHARDKV_CLIENT_TEST_SERVER holds another
command line, with `{port}` where the port goes, e.g.
`SHARDKV_CLIENT_TEST_SERVER="shardkv serve --port {port}"`. It must speak RESP2 with Redis
semantics and keep no data across restarts (tests restart it and expect an empty store).

Faults are real: SIGKILL, SIGSTOP/SIGCONT, restarts on the same port. Redirects come from a
tiny scripted RESP server inside the test. Waiting is done by polling a condition with a
deadline, never by sleeping for a guessed duration.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import hiredis
import pytest
import uvloop

from shardkv.client import (
    Client,
    ClientClosed,
    ClusterDown,
    CommandError,
    Connection,
    ConnectionLost,
    ConnectionRefused,
    DefiniteFailure,
    Moved,
    RequestNotSent,
    RequestTimeout,
    ServerBusy,
    SyncClient,
    TryAgain,
    UnknownOutcome,
)
from shardkv.core.cluster.slots import key_slot
from tests.integration.harness import free_port

ServerCommand = Callable[[int], list[str]]
"""Port -> the command line that starts a RESP server listening on 127.0.0.1:port."""

SERVER_START_TIMEOUT_S = 10.0
POLL_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.005


def redis_server_command(port: int, *extra_args: str) -> list[str]:
    """redis-server on 127.0.0.1:port with persistence off."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        *extra_args,
    ]


class ServerProcess:
    """One server process we started; every signal goes to its pid and nothing else."""

    def __init__(self, command: ServerCommand, port: int, log_path: Path) -> None:
        self.command = command
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "server not started"
        return self._process.pid

    def start(self) -> None:
        """Start and block until the server answers PING on its port."""
        assert self._process is None, "already running"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(self.port), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._answers_ping():
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {SERVER_START_TIMEOUT_S}s")
            time.sleep(POLL_INTERVAL_S)

    def kill(self) -> None:
        """SIGKILL (works on a stopped process too) and reap."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def shardkv_server_command(port: int, *extra_args: str) -> list[str]:
    """ShardKV on 127.0.0.1:port with the in-memory engine (an empty store at each start)."""
    return [
        sys.executable,
        "-m",
        "shardkv",
        "server",
        "--port",
        str(port),
        "--admin-port",
        "0",
        "--storage-engine",
        "memory",
        "--data-dir",
        f"/tmp/shardkv-client-test-{port}",
        "--log-level",
        "warning",
        *extra_args,
    ]


@pytest.fixture(params=["shardkv", "redis-server"])
def server_command(request: pytest.FixtureRequest) -> ServerCommand:
    """The server under test: ShardKV and Debian's redis-server (the reference), or the
    command line in SHARDKV_CLIENT_TEST_SERVER (see module doc)."""
    template = os.environ.get("SHARDKV_CLIENT_TEST_SERVER")
    if template:
        return lambda port: shlex.split(template.format(port=port))
    return shardkv_server_command if request.param == "shardkv" else redis_server_command


@pytest.fixture
def start_server(
    tmp_path: Path, server_command: ServerCommand
) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start_server(command=None) starts a server on a free port; all are killed
    (by pid) when the test ends, whatever happened."""
    started: list[ServerProcess] = []

    def start(command: ServerCommand | None = None) -> ServerProcess:
        port = free_port()
        process = ServerProcess(command or server_command, port, tmp_path / f"server-{port}.log")
        started.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


async def poll_until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the event loop until `condition()` holds; fail after POLL_TIMEOUT_S."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def poll_until_succeeds(attempt: Callable[[], Awaitable[object]], what: str) -> object:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        try:
            return await attempt()
        except (DefiniteFailure, UnknownOutcome):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting until {what}") from None
            await asyncio.sleep(POLL_INTERVAL_S)


def fast_client(port: int, **overrides: object) -> Client:
    """A client with test-sized timeouts and backoff, and a seeded rng."""
    settings: dict[str, object] = {
        "connect_timeout_s": 2.0,
        "request_timeout_s": 5.0,
        "max_retries": 3,
        "backoff_base_s": 0.005,
        "backoff_max_s": 0.05,
        "rng": random.Random(1),
    }
    settings.update(overrides)
    return Client("127.0.0.1", port, **settings)  # type: ignore[arg-type]


# --- a scripted RESP server for redirects -----------------------------------------------


class ScriptedServer:
    """Answers the n-th command it receives (counting across connections) with
    `script(n)`, raw RESP bytes. Records every command. Parses with hiredis: this is test
    scaffolding, not the product's codec."""

    def __init__(self, script: Callable[[int], bytes]) -> None:
        self.script = script
        self.commands: list[list[bytes]] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command)
                    writer.write(self.script(len(self.commands) - 1))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted_servers() -> AsyncIterator[Callable[..., Awaitable[ScriptedServer]]]:
    started: list[ScriptedServer] = []

    async def start(script: Callable[[int], bytes]) -> ScriptedServer:
        fake = ScriptedServer(script)
        await fake.start()
        started.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in started:
            await fake.close()


def moved_to(port: int, slot: int = 1234) -> bytes:
    return b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, port)


# --- basic commands --------------------------------------------------------------------


async def test_string_commands_follow_redis_semantics(server: ServerProcess) -> None:
    async with fast_client(server.port) as client:
        assert await client.ping() is True
        assert await client.get("missing") is None
        assert await client.set("k", "v") is True
        assert await client.get(b"k") == b"v"
        assert await client.set("k", "other", nx=True) is False
        assert await client.set("absent", "x", xx=True) is False
        assert await client.get("absent") is None
        assert await client.set("k", "v2", xx=True) is True
        assert await client.get("k") == b"v2"

        assert await client.incr("n") == 1
        assert await client.incrby("n", 41) == 42
        assert await client.incrby("n", -2) == 40
        assert await client.append("s", "ab") == 2
        assert await client.append("s", b"\x00\xff") == 4
        assert await client.get("s") == b"ab\x00\xff"

        await client.mset({"m1": "one", "m2": 2, b"m3": b"three"})
        assert await client.mget("m1", "m2", "nope", "m3") == [b"one", b"2", None, b"three"]
        assert await client.exists("m1", "m1", "nope") == 2

        assert await client.ttl("m1") == -1
        assert await client.ttl("nope") == -2
        assert await client.expire("m1", 100) is True
        assert await client.expire("nope", 100) is False
        assert 0 < await client.ttl("m1") <= 100
        assert await client.set("e", "v", ex_s=50) is True
        assert 0 < await client.ttl("e") <= 50
        assert await client.set("p", "v", px_ms=50_000) is True
        assert 0 < await client.ttl("p") <= 50

        assert await client.delete("m1", "m2", "nope") == 2
        assert await client.exists("m1", "m2") == 0
        assert await client.execute("ECHO", "hi") == b"hi"
        assert client.stats.retries == 0


async def test_scan_iter_yields_every_matching_key(server: ServerProcess) -> None:
    async with fast_client(server.port) as client:
        await client.mset({f"scan:{i}": i for i in range(200)})
        await client.mset({f"other:{i}": i for i in range(20)})
        found = [key async for key in client.scan_iter("scan:*", count=7)]
        # SCAN may repeat a key, never skips one present for the whole scan.
        assert set(found) == {f"scan:{i}".encode() for i in range(200)}


async def test_error_replies_raise_command_error_without_retry(server: ServerProcess) -> None:
    async with fast_client(server.port) as client:
        await client.set("text", "abc")
        with pytest.raises(CommandError) as not_integer:
            await client.incr("text")
        assert not_integer.value.code == "ERR"
        assert not_integer.value.message == "ERR value is not an integer or out of range"
        assert not_integer.value.command == "INCR"
        assert not_integer.value.may_have_executed is False

        with pytest.raises(CommandError) as syntax:
            await client.execute("SET", "k", "v", "NOSUCHOPTION")
        assert syntax.value.message == "ERR syntax error"
        assert not isinstance(syntax.value, DefiniteFailure | UnknownOutcome)
        assert client.stats.retries == 0
        # The connection survives error replies.
        assert await client.get("text") == b"abc"
        assert client.stats.connects == 1


# --- pipelining ------------------------------------------------------------------------


async def test_many_tasks_share_one_pipelined_connection(server: ServerProcess) -> None:
    async with fast_client(server.port, pool_size=1, max_inflight_requests=8) as client:
        await client.mset({f"key:{i}": f"value:{i}" for i in range(300)})
        increments = [client.incr("counter") for _ in range(1000)]
        reads = [client.get(f"key:{i}") for i in range(300)]
        results = await asyncio.gather(*increments, *reads)

        # Every INCR got its own reply, and every GET the reply to its own key.
        assert sorted(results[:1000]) == list(range(1, 1001))  # type: ignore[type-var]
        assert results[1000:] == [f"value:{i}".encode() for i in range(300)]
        assert client.stats.connects == 1


async def test_pool_grows_only_under_concurrency(server: ServerProcess) -> None:
    async with fast_client(server.port, pool_size=3) as client:
        for i in range(20):
            await client.set(f"k{i}", i)
        assert client.stats.connects == 1
        await asyncio.gather(*(client.get(f"k{i}") for i in range(200)))
        assert client.stats.connects == 3


async def test_inflight_window_and_broken_connection(server: ServerProcess) -> None:
    """Requests on the wire fail as unknown outcomes, queued ones as definite failures."""
    connection = await Connection.open(
        "127.0.0.1", server.port, connect_timeout_s=2.0, max_inflight_requests=2
    )
    try:
        server.pause()
        requests = [
            asyncio.create_task(connection.request([b"INCR", b"n"], timeout_s=None))
            for _ in range(3)
        ]
        await poll_until(
            lambda: connection.inflight_count == 2 and connection.waiting_count == 1,
            "two requests are on the wire and one waits for a slot",
        )
        server.kill()
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [
            ConnectionLost,
            ConnectionLost,
            RequestNotSent,
        ]
        assert connection.is_closed
        with pytest.raises(RequestNotSent):
            await connection.request([b"PING"], timeout_s=1.0)
    finally:
        await connection.close()


async def test_cancelled_request_does_not_shift_replies(server: ServerProcess) -> None:
    async with fast_client(server.port, pool_size=1) as client:
        await client.mset({"a": "value-a", "b": "value-b"})
        server.pause()
        abandoned = asyncio.create_task(client.get("a"))
        await poll_until(lambda: client.inflight_count == 1, "GET a is on the wire")
        abandoned.cancel()
        wanted = asyncio.create_task(client.get("b"))
        await poll_until(lambda: client.inflight_count == 2, "GET b is on the wire")
        server.resume()
        assert await wanted == b"value-b"
        assert abandoned.cancelled()
        assert client.stats.connects == 1


# --- faults ----------------------------------------------------------------------------


async def test_server_killed_mid_request(
    server: ServerProcess,
) -> None:
    """INCR in flight when the server dies: unknown outcome, not retried. GET in flight:
    retried with backoff until the server is back on the same port."""
    async with fast_client(server.port, max_retries=10_000, pool_size=1) as client:
        await client.ping()
        server.pause()
        incr = asyncio.create_task(client.incr("counter"))
        get = asyncio.create_task(client.get("key"))
        await poll_until(lambda: client.inflight_count == 2, "INCR and GET are on the wire")

        server.kill()
        with pytest.raises(ConnectionLost) as lost:
            await incr
        assert isinstance(lost.value, UnknownOutcome)
        assert lost.value.may_have_executed is True
        assert lost.value.command == "INCR"
        assert any("not safe to repeat" in note for note in lost.value.__notes__)

        await poll_until(
            lambda: client.stats.connect_failures >= 1, "the GET's retry finds the server down"
        )
        assert not get.done()
        server.start()
        assert await get is None  # the restarted server has an empty store
        assert client.stats.retries >= 2  # once for the lost connection, once per refusal


@pytest.mark.parametrize("retry_idempotent_writes", [True, False])
async def test_plain_set_in_flight_when_server_dies(
    server: ServerProcess, retry_idempotent_writes: bool
) -> None:
    """A plain SET is repeated after an unknown outcome unless the caller opted out."""
    client = fast_client(
        server.port,
        max_retries=10_000,
        pool_size=1,
        retry_idempotent_writes=retry_idempotent_writes,
    )
    async with client:
        await client.ping()
        server.pause()
        write = asyncio.create_task(client.set("k", "v"))
        await poll_until(lambda: client.inflight_count == 1, "SET is on the wire")
        server.kill()
        if not retry_idempotent_writes:
            with pytest.raises(ConnectionLost):
                await write
            return
        await poll_until(
            lambda: client.stats.connect_failures >= 1, "the SET's retry finds the server down"
        )
        server.start()
        assert await write is True
        assert await client.get("k") == b"v"


def test_faults_on_uvloop(server: ServerProcess) -> None:
    """The same transport code paths on uvloop, whose transports differ from asyncio's."""

    async def scenario() -> None:
        async with fast_client(server.port, pool_size=1) as client:
            results = await asyncio.gather(*(client.incr("n") for _ in range(200)))
            assert sorted(results) == list(range(1, 201))
            server.pause()
            incr = asyncio.create_task(client.incr("n"))
            get = asyncio.create_task(client.get("n"))
            await poll_until(lambda: client.inflight_count == 2, "INCR and GET are on the wire")
            server.kill()
            with pytest.raises(ConnectionLost):
                await incr
            await poll_until(lambda: client.stats.connect_failures >= 1, "GET is retrying")
            server.start()
            assert await get is None

    uvloop.run(scenario())


async def test_connection_refused_is_definite_after_max_retries() -> None:
    port = free_port()  # nothing listens here
    client = fast_client(
        port, max_retries=3, backoff_base_s=0.001, backoff_max_s=0.004, rng=random.Random(7)
    )
    async with client:
        with pytest.raises(ConnectionRefused) as refused:
            await client.incr("counter")  # not idempotent, but it never reached a server
        assert isinstance(refused.value, DefiniteFailure)
        assert refused.value.may_have_executed is False
        assert refused.value.address == ("127.0.0.1", port)
        assert any("gave up after 4 attempts" in note for note in refused.value.__notes__)
        assert client.stats.connects == 4
        assert client.stats.connect_failures == 4
        assert client.stats.retries == 3

        # Full jitter: retry n sleeps uniform(0, min(max, base * 2**n)) from the given rng.
        expected_rng = random.Random(7)
        expected_s = [expected_rng.uniform(0, min(0.004, 0.001 * 2**n)) for n in range(3)]
        assert client.stats.backoff_total_s == pytest.approx(sum(expected_s))


async def test_request_timeout_on_a_stopped_server(server: ServerProcess) -> None:
    async with fast_client(server.port, request_timeout_s=0.3, max_retries=2) as client:
        await client.set("n", 10)
        server.pause()
        try:
            with pytest.raises(RequestTimeout) as timed_out:
                await client.incr("n")
            assert timed_out.value.may_have_executed is True
            assert client.stats.retries == 0  # INCR is never repeated blindly

            with pytest.raises(RequestTimeout) as read_timed_out:
                await client.get("n")
            assert client.stats.retries == 2  # a read is repeated, up to max_retries
            assert any("gave up after 3" in note for note in read_timed_out.value.__notes__)
        finally:
            server.resume()

        # "Unknown" meant it: the server still executed the INCR it had received.
        async def read_n() -> bytes | None:
            return await client.get("n")

        await poll_until_succeeds(read_n, "the server answers again")
        assert await client.get("n") == b"11"


async def test_connection_limit_is_server_busy(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(lambda port: shardkv_server_command(port, "--max-connections", "1"))
    holder = fast_client(server.port, pool_size=1)
    await poll_until_succeeds(holder.ping, "the holder owns the only connection")
    async with fast_client(server.port, max_retries=2) as client:
        with pytest.raises(ServerBusy) as busy:
            await client.incr("n")
        assert isinstance(busy.value, DefiniteFailure)
        assert client.stats.retries == 2

        await holder.close()
        await poll_until_succeeds(client.ping, "the connection slot is free again")
        # Nothing the busy server turned away was executed.
        assert await client.get("n") is None


# --- redirects -------------------------------------------------------------------------


async def test_client_follows_moved_to_the_named_node(
    server: ServerProcess, scripted_servers: Callable[..., Awaitable[ScriptedServer]]
) -> None:
    redirector = await scripted_servers(lambda _: moved_to(server.port))
    async with fast_client(redirector.port) as client:
        assert await client.set("k", "v") is True
        assert await client.get("k") == b"v"
        assert client.stats.redirects == 2
        assert [command[0] for command in redirector.commands] == [b"SET", b"GET"]


async def test_slot_cache_sends_later_commands_straight_to_the_owner(
    server: ServerProcess, scripted_servers: Callable[..., Awaitable[ScriptedServer]]
) -> None:
    redirector = await scripted_servers(lambda _: moved_to(server.port, slot=1234))
    async with fast_client(redirector.port, key_slot=lambda key: 1234) as client:
        await client.set("k", "v")
        for _ in range(5):
            assert await client.get("k") == b"v"
        assert len(redirector.commands) == 1
        assert client.stats.redirects == 1


async def test_default_slot_cache_uses_redis_cluster_hash_slots(
    server: ServerProcess, scripted_servers: Callable[..., Awaitable[ScriptedServer]]
) -> None:
    slot = key_slot(b"user1")
    assert key_slot(b"other") != slot
    redirector = await scripted_servers(lambda _: moved_to(server.port, slot=slot))
    async with fast_client(redirector.port) as client:
        await client.set("{user1}:a", "1")  # redirected; the client learns the slot's owner
        await client.set("{user1}:b", "2")  # same hash tag, same slot: sent straight there
        assert await client.mget("{user1}:a", "{user1}:b") == [b"1", b"2"]
        assert len(redirector.commands) == 1
        assert await client.get("other") is None  # another slot: asks the seed again
        assert len(redirector.commands) == 2


async def test_redirect_loop_gives_up_with_moved(
    scripted_servers: Callable[..., Awaitable[ScriptedServer]],
) -> None:
    ports: list[int] = []
    loop_server = await scripted_servers(lambda _: moved_to(ports[0], slot=77))
    ports.append(loop_server.port)
    async with fast_client(loop_server.port, max_redirects=3) as client:
        with pytest.raises(Moved) as moved:
            await client.get("k")
        assert (moved.value.slot, moved.value.host, moved.value.port) == (
            77,
            "127.0.0.1",
            loop_server.port,
        )
        assert len(loop_server.commands) == 4  # first attempt + 3 redirects


async def test_tryagain_is_retried_then_redirect_followed(
    server: ServerProcess, scripted_servers: Callable[..., Awaitable[ScriptedServer]]
) -> None:
    def script(index: int) -> bytes:
        if index < 2:
            return b"-TRYAGAIN shard 3 is electing a leader\r\n"
        return moved_to(server.port)

    electing = await scripted_servers(script)
    async with fast_client(electing.port) as client:
        assert await client.incr("n") == 1  # definite failures are retried for any command
        assert client.stats.retries == 2
        assert client.stats.redirects == 1


async def test_clusterdown_raises_after_max_retries(
    scripted_servers: Callable[..., Awaitable[ScriptedServer]],
) -> None:
    down = await scripted_servers(lambda _: b"-CLUSTERDOWN The cluster is down\r\n")
    async with fast_client(down.port, max_retries=2) as client:
        with pytest.raises(ClusterDown) as cluster_down:
            await client.set("k", "v")
        assert cluster_down.value.may_have_executed is False
        assert len(down.commands) == 3
        with pytest.raises(DefiniteFailure):
            await client.get("k")


async def test_tryagain_is_a_definite_failure(
    scripted_servers: Callable[..., Awaitable[ScriptedServer]],
) -> None:
    busy = await scripted_servers(lambda _: b"-TRYAGAIN no leader\r\n")
    async with fast_client(busy.port, max_retries=1) as client:
        with pytest.raises(TryAgain):
            await client.incr("n")
        assert len(busy.commands) == 2


# --- lifecycle --------------------------------------------------------------------------


async def test_close_fails_inflight_and_later_calls(server: ServerProcess) -> None:
    client = fast_client(server.port)
    await client.ping()
    server.pause()
    try:
        incr = asyncio.create_task(client.incr("n"))
        await poll_until(lambda: client.inflight_count == 1, "INCR is on the wire")
        await client.close()
        with pytest.raises(ConnectionLost):
            await incr
        with pytest.raises(ClientClosed):
            await client.get("n")
    finally:
        server.resume()


# --- the blocking wrapper ---------------------------------------------------------------


def test_sync_client_runs_commands_from_many_threads(server: ServerProcess) -> None:
    with SyncClient("127.0.0.1", server.port, request_timeout_s=5.0) as client:
        assert client.ping() is True
        assert client.set("k", "v", ex_s=100) is True
        assert client.get("k") == b"v"
        assert 0 < client.ttl("k") <= 100
        client.mset({f"s:{i}": i for i in range(50)})
        assert set(client.scan_iter("s:*", count=5)) == {f"s:{i}".encode() for i in range(50)}
        assert client.mget("s:1", "missing") == [b"1", None]
        with pytest.raises(CommandError):
            client.incr("k")

        def work() -> None:
            for _ in range(50):
                client.incr("shared")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=POLL_TIMEOUT_S)
        assert client.get("shared") == b"200"
        assert client.delete("shared", "k") == 2

    client.close()  # idempotent
    with pytest.raises(RuntimeError):
        client.get("k")


def test_sync_client_reports_definite_failures() -> None:
    with (
        SyncClient(
            "127.0.0.1", free_port(), max_retries=1, backoff_base_s=0.001, rng=random.Random(3)
        ) as client,
        pytest.raises(ConnectionRefused),
    ):
        client.get("k")
