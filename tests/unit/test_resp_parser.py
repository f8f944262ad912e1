"""Specification of the server-side RESP command parser (shardkv.core.resp.CommandParser).

Every framing test goes through ``assert_parses``/``assert_rejects``, which feed the input
whole, byte by byte, with trailing data, and whole but drained one command at a time: the
result must not depend on how the bytes arrived.
"""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardkv.core.resp import CommandParser, RespLimits, RespProtocolError, encode_command

DEFAULT = RespLimits()
SMALL = RespLimits(max_bulk_bytes=64, max_args=8, max_inline_bytes=32, max_unparsed_bytes=512)
# A partial command: stays buffered after everything before it was parsed.
TRAILER = b"*2\r\n$3\r\nGET\r\n$5\r\nke"


@dataclass
class Outcome:
    commands: list[list[bytes]]
    error: str | None
    buffered_bytes: int


def run(chunks: list[bytes], limits: RespLimits = DEFAULT, max_commands: int = 64) -> Outcome:
    """Feed ``chunks`` one by one, draining everything after each; stop at the first error."""
    parser = CommandParser(limits)
    commands: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while batch := parser.drain(max_commands):
                assert len(batch) <= max_commands
                commands.extend(batch)
    except RespProtocolError as exc:
        return Outcome(commands, str(exc), parser.buffered_bytes)
    return Outcome(commands, None, parser.buffered_bytes)


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def outcomes(data: bytes, limits: RespLimits) -> dict[str, Outcome]:
    return {
        "whole": run([data], limits),
        "byte by byte": run(byte_by_byte(data), limits),
        "one command per drain": run([data], limits, max_commands=1),
        "with trailing data": run([data + TRAILER], limits),
    }


def assert_parses(data: bytes, expected: list[list[bytes]], limits: RespLimits = DEFAULT) -> None:
    for mode, outcome in outcomes(data, limits).items():
        assert outcome.error is None, mode
        assert outcome.commands == expected, mode
        trailing = len(TRAILER) if mode == "with trailing data" else 0
        assert outcome.buffered_bytes == trailing, mode
        assert all(type(arg) is bytes for command in outcome.commands for arg in command)


def assert_rejects(
    data: bytes,
    error: str,
    commands_before: list[list[bytes]] | None = None,
    limits: RespLimits = DEFAULT,
) -> None:
    for mode, outcome in outcomes(data, limits).items():
        assert outcome.error == error, mode
        assert outcome.commands == (commands_before or []), mode


# --- RESP arrays ------------------------------------------------------------------------


