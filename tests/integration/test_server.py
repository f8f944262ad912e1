"""The single-node server, driven as a real process by real Redis clients."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.integration.harness import ServerProcess


def test_redis_py_and_redis_cli_can_set_and_get(server: ServerProcess, redis_cli: str) -> None:
    r = server.client()
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.incr("counter") == 1
    assert r.mget("greeting", "missing", "counter") == [b"hello", None, b"1"]

    def cli(*args: str) -> str:
        return subprocess.run(
            [redis_cli, "-p", str(server.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()

    assert cli("set", "from-cli", "v1") == "OK"
    assert cli("get", "from-cli") == "v1"
    assert r.get("from-cli") == b"v1"
    assert cli("dbsize") == "3"
    assert cli("ping") == "PONG"
    assert "(error) ERR unknown command 'nosuch'" in cli("nosuch", "x") or cli(
        "nosuch", "x"
    ).startswith("ERR unknown command 'nosuch'")


def test_keys_with_expiry_disappear_for_every_reader(server: ServerProcess) -> None:
    r = server.client()
    r.set("short", "v", px=100)
    r.set("long", "v", ex=1000)
    assert 0 < r.pttl("short") <= 100
    deadline = time.monotonic() + 5
    while r.get("short") is not None:
        assert time.monotonic() < deadline, "an expired key stayed visible"
        time.sleep(0.02)
    assert r.exists("short") == 0
    # The sweep deletes it for real, so DBSIZE drops too.
    while r.dbsize() != 1:
        assert time.monotonic() < deadline, "the expiry sweep did not delete the key"
        time.sleep(0.02)
    assert r.get("long") == b"v"


def test_data_survives_sigint_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = ServerProcess(data).start()
    try:
        r = srv.client()
        for i in range(500):
            r.set(f"k{i}", f"v{i}")
        r.set("big", b"x" * 1_000_000)
        assert srv.stop(signal.SIGINT) == 0
    finally:
        srv.stop(signal.SIGKILL)
    with ServerProcess(data, port=srv.port) as again:
        r = again.client()
        assert r.dbsize() == 501
        assert r.get("k0") == b"v0" and r.get("k499") == b"v499"
        assert r.get("big") == b"x" * 1_000_000


def _write_load(
    port: int, n_threads: int, acked: list[set[str]], stop: threading.Event
) -> list[threading.Thread]:
    def worker(t: int) -> None:
        r = redis.Redis(port=port, socket_timeout=5)
        i = 0
        while not stop.is_set():
            key = f"t{t}-{i}"
            try:
                if r.set(key, key):
                    acked[t].add(key)
            except (redis.ConnectionError, redis.TimeoutError):
                return  # outcome unknown: not counted as acknowledged
            i += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
    for th in threads:
        th.start()
    return threads


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_acknowledged_write_is_lost_when_stopped_under_load(tmp_path: Path, sig: int) -> None:
    data = tmp_path / "data"
    srv = ServerProcess(data).start()
    acked: list[set[str]] = [set() for _ in range(8)]
    stop = threading.Event()
    try:
        threads = _write_load(srv.port, 8, acked, stop)
        deadline = time.monotonic() + 10
        while sum(map(len, acked)) < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.send_signal(sig)
        code = srv.wait(30)
        stop.set()
        for th in threads:
            th.join(10)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), srv.log()
    finally:
        stop.set()
        srv.stop(signal.SIGKILL)
    all_acked = set().union(*acked)
    assert len(all_acked) >= 2000
    with ServerProcess(data, port=srv.port) as again:
        r = again.client()
        keys = sorted(all_acked)
        lost = [k for k, v in zip(keys, r.mget(keys), strict=True) if v != k.encode()]
        assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"


def test_connection_limit_rejects_the_next_client_and_keeps_the_others(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", "--max-connections", "3") as srv:
        # The harness's own readiness probe has closed; three clients fill the limit.
        first = [redis.Redis(port=srv.port, single_connection_client=True) for _ in range(3)]
        for i, c in enumerate(first):
            assert c.set(f"c{i}", i)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as extra:
            reply = extra.recv(100)
            assert reply == b"-ERR max number of clients reached\r\n"
            assert extra.recv(100) == b"", "the server closes the rejected connection"
        for i, c in enumerate(first):
            assert c.get(f"c{i}") == str(i).encode()
        first[0].close()
        deadline = time.monotonic() + 5
        while True:  # a freed slot is usable again
            try:
                assert redis.Redis(port=srv.port).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_garbage_gets_a_protocol_error_and_the_server_lives_on(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"*2\r\n$3\r\nGET\r\n$x\r\n")
        data = s.recv(200)
        assert data.startswith(b"-ERR Protocol error: ")
        assert s.recv(100) == b""
    assert server.client().ping()
    assert "Traceback" not in server.log()


def test_resets_and_half_closed_sockets_leave_no_traceback(server: ServerProcess) -> None:
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhel")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nh\r\n$1\r\nv\r\nPING\r\n")
        s.shutdown(socket.SHUT_WR)  # half-close: the replies must still arrive
        got = b""
        while chunk := s.recv(100):
            got += chunk
        assert got == b"+OK\r\n+PONG\r\n"
    assert server.client().get("h") == b"v"
    assert "Traceback" not in server.log()


def test_json_logs_are_one_object_per_line(server: ServerProcess) -> None:
    server.client().set("x", "y")
    lines = [ln for ln in server.log().splitlines() if ln.strip()]
    assert lines, "the server logged nothing"
    events = [json.loads(ln) for ln in lines]
    assert any(e["event"] == "server_listening" and e["port"] == server.port for e in events)
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)


def test_admin_port_serves_health_and_prometheus_metrics(server: ServerProcess) -> None:
    r = server.client()
    r.set("a", "1")
    r.get("a")
    base = f"http://127.0.0.1:{server.admin_port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
        assert json.load(resp)["status"] == "ok"
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for name in (
        'shardkv_commands_total{command="set",outcome="ok"} 1.0',
        'shardkv_command_duration_seconds_bucket{command="get"',
        "shardkv_connections_open",
        "shardkv_connections_rejected_total",
        "shardkv_net_input_bytes_total",
        "shardkv_net_output_bytes_total",
        "shardkv_storage_commit_seconds_bucket",
    ):
        assert name in text, name


def test_http_kv_api_reads_and_writes_the_same_data(server: ServerProcess) -> None:
    base = f"http://127.0.0.1:{server.admin_port}/v1/kv"

    def call(method: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{base}/{key}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    assert call("PUT", "h1", b"\x00binary\xff") == (200, b'{"ok": true}')
    assert call("GET", "h1") == (200, b"\x00binary\xff")
    assert server.client().get("h1") == b"\x00binary\xff"
    server.client().set("from-resp", "x")
    assert call("GET", "from-resp") == (200, b"x")
    assert call("DELETE", "h1") == (200, b'{"deleted": 1}')
    status, body = call("GET", "h1")
    assert status == 404 and json.loads(body)["error"] == "key not found"
