"""Differential test: the same random command streams (``differential.py``: hashes, sets,
sorted sets, lists, keyspace commands and MULTI/EXEC blocks) to a real redis-server and to
a ShardKV server, replies compared one by one, in RESP2 and in RESP3.

At least 99.5% of replies must be identical, and every command whose replies differ must
be one that ``docs/compatibility.md`` lists as a known difference (the first column of
its table of differences names commands in backquotes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.compat.differential import RESYNC_AFTER, command_stream, normalize
from tests.debian import debian_program
from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_client import ServerProcess as ReferenceProcess
from tests.integration.test_client import redis_server_command

SEEDS = (20261204, 20261205, 20261206, 20261207)
COMMANDS_PER_SEED = 4000
MIN_IDENTICAL = 0.995
COMPATIBILITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


def documented_differences() -> set[str]:
    """Command names listed in docs/compatibility.md's table of differences."""
    names: set[str] = set()
    for line in COMPATIBILITY_DOC.read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z]+)`", line.split("|")[1]))
    return names


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    debian_program("redis-server", "redis-server")
    port = free_port()
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    process = ReferenceProcess(redis_server_command, port, log)
    process.start()
    try:
        yield port
    finally:
        process.kill()


@pytest.fixture(scope="module")
def shardkv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with ServerProcess(tmp_path_factory.mktemp("shardkv") / "data") as server:
        yield server.port


def _client(port: int, protocol: int) -> redis.Redis:
    client = redis.Redis(port=port, protocol=protocol, socket_timeout=10)
    client.response_callbacks.clear()  # compare what the servers sent, not redis-py's views
    return client


def _call(client: redis.Redis, command: list[str]) -> Any:
    try:
        return client.execute_command(*command)
    except redis.ResponseError as exc:
        return exc


def _full_scan(client: redis.Redis, command: list[str]) -> Any:
    """Every item a SCAN-family iteration returns, from cursor 0 until the server says 0
    (cursor values and page sizes are the servers' own business; the contract compared
    is what a whole iteration returns)."""
    cursor_at = 1 if command[0].upper() == "SCAN" else 2
    pairs = command[0].upper() in ("HSCAN", "ZSCAN")
    items: set[Any] = set()
    args = list(command)
    for _ in range(10_000):
        reply = _call(client, args)
        if isinstance(reply, Exception) or not isinstance(reply, list):
            return normalize(command, reply)
        cursor, page = reply
        items.update(zip(page[::2], page[1::2], strict=False) if pairs else page)
        if cursor in (b"0", 0):
            return ["full-iteration", sorted(items)]
        args[cursor_at] = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
    raise AssertionError(f"{command} did not finish in 10,000 calls")


def run_stream(
    reference: redis.Redis, shardkv: redis.Redis, commands: list[list[str]]
) -> list[tuple[list[str], Any, Any]]:
    """Send each command to both; return the commands whose normalized replies differ."""
    reference.execute_command("FLUSHALL")
    shardkv.execute_command("FLUSHALL")
    differences = []
    queued: list[list[str]] = []  # the commands of the MULTI block being built
    for command in commands:
        name = command[0].upper()
        if name.endswith("SCAN"):
            expected, got = _full_scan(reference, command), _full_scan(shardkv, command)
        else:
            expected = normalize(command, _call(reference, command))
            got = normalize(command, _call(shardkv, command))
        if expected != got:
            differences += _blame(command, queued, expected, got)
        if name in ("MULTI", "EXEC", "DISCARD"):
            queued = []
        else:
            queued.append(command)
        if command[0].lower() in RESYNC_AFTER:
            _resync_set(reference, shardkv, command[1])
    return differences


def _blame(
    command: list[str], queued: list[list[str]], expected: Any, got: Any
) -> list[tuple[list[str], Any, Any]]:
    """A difference, charged to the commands that differ: for EXEC, to each queued command
    whose reply inside the block differs (so a documented difference stays one inside a
    MULTI block too)."""
    if (
        command[0].upper() != "EXEC"
        or not isinstance(expected, list)
        or not isinstance(got, list)
        or len(expected) != len(got)
        or len(queued) != len(expected)
    ):
        return [(command, expected, got)]
    return [
        (queued[i], mine, theirs)
        for i, (mine, theirs) in enumerate(zip(expected, got, strict=True))
        if mine != theirs
    ]


def _resync_set(reference: redis.Redis, shardkv: redis.Redis, key: str) -> None:
    if shardkv.execute_command("TYPE", key) not in (b"set", b"none"):
        return
    members = shardkv.execute_command("SMEMBERS", key)
    ttl_ms = shardkv.execute_command("PTTL", key)
    reference.execute_command("DEL", key)
    if members:
        reference.execute_command("SADD", key, *members)
        if ttl_ms > 0:
            reference.execute_command("PEXPIRE", key, ttl_ms)


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_match_redis(reference: int, shardkv: int, protocol: int) -> None:
    ref = _client(reference, protocol)
    ours = _client(shardkv, protocol)
    total = 0
    differences: list[tuple[list[str], Any, Any]] = []
    for seed in SEEDS:
        commands = command_stream(seed, COMMANDS_PER_SEED)
        total += len(commands)
        differences += run_stream(ref, ours, commands)
    by_command = Counter(command[0].upper() for command, _, _ in differences)
    identical = 1 - len(differences) / total
    report = "\n".join(
        f"{' '.join(command)}\n    redis:   {expected!r}\n    shardkv: {got!r}"
        for command, expected, got in differences[:30]
    )
    print(f"RESP{protocol}: {identical:.4%} identical of {total}; differing: {dict(by_command)}")
    assert identical >= MIN_IDENTICAL, report
    undocumented = set(by_command) - documented_differences()
    assert not undocumented, f"differences not in docs/compatibility.md: {undocumented}\n{report}"