def test_parses_one_array_command() -> None:
    assert_parses(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", [[b"SET", b"k", b"value"]])


def test_parses_pipelined_commands_in_order() -> None:
    data = b"".join(encode_command([b"INCR", b"n%d" % i]) for i in range(50))
    assert_parses(data, [[b"INCR", b"n%d" % i] for i in range(50)])


def test_bulk_arguments_are_binary_safe() -> None:
    arg = b"a\r\nb\x00c*$\n\r"
    assert_parses(encode_command([b"SET", arg, b""]), [[b"SET", arg, b""]])


def test_arrays_of_zero_or_negative_count_are_skipped() -> None:
    data = b"*0\r\n*-1\r\n*-42\r\n" + encode_command([b"PING"]) + b"*0\r\n"
    assert_parses(data, [[b"PING"]])


def test_long_bulk_that_is_not_in_the_lookup_tables() -> None:
    arg = bytes(range(256)) * 200  # 51,200 bytes: above the cached lengths, a "big" bulk
    assert_parses(encode_command([b"SET", b"k", arg]), [[b"SET", b"k", arg]])


def test_bytes_after_cr_are_skipped_not_checked_like_redis() -> None:
    # Redis steps over the two bytes that should be CRLF without looking at them.
    assert_parses(b"*1\rX$4\r?PINGab", [[b"PING"]])


def test_bulk_of_exactly_max_bulk_bytes_is_accepted() -> None:
    arg = b"x" * SMALL.max_bulk_bytes
    assert_parses(encode_command([arg]), [[arg]], SMALL)


def test_count_of_exactly_max_args_is_accepted() -> None:
    command = [b"a"] * SMALL.max_args
    assert_parses(encode_command(command), [command], SMALL)


# --- inline commands --------------------------------------------------------------------


def test_inline_command_split_on_spaces_and_tabs() -> None:
    assert_parses(b"SET  k\t v\r\n", [[b"SET", b"k", b"v"]])


def test_inline_command_may_end_with_lf_alone() -> None:
    assert_parses(b"PING\nECHO hi\n", [[b"PING"], [b"ECHO", b"hi"]])


def test_empty_inline_lines_are_skipped() -> None:
    assert_parses(b"\r\n\n   \r\nPING\r\n\t\n", [[b"PING"]])


def test_inline_and_array_commands_mix_in_one_stream() -> None:
    data = b"PING\r\n" + encode_command([b"GET", b"k"]) + b"ECHO x\r\n"
    assert_parses(data, [[b"PING"], [b"GET", b"k"], [b"ECHO", b"x"]])


def test_inline_double_quotes_with_escapes() -> None:
    line = rb'SET "a b" "\x41\x4a\n\r\t\b\a\"\\\z" ""' + b"\r\n"
    assert_parses(line, [[b"SET", b"a b", b'AJ\n\r\t\b\a"\\z', b""]])


def test_inline_hex_escape_needs_two_hex_digits() -> None:
    assert_parses(rb'ECHO "\x4g"' + b"\n", [[b"ECHO", b"x4g"]])


def test_inline_single_quotes_only_unescape_the_quote() -> None:
    assert_parses(rb"ECHO 'it\'s \n'" + b"\n", [[b"ECHO", b"it's \\n"]])


def test_inline_quotes_may_start_inside_an_argument() -> None:
    assert_parses(b'ECHO ab"c d"\n', [[b"ECHO", b"abc d"]])


def test_inline_vertical_tab_separates_only_between_arguments() -> None:
    # sdssplitargs skips isspace() between arguments but ends an argument only at
    # space, tab, CR, LF.
    assert_parses(b"ECHO \x0ba\x0bb\x0c\n", [[b"ECHO", b"a\x0bb\x0c"]])


def test_inline_nul_ends_the_line_content() -> None:
    assert_parses(b"ECHO a\x00 b c\r\nPING\r\n", [[b"ECHO", b"a"], [b"PING"]])


@pytest.mark.parametrize(
    "line",
    [b'ECHO "abc\r\n', b"ECHO 'abc\r\n", b'ECHO "a"b\r\n', b"ECHO 'a'b\r\n", b'ECHO "a\x00"\r\n'],
)
def test_inline_unbalanced_quotes(line: bytes) -> None:
    assert_rejects(line, "unbalanced quotes in request")


def test_inline_line_of_exactly_max_inline_bytes_is_accepted() -> None:
    line = b"A" * SMALL.max_inline_bytes
    assert_parses(line + b"\n", [[line]], SMALL)


# --- protocol errors: texts and conditions --------------------------------------------


@pytest.mark.parametrize(
    "header", [b"*\r\n", b"*x\r\n", b"*+1\r\n", b"* 1\r\n", b"*01\r\n", b"*-0\r\n", b"*1 \r\n"]
)
def test_invalid_multibulk_length(header: bytes) -> None:
    assert_rejects(header, "invalid multibulk length")


def test_multibulk_count_above_max_args() -> None:
    assert_rejects(b"*9\r\n", "invalid multibulk length", limits=SMALL)
    assert_rejects(b"*1048577\r\n", "invalid multibulk length")


def test_multibulk_count_beyond_64_bits() -> None:
    assert_rejects(b"*99999999999999999999\r\n", "invalid multibulk length")


@pytest.mark.parametrize(
    "header", [b"$\r\n", b"$-1\r\n", b"$x\r\n", b"$01\r\n", b"$+3\r\n", b"$3 \r\n", b"$-0\r\n"]
)
def test_invalid_bulk_length(header: bytes) -> None:
    assert_rejects(b"*1\r\n" + header, "invalid bulk length")


def test_bulk_length_above_max_bulk_bytes() -> None:
    assert_rejects(b"*1\r\n$65\r\n", "invalid bulk length", limits=SMALL)
    assert_rejects(b"*1\r\n$536870913\r\n", "invalid bulk length")


@pytest.mark.parametrize(
    ("first", "shown"), [(b"x", "x"), (b":", ":"), (b"\r", " "), (b"\n", " "), (b"\xff", "\\xff")]
)
def test_expected_dollar(first: bytes, shown: str) -> None:
    assert_rejects(b"*2\r\n$1\r\na\r\n" + first + b"1\r\n", f"expected '$', got '{shown}'")


def test_too_big_inline_request_without_newline() -> None:
    assert_rejects(b"A" * (SMALL.max_inline_bytes + 1), "too big inline request", limits=SMALL)


def test_too_big_inline_request_even_when_the_newline_came_with_it() -> None:
    line = b"A" * (SMALL.max_inline_bytes + 1) + b"\r\n"
    assert_rejects(line, "too big inline request", limits=SMALL)


def test_too_big_inline_request_at_redis_default_of_64_kib() -> None:
    assert_rejects(b"A" * (64 * 1024 + 1), "too big inline request")


def test_too_big_mbulk_count_string() -> None:
    assert_rejects(b"*" + b"1" * SMALL.max_inline_bytes, "too big mbulk count string", limits=SMALL)


def test_too_big_bulk_count_string() -> None:
    data = b"*2\r\n$1\r\na\r\n$" + b"1" * SMALL.max_inline_bytes
    assert_rejects(data, "too big bulk count string", limits=SMALL)


def test_too_big_bulk_count_string_is_checked_before_the_dollar() -> None:
    data = b"*1\r\n" + b"X" * (SMALL.max_inline_bytes + 1) + b"\r\n"
    assert_rejects(data, "too big bulk count string", limits=SMALL)


def test_commands_before_an_error_are_returned_first() -> None:
    data = encode_command([b"SET", b"k", b"v"]) + b"PING\r\n" + b"*1\r\n$x\r\n" + b"PING\r\n"
    assert_rejects(data, "invalid bulk length", commands_before=[[b"SET", b"k", b"v"], [b"PING"]])


# --- the buffer bound -------------------------------------------------------------------


def test_feed_beyond_max_unparsed_bytes_is_refused() -> None:
    parser = CommandParser(SMALL)
    parser.feed(b"x" * 30)
    with pytest.raises(RespProtocolError) as excinfo:
        parser.feed(b"*" * (SMALL.max_unparsed_bytes - 29))
    assert str(excinfo.value) == "query buffer exceeds max_unparsed_bytes (512)"
    assert parser.buffered_bytes == 30


def test_feed_up_to_exactly_max_unparsed_bytes_is_accepted() -> None:
    limits = RespLimits(max_unparsed_bytes=100)
    parser = CommandParser(limits)
    parser.feed(b"*1\r\n$94\r\n")  # 9 bytes
    parser.feed(b"x" * 91)
    assert parser.buffered_bytes == 100
    assert parser.drain(10) == []


def test_arguments_of_an_incomplete_command_count_against_the_bound() -> None:
    limits = RespLimits(max_unparsed_bytes=100)
    parser = CommandParser(limits)
    first = b"*3\r\n$40\r\n" + b"a" * 40 + b"\r\n"
    parser.feed(first)
    assert parser.drain(10) == []
    assert parser.buffered_bytes == len(first)  # parsed into an argument, still held
    parser.feed(b"$40\r\n" + b"b" * 40)
    assert parser.buffered_bytes == 96
    with pytest.raises(RespProtocolError, match="max_unparsed_bytes"):
        parser.feed(b"\r\n$3\r\n")


def test_undrained_commands_count_against_the_bound() -> None:
    parser = CommandParser(RespLimits(max_unparsed_bytes=20))
    parser.feed(b"PING\r\n" * 3)
    with pytest.raises(RespProtocolError):
        parser.feed(b"PING\r\n")


# --- contract of the parser object -------------------------------------------------------


def test_buffered_bytes_tracks_what_is_not_yet_returned() -> None:
    parser = CommandParser()
    command = encode_command([b"SET", b"k", b"v"])
    parser.feed(command + command[:7])
    assert parser.buffered_bytes == len(command) + 7
    assert parser.drain(1) == [[b"SET", b"k", b"v"]]
    assert parser.buffered_bytes == 7
    assert parser.drain(1) == []
    parser.feed(command[7:])
    assert parser.drain(1) == [[b"SET", b"k", b"v"]]
    assert parser.buffered_bytes == 0


@pytest.mark.parametrize(
    ("chunks", "pings"),
    [
        ([b"PING\r\n*0\r", b"\nPING\n"], 2),  # input ends on the CR of a count header
        ([b"PING\r\n*1\r\n$4\r", b"\nPING\r\nPING\n"], 3),  # ... of a bulk header
        ([b"PING\r\nPING\r", b"\nPING\n"], 3),  # ... of an inline line
    ],
)
def test_line_cut_after_its_cr_resumes_when_the_lf_arrives(chunks: list[bytes], pings: int) -> None:
    assert run(chunks) == Outcome([[b"PING"]] * pings, None, 0)


def test_drain_stops_at_max_commands_and_resumes() -> None:
    parser = CommandParser()
    parser.feed(b"".join(encode_command([b"ECHO", b"%d" % i]) for i in range(5)) + b"PING\n")
    assert parser.drain(2) == [[b"ECHO", b"0"], [b"ECHO", b"1"]]
    assert parser.drain(2) == [[b"ECHO", b"2"], [b"ECHO", b"3"]]
    parser.feed(b"PING\n")
    assert parser.drain(5) == [[b"ECHO", b"4"], [b"PING"], [b"PING"]]
    assert parser.drain(5) == []


def test_error_poisons_the_parser() -> None:
    parser = CommandParser()
    parser.feed(b"*x\r\n")
    with pytest.raises(RespProtocolError) as first:
        parser.drain(1)
    with pytest.raises(RespProtocolError) as again:
        parser.drain(1)
    assert again.value is first.value
    with pytest.raises(RespProtocolError) as on_feed:
        parser.feed(b"PING\r\n")
    assert on_feed.value is first.value


def test_feed_accepts_bytearray_and_memoryview() -> None:
    parser = CommandParser()
    parser.feed(bytearray(b"*1\r\n$4\r\n"))
    parser.feed(memoryview(b"PING\r\n"))
    assert parser.drain(1) == [[b"PING"]]


def test_drain_needs_a_positive_max_commands() -> None:
    with pytest.raises(ValueError):
        CommandParser().drain(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bulk_bytes": 0},
        {"max_args": -1},
        {"max_inline_bytes": True},
        {"max_unparsed_bytes": 1.5},
    ],
)
def test_limits_must_be_positive_ints(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RespLimits(**kwargs)  # type: ignore[arg-type]


def test_limits_default_to_redis_settings() -> None:
    limits = RespLimits()
    assert limits.max_bulk_bytes == 512 * 1024 * 1024
    assert limits.max_args == 1024 * 1024
    assert limits.max_inline_bytes == 64 * 1024
    assert limits.max_unparsed_bytes == 1024 * 1024 * 1024


# --- memory and time --------------------------------------------------------------------


def test_announced_lengths_are_not_preallocated() -> None:
    parser = CommandParser()
    tracemalloc.start()
    try:
        parser.feed(data := b"*1048576\r\n$536870912\r\nabc")
        assert parser.drain(1) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert parser.buffered_bytes == len(data)


def test_large_bulk_fed_in_small_chunks_is_parsed_in_linear_time() -> None:
    size = 10 * 1024 * 1024
    value = b"v" * size
    data = encode_command([b"SET", b"big", value])
    parser = CommandParser()
    commands: list[list[bytes]] = []
    for offset in range(0, len(data), 100):
        parser.feed(data[offset : offset + 100])
        commands.extend(parser.drain(8))
    assert commands == [[b"SET", b"big", value]]
    assert parser.examined_bytes <= 2 * len(data)


@pytest.mark.parametrize("line_start", [b"", b"*", b"*1\r\n$"])
def test_long_line_fed_byte_by_byte_is_searched_once(line_start: bytes) -> None:
    parser = CommandParser()
    filler = b"1" if line_start else b"A"
    parser.feed(line_start)
    assert parser.drain(1) == []
    for _ in range(60_000):
        parser.feed(filler)
        assert parser.drain(1) == []
    assert parser.examined_bytes <= 3 * (60_000 + len(line_start))


def test_many_small_commands_one_drain_at_a_time_is_linear() -> None:
    data = encode_command([b"PING"]) * 20_000
    parser = CommandParser()
    parser.feed(data)
    for _ in range(20_000):
        assert parser.drain(1) == [[b"PING"]]
    assert parser.examined_bytes <= 2 * len(data)


# --- properties ---------------------------------------------------------------------------

commands_strategy = st.lists(
    st.lists(st.binary(max_size=40), min_size=1, max_size=6), min_size=0, max_size=12
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=150, deadline=None)
@given(
    commands=commands_strategy,
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=30),
    max_commands=st.integers(min_value=1, max_value=5),
)
def test_encoded_commands_parse_back_whatever_the_chunking(
    commands: list[list[bytes]], cuts: list[int], max_commands: int
) -> None:
    data = b"".join(encode_command(command) for command in commands)
    outcome = run(chunked(data, cuts), max_commands=max_commands)
    assert outcome == Outcome(commands, None, 0)


