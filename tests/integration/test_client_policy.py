"""The client's pure decisions: which commands it repeats, how error replies map to errors,
the backoff schedule, how arguments are encoded. No server needed."""

from __future__ import annotations

import random

import pytest

from shardkv.client import (
    ClusterDown,
    CommandError,
    DefiniteFailure,
    Moved,
    ServerBusy,
    TryAgain,
    UnknownOutcome,
)
from shardkv.client.client import encode_arg
from shardkv.client.errors import ConnectionLost, RequestTimeout, error_from_reply
from shardkv.client.policy import backoff_delay_s, is_safe_to_repeat


def command(text: str) -> list[bytes]:
    return [part.encode() for part in text.split()]


@pytest.mark.parametrize(
    "text",
    [
        "GET k",
        "get k",
        "MGET a b",
        "EXISTS a",
        "TTL k",
        "PTTL k",
        "STRLEN k",
        "GETRANGE k 0 3",
        "TYPE k",
        "DBSIZE",
        "SCAN 0 MATCH x* COUNT 10",
        "PING",
        "ECHO hi",
        "CLUSTER SLOTS",
        "SET k v",
        "set k v ex 10",
        "SET k v PX 100",
        "SET k v EXAT 1700000000",
        "SET k v KEEPTTL",
        "MSET a 1 b 2",
    ],
)
def test_reads_and_blind_writes_are_repeated(text: str) -> None:
    assert is_safe_to_repeat(command(text), retry_idempotent_writes=True)


@pytest.mark.parametrize(
    "text",
    [
        "INCR k",
        "INCRBY k 2",
        "DECR k",
        "APPEND k v",
        "DEL k",
        "UNLINK k",
        "EXPIRE k 10",
        "SETNX k v",
        "GETSET k v",
        "GETDEL k",
        "SET k v NX",
        "SET k v XX",
        "SET k v GET",
        "SET k v EX 10 NX",
        "SET k v EX",  # malformed: let the server say so, once
        "SET k v BOGUS",
        "SET k",
        "MSET a 1 b",
        "CLUSTER RESET",
        "CLUSTER",
        "FLUSHALL",
    ],
)
def test_everything_else_is_not_repeated(text: str) -> None:
    assert not is_safe_to_repeat(command(text), retry_idempotent_writes=True)


def test_blind_writes_are_not_repeated_when_disabled() -> None:
    assert not is_safe_to_repeat(command("SET k v"), retry_idempotent_writes=False)
    assert not is_safe_to_repeat(command("MSET a 1"), retry_idempotent_writes=False)
    assert is_safe_to_repeat(command("GET k"), retry_idempotent_writes=False)


def test_empty_command_is_not_repeated() -> None:
    assert not is_safe_to_repeat([], retry_idempotent_writes=True)


def test_moved_is_parsed_into_a_redirect() -> None:
    error = error_from_reply("MOVED 3999 10.0.0.7:7380", address=("127.0.0.1", 7379), command="GET")
    assert isinstance(error, Moved)
    assert (error.slot, error.host, error.port) == (3999, "10.0.0.7", 7380)
    assert error.may_have_executed is False
    assert "10.0.0.7:7380" in str(error)


@pytest.mark.parametrize(
    ("endpoint", "host"), [("::1:7380", "::1"), ("[::1]:7380", "::1"), ("node-2:7380", "node-2")]
)
def test_moved_accepts_ipv6_and_names(endpoint: str, host: str) -> None:
    error = error_from_reply(f"MOVED 1 {endpoint}")
    assert isinstance(error, Moved)
    assert (error.host, error.port) == (host, 7380)


@pytest.mark.parametrize(
    "message", ["MOVED", "MOVED 12", "MOVED x 1.2.3.4:5", "MOVED 1 host", "MOVED 1 host:0"]
)
def test_malformed_moved_is_not_followed(message: str) -> None:
    error = error_from_reply(message)
    assert type(error) is CommandError
    assert error.code == "MOVED"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("TRYAGAIN Multiple keys request during rehashing of slot", TryAgain),
        ("CLUSTERDOWN The cluster is down", ClusterDown),
        ("LOADING Redis is loading the dataset in memory", ServerBusy),
        ("ERR max number of clients reached", ServerBusy),
    ],
)
def test_transient_cluster_errors_are_definite_failures(
    message: str, kind: type[DefiniteFailure]
) -> None:
    error = error_from_reply(message, command="SET")
    assert type(error) is kind
    assert error.command == "SET"
    assert error.may_have_executed is False


def test_other_error_replies_keep_code_and_message() -> None:
    error = error_from_reply("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert type(error) is CommandError
    assert error.code == "WRONGTYPE"
    assert error.message == "WRONGTYPE Operation against a key holding the wrong kind of value"
    lower = error_from_reply("oops no code")
    assert isinstance(lower, CommandError)
    assert lower.code == ""


def test_unknown_outcomes_say_the_command_may_have_run() -> None:
    assert issubclass(RequestTimeout, UnknownOutcome)
    assert issubclass(ConnectionLost, UnknownOutcome)
    assert RequestTimeout.may_have_executed is True
    assert not issubclass(UnknownOutcome, DefiniteFailure)


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(42)
    for attempt in range(12):
        cap_s = min(1.0, 0.01 * 2**attempt)
        delays = [backoff_delay_s(attempt, base_s=0.01, max_s=1.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= delay <= cap_s for delay in delays)
        assert max(delays) > cap_s * 0.9  # the whole range is used, not just its top
        assert min(delays) < cap_s * 0.1


def test_backoff_is_reproducible_and_survives_huge_attempt_numbers() -> None:
    first = [backoff_delay_s(n, base_s=0.1, max_s=5.0, rng=random.Random(9)) for n in range(5)]
    second = [backoff_delay_s(n, base_s=0.1, max_s=5.0, rng=random.Random(9)) for n in range(5)]
    assert first == second
    assert 0.0 <= backoff_delay_s(10_000, base_s=0.1, max_s=5.0, rng=random.Random(1)) <= 5.0


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"\x00raw", b"\x00raw"),
        ("h\u00e9", "h\u00e9".encode()),
        (42, b"42"),
        (-7, b"-7"),
        (1.5, b"1.5"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
    ],
)
def test_arguments_are_encoded_unambiguously(value: bytes | str | int | float, wire: bytes) -> None:
    assert encode_arg(value) == wire


def test_bool_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_arg(True)
