"""The sequential specifications the checker judges histories against, step by step."""

from __future__ import annotations

from typing import Any

import pytest

from shardkv.sim.linearizability import (
    INFINITY,
    UNKNOWN,
    CheckResult,
    ErrorReply,
    Operation,
    RedisInput,
    RegisterInput,
    check_operations,
    redis_string_model,
    register_model,
)


def run(model: Any, *steps: tuple[Any, Any]) -> tuple[bool, Any]:
    """Apply (input, output) pairs in order; stop at the first illegal one."""
    state = model.init()
    for input_, output in steps:
        legal, state = model.step(state, input_, output)
        if not legal:
            return False, state
    return True, state


# -- register --------------------------------------------------------------------------------


def test_register_starts_as_none() -> None:
    assert run(register_model, (RegisterInput("read"), None)) == (True, None)


@pytest.mark.parametrize(
    ("state", "output", "legal", "after"),
    [
        (1, True, True, 2),  # swapped
        (1, False, False, 2),  # claims the comparison failed although it matched
        (3, False, True, 3),  # comparison failed: no effect
        (3, True, False, 2),  # claims a swap although the comparison fails
        (1, UNKNOWN, True, 2),  # unknown: swaps when it matches...
        (3, UNKNOWN, True, 3),  # ...and changes nothing otherwise
    ],
)
def test_register_cas(state: int, output: Any, legal: bool, after: int) -> None:
    ok, next_state = register_model.step(state, RegisterInput("cas", 1, 2), output)

    assert ok is legal
    if legal:
        assert next_state == after


# -- redis strings ---------------------------------------------------------------------------


def test_get_of_an_absent_key_is_none() -> None:
    assert run(redis_string_model, (RedisInput("get", "k"), None)) == (True, None)
    assert run(redis_string_model, (RedisInput("get", "k"), ""))[0] is False


def test_set_then_get_compares_str_and_bytes_as_utf8() -> None:
    steps = [(RedisInput("set", "k", "é"), "OK"), (RedisInput("get", "k"), "é".encode())]

    assert run(redis_string_model, *steps) == (True, "é".encode())


def test_incr_of_an_absent_key_returns_1() -> None:
    steps = [
        (RedisInput("incr", "k"), 1),
        (RedisInput("incr", "k"), 2),
        (RedisInput("get", "k"), "2"),
    ]

    assert run(redis_string_model, *steps) == (True, b"2")


@pytest.mark.parametrize("value", ["abc", "", " 1", "+1", "01", "-0", "1.5", str(2**63)])
def test_incr_of_a_non_integer_is_an_error_and_changes_nothing(value: str) -> None:
    steps = [(RedisInput("set", "k", value), "OK"), (RedisInput("incr", "k"), ErrorReply("ERR"))]

    assert run(redis_string_model, *steps) == (True, value.encode())
    assert run(redis_string_model, steps[0], (RedisInput("incr", "k"), 1))[0] is False


def test_incr_that_would_overflow_is_an_error() -> None:
    steps = [
        (RedisInput("set", "k", str(2**63 - 1)), "OK"),
        (RedisInput("incr", "k"), ErrorReply("ERR")),
    ]

    assert run(redis_string_model, *steps)[0] is True


def test_incr_accepts_negative_integers() -> None:
    steps = [(RedisInput("set", "k", "-5"), "OK"), (RedisInput("incr", "k"), -4)]

    assert run(redis_string_model, *steps) == (True, b"-4")


def test_append_returns_the_new_length_in_bytes() -> None:
    steps = [(RedisInput("append", "k", "ab"), 2), (RedisInput("append", "k", b"\xff"), 3)]

    assert run(redis_string_model, *steps) == (True, b"ab\xff")
    assert run(redis_string_model, (RedisInput("append", "k", "ab"), 3))[0] is False


def test_del_counts_the_keys_it_removed() -> None:
    steps = [
        (RedisInput("del", "k"), 0),
        (RedisInput("set", "k", "v"), "OK"),
        (RedisInput("del", "k"), 1),
        (RedisInput("get", "k"), None),
    ]

    assert run(redis_string_model, *steps) == (True, None)


def test_unknown_outputs_accept_anything_but_still_take_effect() -> None:
    steps = [(RedisInput("incr", "k"), UNKNOWN), (RedisInput("get", "k"), "1")]

    assert run(redis_string_model, *steps) == (True, b"1")


def test_redis_history_is_checked_per_key() -> None:
    history = [
        Operation(0, RedisInput("incr", "a"), 1, 0, 3),
        Operation(1, RedisInput("incr", "a"), 2, 1, 2),  # concurrent with the first: fine
        Operation(2, RedisInput("set", "b", "x"), UNKNOWN, 4, INFINITY),
        Operation(0, RedisInput("get", "b"), None, 5, 6),  # the set may not have happened yet
        Operation(0, RedisInput("get", "b"), "x", 7, 8),  # ...and now it has
        Operation(0, RedisInput("get", "a"), "2", 9, 10),
    ]

    report = check_operations(redis_string_model, history)

    assert report.result is CheckResult.OK
    assert report.partitions == 2


def test_redis_lost_increment_is_illegal() -> None:
    history = [
        Operation(0, RedisInput("incr", "n"), 1, 0, 1),
        Operation(1, RedisInput("incr", "n"), 1, 2, 3),
    ]

    report = check_operations(redis_string_model, history)

    assert report.result is CheckResult.ILLEGAL
    assert report.failed_key == b"n"
    assert "INCR 'n' -> 1" in report.explanation


def test_collections_accept_their_own_histories_and_refuse_lost_members() -> None:
    added = [(RedisInput("sadd", "s", "a"), 1), (RedisInput("sadd", "s", "b"), 1)]
    assert run(redis_string_model, *added, (RedisInput("smembers", "s"), ["a", "b"]))[0]
    # A read missing an acknowledged member, or a second SADD counting as new: illegal.
    assert not run(redis_string_model, *added, (RedisInput("smembers", "s"), ["a"]))[0]
    assert not run(redis_string_model, *added, (RedisInput("sadd", "s", "a"), 1))[0]
    pushed = [(RedisInput("rpush", "l", "x"), 1), (RedisInput("rpush", "l", "y"), 2)]
    assert run(redis_string_model, *pushed, (RedisInput("lrange", "l"), ["x", "y"]))[0]
    assert not run(redis_string_model, *pushed, (RedisInput("lrange", "l"), ["y", "x"]))[0]
    fields = [(RedisInput("hset", "h", "f"), 1)]
    assert run(redis_string_model, *fields, (RedisInput("hgetall", "h"), [["f", "f"]]))[0]


def test_a_transaction_must_move_both_counters_together() -> None:
    incr = (RedisInput("txn-incr", "t"), [1, 1])
    assert run(redis_string_model, incr, (RedisInput("txn-read", "t"), [1, 1]))[0]
    # A block that saw one counter moved and not the other is not atomic.
    assert not run(redis_string_model, incr, (RedisInput("txn-read", "t"), [1, 0]))[0]
    assert not run(redis_string_model, (RedisInput("txn-incr", "t"), [1, 0]))[0]