# Garbage built from RESP-looking pieces finds far more paths than uniform random bytes.
garbage_piece = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(
        [
            b"*",
            b"$",
            b"\r\n",
            b"\r",
            b"\n",
            b"-1",
            b"0",
            b"1",
            b"2",
            b"3",
            b"99",
            b'"',
            b"'",
            b"\\",
            b"\\x4",
            b" ",
            b"\x00",
            b"PING",
            b"*1\r\n",
            b"$1\r\n",
            b"*2\r\n$3\r\nGET\r\n",
        ]
    ),
)
garbage = st.lists(garbage_piece, max_size=40).map(b"".join)


# Tight limits except the buffer bound, which is the one limit whose outcome depends on
# chunking (a big feed is refused where small ones drained in between are not).
GARBAGE_LIMITS = RespLimits(
    max_bulk_bytes=64, max_args=8, max_inline_bytes=32, max_unparsed_bytes=1024 * 1024
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=garbage, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_garbage_gives_the_same_outcome_whatever_the_chunking(data: bytes, cuts: list[int]) -> None:
    # run() lets any exception other than RespProtocolError escape and fail the test.
    whole = run([data], GARBAGE_LIMITS)
    for outcome in (
        run(chunked(data, cuts), GARBAGE_LIMITS),
        run(byte_by_byte(data), GARBAGE_LIMITS),
        run([data], GARBAGE_LIMITS, max_commands=1),
    ):
        assert (outcome.commands, outcome.error) == (whole.commands, whole.error)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(garbage, st.binary(min_size=30, max_size=120)), max_size=12))
def test_garbage_never_exceeds_the_buffer_bound(chunks: list[bytes]) -> None:
    limits = RespLimits(max_bulk_bytes=200, max_args=8, max_inline_bytes=40, max_unparsed_bytes=96)
    parser = CommandParser(limits)
    for chunk in chunks:
        try:
            parser.feed(chunk)
            while parser.drain(3):
                pass
        except RespProtocolError:
            assert parser.buffered_bytes <= limits.max_unparsed_bytes
            return
        assert parser.buffered_bytes <= limits.max_unparsed_bytes
