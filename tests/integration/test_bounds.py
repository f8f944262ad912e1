"""No client can push the server's memory past the configured bounds."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.integration.harness import ServerProcess

MiB = 1024 * 1024


def _send_until_closed(s: socket.socket, chunk: bytes, max_bytes: int) -> tuple[int, bytes]:
    """Send up to max_bytes; return (bytes sent, what the server answered)."""
    sent = 0
    s.settimeout(5)
    try:
        while sent < max_bytes:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        reply = s.recv(4096)
    except (ConnectionResetError, TimeoutError):
        reply = b""
    return sent, reply


def test_announced_huge_bulk_is_bounded_by_the_query_buffer_limit(tmp_path: Path) -> None:
    limit = 8 * MiB
    with ServerProcess(tmp_path / "data", "--max-query-buffer-bytes", str(limit)) as srv:
        base_rss = srv.rss_bytes()
        # Larger than Redis's proto-max-bulk-len: refused at the header.
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"*2\r\n$3\r\nGET\r\n$600000000\r\n")
            assert s.recv(100) == b"-ERR Protocol error: invalid bulk length\r\n"
        # A legal announced length, streamed: the server gives up at the buffer limit.
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\n")
            sent, reply = _send_until_closed(s, b"x" * 65536, 200 * MiB)
            assert reply.startswith(b"-ERR Protocol error: "), reply
            assert sent < 200 * MiB, "the server kept reading past its bound"
        growth = srv.rss_bytes() - base_rss
        assert growth < limit + 24 * MiB, (
            f"RSS grew {growth / MiB:.1f} MiB for an {limit / MiB} MiB bound"
        )
        assert srv.client().ping()


def test_a_client_that_never_reads_replies_is_paused_then_dropped(tmp_path: Path) -> None:
    out_limit = 8 * MiB
    with ServerProcess(
        tmp_path / "data",
        "--max-output-buffer-bytes",
        str(out_limit),
        "--output-stall-timeout-s",
        "1",
    ) as srv:
        r = srv.client()
        r.set("big", b"v" * 100_000)
        base_rss = srv.rss_bytes()
        request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 1000
        requested = 64 * MiB  # about 200 GB of replies, if the server read it all
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.settimeout(5)
            sent = 0
            try:
                while sent < requested:
                    s.sendall(request)
                    sent += len(request)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading (paused), then dropped us
            assert sent < requested, "the server read every request without pausing"
            # Paused for longer than the stall timeout: the server drops the client.
            s.settimeout(10)
            try:
                while s.recv(1024 * 1024):
                    pass
            except ConnectionResetError:
                pass
        peak = srv.rss_bytes("VmHWM") - base_rss
        assert peak < out_limit + 24 * MiB, f"RSS grew {peak / MiB:.1f} MiB"
        assert srv.client().ping()
        assert r.get("big") == b"v" * 100_000
        assert "output_stalled" in srv.log()


def test_idle_clients_are_closed_after_idle_timeout_and_active_ones_are_not(
    tmp_path: Path,
) -> None:
    """Redis's ``timeout``: a client that sends nothing for idle_timeout_s is closed; one
    that keeps talking stays, however long it lives."""
    with ServerProcess(
        tmp_path / "data",
        "--idle-timeout-s",
        "1",
        env={"SHARDKV_IDLE_CHECK_INTERVAL_S": "0.2"},
    ) as srv:
        assert srv.client().config_get("timeout") == {"timeout": "1"}
        with (
            socket.create_connection(("127.0.0.1", srv.port)) as idle,
            socket.create_connection(("127.0.0.1", srv.port)) as active,
        ):
            idle.settimeout(10)
            active.settimeout(5)
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                active.sendall(b"PING\r\n")
                assert active.recv(100) == b"+PONG\r\n"
                time.sleep(0.2)
            # The idle one was closed by the server: EOF, not a timeout.
            assert idle.recv(100) == b""
            active.sendall(b"PING\r\n")
            assert active.recv(100) == b"+PONG\r\n"
