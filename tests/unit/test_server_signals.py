"""The first SIGINT/SIGTERM starts a graceful shutdown; a second one exits at once."""

from __future__ import annotations

import signal

import pytest

from shardkv.server import app
from shardkv.server.config import ServerConfig


class Exited(Exception):
    pass


async def test_second_signal_exits_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(app.os, "_exit", fake_exit)
    server = app.Server(ServerConfig(storage_engine="memory"))
    server._on_signal(signal.SIGTERM)
    assert server._stop.is_set(), "the first signal asks for a graceful stop"
    assert codes == []
    with pytest.raises(Exited):
        server._on_signal(signal.SIGINT)
    assert codes == [1]
