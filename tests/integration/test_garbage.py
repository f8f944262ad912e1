"""Whatever bytes a client sends, it gets well-formed RESP back and the server lives on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardkv.core.resp import NEED_DATA, ReplyParser
from tests.integration.harness import ServerProcess

COMMAND_WORDS = [
    b"GET",
    b"SET",
    b"PING",
    b"ECHO",
    b"INCR",
    b"MGET",
    b"SCAN",
    b"CLIENT",
    b"HELLO",
    b"COMMAND",
    b"EXPIRE",
    b"GETRANGE",
    b"APPEND",
    b"DEL",
    b"INFO",
    b"CONFIG",
]

# Garbage that looks like RESP often enough to reach deep into the parser and commands.
fragments = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"*",
            b"$",
            b"\r\n",
            b"\n",
            b"-1",
            b"0",
            b"3",
            b"99999999999",
            b'"',
            b"'",
            b" ",
            b"\x00",
            b"*2\r\n",
            b"$3\r\n",
            b"*-1\r\n",
            b"$-1\r\n",
        ]
    ),
    st.sampled_from(COMMAND_WORDS),
)
garbage = st.lists(fragments, max_size=30).map(b"".join)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(Path(tmp_path_factory.mktemp("garbage")) / "data") as srv:
        yield srv


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=garbage)
def test_any_input_gets_well_formed_replies_and_no_traceback(
    shared_server: ServerProcess, data: bytes
) -> None:
    answer = _exchange(shared_server.port, data)
    parser = ReplyParser()
    parser.feed(answer)
    replies = []
    while (reply := parser.next_reply()) is not NEED_DATA:
        replies.append(reply)
    assert parser.buffered_bytes == 0, f"a partial reply was sent: {answer!r}"
    assert b"Traceback" not in answer
    assert _exchange(shared_server.port, b"PING\r\n") == b"+PONG\r\n"


def test_the_server_log_shows_no_traceback_after_the_garbage(shared_server: ServerProcess) -> None:
    assert "Traceback" not in shared_server.log()
    assert "unhandled" not in shared_server.log()
