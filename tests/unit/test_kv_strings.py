"""String commands: Redis 7 replies and error texts (checked against Redis 7.0.15)."""

from __future__ import annotations

import pytest

from shardkv.core.engine import WriteBatch
from shardkv.core.kv import codec, parse_i64
from shardkv.core.kv.machine import KVStateMachine
from shardkv.core.resp.replies import OK, ErrorReply
from tests.unit.test_kv_harness import Harness

SYNTAX = ErrorReply("ERR syntax error")
NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
NOT_FLOAT = ErrorReply("ERR value is not a valid float")
WRONGTYPE = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


@pytest.fixture
def h() -> Harness:
    return Harness()


class TestGetSet:
    def test_get_of_a_missing_key_is_null(self, h: Harness) -> None:
        assert h.run("GET", "k") is None

    def test_set_then_get(self, h: Harness) -> None:
        assert h.run("SET", "k", "v") == OK
        assert h.run("GET", "k") == b"v"
        assert h.run("SET", "k", b"") == OK
        assert h.run("GET", "k") == b""

    def test_values_are_binary_safe(self, h: Harness) -> None:
        value = bytes(range(256))
        h.run("SET", b"\x00key\xff", value)
        assert h.run("GET", b"\x00key\xff") == value

    def test_command_names_are_case_insensitive(self, h: Harness) -> None:
        assert h.run("set", "k", "v") == OK
        assert h.run("gEt", "k") == b"v"

    def test_nx_and_xx(self, h: Harness) -> None:
        assert h.run("SET", "k", "1", "XX") is None
        assert h.run("GET", "k") is None
        assert h.run("SET", "k", "1", "NX") == OK
        assert h.run("SET", "k", "2", "NX") is None
        assert h.run("SET", "k", "3", "xx") == OK
        assert h.run("GET", "k") == b"3"

    def test_get_option_returns_the_old_value(self, h: Harness) -> None:
        assert h.run("SET", "k", "1", "GET") is None
        assert h.run("SET", "k", "2", "GET") == b"1"
        # Redis 7 allows NX with GET: the old value comes back and nothing is written.
        assert h.run("SET", "k", "3", "NX", "GET") == b"2"
        assert h.run("GET", "k") == b"2"

    def test_expiry_options(self, h: Harness) -> None:
        h.run("SET", "k", "v", "EX", 10)
        assert h.run("PTTL", "k") == 10_000
        h.run("SET", "k", "v", "PX", 1500)
        assert h.run("PTTL", "k") == 1500
        h.run("SET", "k", "v", "EXAT", h.now_ms // 1000 + 20)
        assert h.run("TTL", "k") == 20
        h.run("SET", "k", "v", "PXAT", h.now_ms + 42)
        assert h.run("PTTL", "k") == 42
        h.run("SET", "k", "v")
        assert h.run("TTL", "k") == -1  # a plain SET clears the TTL

    def test_repeating_an_expiry_option_keeps_the_last(self, h: Harness) -> None:
        assert h.run("SET", "k", "v", "EX", 10, "EX", 20) == OK
        assert h.run("TTL", "k") == 20

    def test_keepttl(self, h: Harness) -> None:
        h.run("SET", "k", "v", "EX", 100)
        h.run("SET", "k", "w", "KEEPTTL")
        assert h.run("TTL", "k") == 100
        assert h.run("GET", "k") == b"w"

    def test_absolute_expiry_in_the_past_leaves_no_key(self, h: Harness) -> None:
        h.run("SET", "k", "old")
        assert h.run("SET", "k", "v", "GET", "EXAT", 1) == b"old"
        assert h.run("EXISTS", "k") == 0
        assert h.machine.key_count() == 0

    @pytest.mark.parametrize(
        "options",
        [
            ["NX", "XX"],
            ["XX", "NX"],
            ["EX", 10, "PX", 10],
            ["KEEPTTL", "EX", 10],
            ["EX", 10, "KEEPTTL"],
            ["PERSIST"],
            ["EX"],
            ["FOO"],
        ],
    )
    def test_conflicting_or_unknown_options_are_a_syntax_error(
        self, h: Harness, options: list[str | int]
    ) -> None:
        assert h.run("SET", "k", "v", *options) == SYNTAX
        assert h.run("EXISTS", "k") == 0

    @pytest.mark.parametrize(
        "options",
        [
            ["EX", 0],
            ["EX", -1],
            ["PX", 0],
            ["EX", 9223372036854776],  # seconds * 1000 overflows
            ["EX", 9223372036854775],  # fits * 1000, but + now overflows
            ["PX", I64_MAX],
        ],
    )
    def test_invalid_expire_times(self, h: Harness, options: list[str | int]) -> None:
        assert h.run("SET", "k", "v", *options) == ErrorReply(
            "ERR invalid expire time in 'set' command"
        )

    def test_expire_time_must_be_an_integer(self, h: Harness) -> None:
        assert h.run("SET", "k", "v", "EX", "1.5") == NOT_INTEGER

    def test_setnx(self, h: Harness) -> None:
        assert h.run("SETNX", "k", "1") == 1
        assert h.run("SETNX", "k", "2") == 0
        assert h.run("GET", "k") == b"1"

    def test_setex_and_psetex(self, h: Harness) -> None:
        assert h.run("SETEX", "k", 10, "v") == OK
        assert h.run("TTL", "k") == 10
        assert h.run("PSETEX", "k", 1500, "w") == OK
        assert h.run("PTTL", "k") == 1500
        assert h.run("SETEX", "k", 0, "v") == ErrorReply(
            "ERR invalid expire time in 'setex' command"
        )
        assert h.run("PSETEX", "k", -5, "v") == ErrorReply(
            "ERR invalid expire time in 'psetex' command"
        )

    def test_getset_returns_old_value_and_clears_ttl(self, h: Harness) -> None:
        assert h.run("GETSET", "k", "1") is None
        h.run("EXPIRE", "k", 100)
        assert h.run("GETSET", "k", "2") == b"1"
        assert h.run("TTL", "k") == -1

    def test_getdel(self, h: Harness) -> None:
        h.run("SET", "k", "v", "EX", 100)
        assert h.run("GETDEL", "k") == b"v"
        assert h.run("GETDEL", "k") is None
        assert h.machine.key_count() == 0

    def test_wrong_arity(self, h: Harness) -> None:
        assert h.run("GET") == ErrorReply("ERR wrong number of arguments for 'get' command")
        assert h.run("SET", "k") == ErrorReply("ERR wrong number of arguments for 'set' command")


class TestGetex:
    def test_missing_key_is_null_even_with_a_bad_expire_time(self, h: Harness) -> None:
        assert h.run("GETEX", "k", "EX", -5) is None

    def test_sets_changes_or_removes_the_ttl(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("GETEX", "k") == b"v"
        assert h.run("TTL", "k") == -1
        assert h.run("GETEX", "k", "EX", 100) == b"v"
        assert h.run("TTL", "k") == 100
        assert h.run("GETEX", "k", "PXAT", h.now_ms + 5000) == b"v"
        assert h.run("PTTL", "k") == 5000
        assert h.run("GETEX", "k", "PERSIST") == b"v"
        assert h.run("TTL", "k") == -1

    def test_absolute_time_in_the_past_deletes_after_replying(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("GETEX", "k", "EXAT", 1) == b"v"
        assert h.run("EXISTS", "k") == 0

    @pytest.mark.parametrize(
        "options",
        [["NX"], ["KEEPTTL"], ["GET"], ["EX"], ["EX", 1, "PERSIST"], ["PERSIST", "PX", 1]],
    )
    def test_set_only_or_conflicting_options_are_syntax_errors(
        self, h: Harness, options: list[str | int]
    ) -> None:
        h.run("SET", "k", "v")
        assert h.run("GETEX", "k", *options) == SYNTAX

    def test_invalid_expire_time_names_getex(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("GETEX", "k", "EX", 0) == ErrorReply(
            "ERR invalid expire time in 'getex' command"
        )


class TestMultiKey:
    def test_mget(self, h: Harness) -> None:
        h.run("MSET", "a", "1", "b", "2")
        assert h.run("MGET", "a", "missing", "b", "a") == [b"1", None, b"2", b"1"]

    def test_mset_needs_pairs(self, h: Harness) -> None:
        assert h.run("MSET", "a", "1", "b") == ErrorReply(
            "ERR wrong number of arguments for 'mset' command"
        )
        assert h.run("EXISTS", "a") == 0

    def test_mset_clears_ttls_and_later_pairs_win(self, h: Harness) -> None:
        h.run("SET", "a", "0", "EX", 100)
        assert h.run("MSET", "a", "1", "a", "2") == OK
        assert h.run("GET", "a") == b"2"
        assert h.run("TTL", "a") == -1

    def test_msetnx_is_all_or_nothing(self, h: Harness) -> None:
        assert h.run("MSETNX", "a", "1", "b", "2") == 1
        assert h.run("MSETNX", "b", "x", "c", "3") == 0
        assert h.run("MGET", "a", "b", "c") == [b"1", b"2", None]
        assert h.run("MSETNX", "c", "1", "c", "2") == 1
        assert h.run("GET", "c") == b"2"


class TestCounters:
    def test_incr_family(self, h: Harness) -> None:
        assert h.run("INCR", "n") == 1
        assert h.run("INCRBY", "n", 10) == 11
        assert h.run("DECR", "n") == 10
        assert h.run("DECRBY", "n", -5) == 15
        assert h.run("GET", "n") == b"15"

    def test_incr_keeps_the_ttl(self, h: Harness) -> None:
        h.run("SET", "n", "1", "EX", 100)
        h.run("INCR", "n")
        assert h.run("TTL", "n") == 100

    @pytest.mark.parametrize("value", ["abc", "", " 1", "1 ", "+1", "01", "-0", "1.5", "1e3"])
    def test_values_must_be_strict_integers(self, h: Harness, value: str) -> None:
        h.run("SET", "n", value)
        assert h.run("INCR", "n") == NOT_INTEGER
        assert h.run("GET", "n") == value.encode()

    def test_increments_must_be_strict_integers(self, h: Harness) -> None:
        assert h.run("INCRBY", "n", "1.0") == NOT_INTEGER
        assert h.run("INCRBY", "n", "9223372036854775808") == NOT_INTEGER

    def test_overflow(self, h: Harness) -> None:
        h.run("SET", "n", I64_MAX)
        assert h.run("INCR", "n") == ErrorReply("ERR increment or decrement would overflow")
        h.run("SET", "n", I64_MIN)
        assert h.run("DECR", "n") == ErrorReply("ERR increment or decrement would overflow")
        assert h.run("DECRBY", "m", I64_MIN) == ErrorReply("ERR decrement would overflow")
        assert h.run("INCRBY", "m", I64_MIN) == I64_MIN

    def test_incrbyfloat(self, h: Harness) -> None:
        h.run("SET", "f", "10.50")
        assert h.run("INCRBYFLOAT", "f", "0.1") == b"10.6"
        # As in Redis, 17 digits of a long double can show the binary representation.
        assert h.run("INCRBYFLOAT", "f", "-5.0e3") == b"-4989.39999999999999991"
        assert h.run("GET", "f") == b"-4989.39999999999999991"
        assert h.run("INCRBYFLOAT", "new", "3.0e3") == b"3000"

    def test_incrbyfloat_errors(self, h: Harness) -> None:
        h.run("SET", "f", "abc")
        assert h.run("INCRBYFLOAT", "f", "1") == NOT_FLOAT
        assert h.run("INCRBYFLOAT", "g", "x") == NOT_FLOAT
        assert h.run("INCRBYFLOAT", "g", "inf") == ErrorReply(
            "ERR increment would produce NaN or Infinity"
        )
        assert h.run("EXISTS", "g") == 0

    def test_incrbyfloat_keeps_the_ttl(self, h: Harness) -> None:
        h.run("SET", "f", "1", "EX", 100)
        h.run("INCRBYFLOAT", "f", "1.5")
        assert h.run("TTL", "f") == 100


class TestRanges:
    def test_append_and_strlen(self, h: Harness) -> None:
        assert h.run("STRLEN", "k") == 0
        assert h.run("APPEND", "k", "Hello") == 5
        assert h.run("APPEND", "k", " World") == 11
        assert h.run("GET", "k") == b"Hello World"
        assert h.run("STRLEN", "k") == 11

    def test_append_keeps_the_ttl(self, h: Harness) -> None:
        h.run("SET", "k", "a", "EX", 100)
        h.run("APPEND", "k", "b")
        assert h.run("TTL", "k") == 100

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, 3, b"This"),
            (-3, -1, b"ing"),
            (0, -1, b"This is a string"),
            (10, 100, b"string"),
            (5, 3, b""),
            (-1, -5, b""),
            (0, -100, b"T"),
            (-100, -100, b"T"),
            (100, 200, b""),
        ],
    )
    def test_getrange(self, h: Harness, start: int, end: int, expected: bytes) -> None:
        h.run("SET", "k", "This is a string")
        assert h.run("GETRANGE", "k", start, end) == expected
        assert h.run("SUBSTR", "k", start, end) == expected

    def test_getrange_errors_and_missing_key(self, h: Harness) -> None:
        assert h.run("GETRANGE", "missing", 0, 1) == b""
        assert h.run("GETRANGE", "missing", "a", 1) == NOT_INTEGER

    def test_setrange(self, h: Harness) -> None:
        h.run("SET", "k", "Hello World")
        assert h.run("SETRANGE", "k", 6, "Redis") == 11
        assert h.run("GET", "k") == b"Hello Redis"
        assert h.run("SETRANGE", "pad", 3, "x") == 4
        assert h.run("GET", "pad") == b"\x00\x00\x00x"
        assert h.run("SETRANGE", "k", 13, "!") == 14
        assert h.run("GET", "k") == b"Hello Redis\x00\x00!"

    def test_setrange_with_nothing_to_write(self, h: Harness) -> None:
        assert h.run("SETRANGE", "missing", 5, "") == 0
        assert h.run("EXISTS", "missing") == 0
        h.run("SET", "k", "abc")
        assert h.run("SETRANGE", "k", 536870911, "") == 3  # no size check when empty

    def test_setrange_errors(self, h: Harness) -> None:
        assert h.run("SETRANGE", "k", -1, "x") == ErrorReply("ERR offset is out of range")
        assert h.run("SETRANGE", "k", 536870911, "xx") == ErrorReply(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        )

    def test_size_limit_is_a_parameter(self) -> None:
        h = Harness()
        h.machine = KVStateMachine(h.view, max_string_bytes=8)
        h.run("SET", "k", "12345")
        assert h.run("APPEND", "k", "678") == 8
        assert h.run("APPEND", "k", "9") == ErrorReply(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        )
        assert h.run("SETRANGE", "k", 8, "x") == ErrorReply(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        )


def test_non_string_values_answer_wrongtype() -> None:
    h = Harness()
    assert h.run("HSET", "other", "field", "value") == 1
    for command in (
        ["GET", "other"],
        ["GETSET", "other", "v"],
        ["SET", "other", "v", "GET"],
        ["INCR", "other"],
        ["INCRBYFLOAT", "other", "1"],
        ["APPEND", "other", "x"],
        ["STRLEN", "other"],
        ["GETRANGE", "other", 0, 1],
        ["SETRANGE", "other", 0, "x"],
        ["GETDEL", "other"],
        ["GETEX", "other"],
    ):
        assert h.run(*command) == WRONGTYPE, command
    assert h.run("MGET", "other") == [None]
    assert h.run("SET", "other", "now a string") == OK
    assert h.run("GET", "other") == b"now a string"


def _counts_batch(keys: int, expires: int) -> WriteBatch:
    from shardkv.core.engine import META

    batch = WriteBatch()
    batch.put(META, codec.key_count_key(1), codec.encode_count(keys))
    batch.put(META, codec.expires_count_key(1), codec.encode_count(expires))
    return batch


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"9223372036854775807", I64_MAX),
        (b"-9223372036854775808", I64_MIN),
        (b"9223372036854775808", None),
        (b"-9223372036854775809", None),
        (b"-0", None),
        (b"00", None),
        (b"+1", None),
        (b" 1", None),
        (b"", None),
        (b"-", None),
        (b"\xd9\xa1", None),  # non-ASCII digits
    ],
)
def test_parse_i64_is_redis_strict(text: bytes, value: int | None) -> None:
    assert parse_i64(text) == value
