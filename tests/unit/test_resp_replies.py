"""Specification of reply encoding (server side) and reply parsing (client side).

Reply-parser framing tests feed the input whole, byte by byte and with trailing data.
"""

from __future__ import annotations

import enum
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardkv.core.resp import (
    EMPTY_ARRAY,
    NEED_DATA,
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    ErrorReply,
    Reply,
    ReplyParser,
    RespLimits,
    RespProtocolError,
    SimpleString,
    encode_command,
    encode_reply,
    write_reply,
)

DEFAULT = RespLimits()

# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (SimpleString("OK"), b"+OK\r\n"),
        (ErrorReply("ERR syntax error"), b"-ERR syntax error\r\n"),
        (0, b":0\r\n"),
        (42, b":42\r\n"),
        (-7, b":-7\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n"),
        (-(2**63), b":-9223372036854775808\r\n"),
        (b"", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n"),
        (b"x" * 5000, b"$5000\r\n" + b"x" * 5000 + b"\r\n"),
        (None, b"$-1\r\n"),
        ([], b"*0\r\n"),
        (EMPTY_ARRAY, b"*0\r\n"),
        (NULL_ARRAY, b"*-1\r\n"),
        ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n"),
        ((b"a", (OK, NULL_ARRAY)), b"*2\r\n$1\r\na\r\n*2\r\n+OK\r\n*-1\r\n"),
        (SimpleString("héllo"), "+héllo\r\n".encode()),
    ],
)
def test_encode_reply(reply: Reply, wire: bytes) -> None:
    assert encode_reply(reply) == wire


def test_write_reply_appends() -> None:
    out = bytearray(b"+PONG\r\n")
    write_reply(out, [b"v", 3])
    write_reply(out, None)
    assert out == b"+PONG\r\n*2\r\n$1\r\nv\r\n:3\r\n$-1\r\n"


def test_bytes_like_values_are_bulk_strings() -> None:
    assert encode_reply(bytearray(b"ab")) == b"$2\r\nab\r\n"
    assert encode_reply(memoryview(b"abc")[1:]) == b"$2\r\nbc\r\n"


def test_int_subclasses_encode_as_integers() -> None:
    class Flag(enum.IntEnum):
        ON = 1

    assert encode_reply(Flag.ON) == b":1\r\n"


@pytest.mark.parametrize("reply", [True, False, "OK", [b"a", "b"], [[True]], 1.5, {b"a": 1}])
def test_non_reply_values_are_refused(reply: object) -> None:
    with pytest.raises(TypeError):
        encode_reply(reply)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    with pytest.raises(ValueError):
        encode_reply(value)


def test_error_reply_cannot_split_the_stream() -> None:
    reply = ErrorReply("ERR bad\r\nvalue\n")
    assert encode_reply(reply) == b"-ERR bad  value \r\n"
    assert reply.message == "ERR bad\r\nvalue\n"


def test_error_reply_code_is_the_first_word() -> None:
    assert ErrorReply("MOVED 3999 127.0.0.1:6381").code == "MOVED"
    assert ErrorReply("ERR").code == "ERR"


@pytest.mark.parametrize("text", ["O\rK", "OK\n", "\r\n"])
def test_simple_string_refuses_cr_and_lf(text: str) -> None:
    with pytest.raises(ValueError):
        SimpleString(text)


def test_reply_values_compare_by_content() -> None:
    assert SimpleString("OK") == OK
    assert ErrorReply("ERR x") == ErrorReply("ERR x")
    assert hash(SimpleString("OK")) == hash(OK)
    assert repr(OK) == "SimpleString(text='OK')"


def test_constants() -> None:
    assert [encode_reply(r) for r in (OK, PONG, QUEUED)] == [
        b"+OK\r\n",
        b"+PONG\r\n",
        b"+QUEUED\r\n",
    ]


def test_encode_command() -> None:
    assert encode_command([b"SET", b"k", b""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    assert encode_command([]) == b"*0\r\n"
    assert encode_command([bytearray(b"a"), memoryview(b"bc")]) == b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"


@pytest.mark.parametrize("arg", ["GET", 1, None])
def test_encode_command_refuses_non_bytes(arg: object) -> None:
    with pytest.raises(TypeError):
        encode_command([b"ECHO", arg])  # type: ignore[list-item]


# --- reply parser -------------------------------------------------------------------------

TRAILER = b"*2\r\n$3\r\nabc\r\n$4\r\nde"  # a partial reply: must stay buffered


def read_replies(
    chunks: list[bytes], limits: RespLimits = DEFAULT
) -> tuple[list[Reply], str | None, int]:
    parser = ReplyParser(limits)
    replies: list[Reply] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (reply := parser.next_reply()) is not NEED_DATA:
                replies.append(reply)
    except RespProtocolError as exc:
        return replies, str(exc), parser.buffered_bytes
    return replies, None, parser.buffered_bytes


def reply_modes(data: bytes, limits: RespLimits) -> dict[str, tuple[list[Reply], str | None, int]]:
    return {
        "whole": read_replies([data], limits),
        "byte by byte": read_replies([data[i : i + 1] for i in range(len(data))], limits),
        "with trailing data": read_replies([data + TRAILER], limits),
    }


def assert_reads(data: bytes, expected: list[Reply], limits: RespLimits = DEFAULT) -> None:
    for mode, (replies, error, buffered) in reply_modes(data, limits).items():
        assert error is None, mode
        assert replies == expected, mode
        assert buffered == (len(TRAILER) if mode == "with trailing data" else 0), mode


def assert_read_fails(data: bytes, error: str, limits: RespLimits = DEFAULT) -> None:
    for mode, (_, got, _) in reply_modes(data, limits).items():
        assert got == error, mode


def test_reads_each_reply_type() -> None:
    data = b"+OK\r\n-ERR no\r\n:-12\r\n$3\r\na\r\n\r\n$0\r\n\r\n$-1\r\n*0\r\n*-1\r\n"
    assert_reads(data, [OK, ErrorReply("ERR no"), -12, b"a\r\n", b"", None, [], NULL_ARRAY])


def test_reads_nested_arrays_with_null_arrays_inside() -> None:
    data = b"*3\r\n*-1\r\n$-1\r\n*2\r\n*-1\r\n*1\r\n*0\r\n:5\r\n"
    assert_reads(data, [[NULL_ARRAY, None, [NULL_ARRAY, [[]]]], 5])


def test_server_errors_are_values_not_exceptions() -> None:
    assert_reads(b"-MOVED 3999 127.0.0.1:6381\r\n", [ErrorReply("MOVED 3999 127.0.0.1:6381")])


def test_non_utf8_status_round_trips_exactly() -> None:
    replies, _, _ = read_replies([b"+\xff\xfe\r\n"])
    assert encode_reply(replies[0]) == b"+\xff\xfe\r\n"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"?x\r\n", "unknown reply type byte b'?'"),
        (b"_\r\n", "unknown reply type byte b'_'"),  # RESP3 null: not spoken here
        (b":12a\r\n", "invalid integer reply"),
        (b":+1\r\n", "invalid integer reply"),
        (b":99999999999999999999\r\n", "invalid integer reply"),
        (b"$-2\r\n", "invalid bulk length"),
        (b"$x\r\n", "invalid bulk length"),
        (b"$3\r\nabcd\r\n", "bulk string not terminated by CRLF"),
        (b"*-2\r\n", "invalid multibulk length"),
        (b"*1x\r\n", "invalid multibulk length"),
        (b"+OK\rX", "expected LF after CR"),
        (b"+O\nK\r\n", "LF inside a status reply"),
        (b"-E\nR\r\n", "LF inside an error reply"),
    ],
)
def test_malformed_replies(data: bytes, error: str) -> None:
    assert_read_fails(data, error)


SMALL = RespLimits(
    max_bulk_bytes=8, max_args=3, max_inline_bytes=16, max_unparsed_bytes=64, max_nesting_depth=2
)


def test_reply_limits() -> None:
    assert_reads(
        b"$8\r\n12345678\r\n*3\r\n:1\r\n:2\r\n*1\r\n:3\r\n", [b"12345678", [1, 2, [3]]], SMALL
    )
    assert_read_fails(b"$9\r\n", "invalid bulk length", SMALL)
    assert_read_fails(b"*4\r\n", "invalid multibulk length", SMALL)
    assert_read_fails(b"*1\r\n*1\r\n*1\r\n", "arrays nested too deeply", SMALL)
    assert_read_fails(b"+" + b"x" * 16, "reply line too long", SMALL)
    assert_read_fails(b"+" + b"x" * 16 + b"\r\n", "reply line too long", SMALL)


def test_reply_buffer_bound() -> None:
    parser = ReplyParser(SMALL)
    parser.feed(partial := b"*3\r\n$8\r\n12345678\r\n$8\r\n1234")
    assert parser.next_reply() is NEED_DATA
    assert parser.buffered_bytes == len(partial)  # includes the bulk already parsed
    parser.feed(b"x" * (SMALL.max_unparsed_bytes - len(partial)))
    with pytest.raises(RespProtocolError) as excinfo:
        parser.feed(b"x")
    assert str(excinfo.value) == "reply buffer exceeds max_unparsed_bytes (64)"


def test_reply_parser_is_poisoned_by_an_error() -> None:
    parser = ReplyParser()
    parser.feed(b"?\r\n")
    with pytest.raises(RespProtocolError) as first:
        parser.next_reply()
    with pytest.raises(RespProtocolError) as again:
        parser.feed(b"+OK\r\n")
    assert again.value is first.value


def test_large_bulk_reply_in_small_chunks_is_linear() -> None:
    value = bytes(range(256)) * 40_000  # 10 MB
    data = encode_reply(value)
    parser = ReplyParser()
    replies: list[Reply] = []
    for offset in range(0, len(data), 100):
        parser.feed(data[offset : offset + 100])
        if (reply := parser.next_reply()) is not NEED_DATA:
            replies.append(reply)
    assert replies == [value]
    assert parser.examined_bytes <= 2 * len(data)


def test_long_line_fed_byte_by_byte_is_searched_once() -> None:
    parser = ReplyParser()
    for _ in range(60_000):
        parser.feed(b"x")
        assert parser.next_reply() is NEED_DATA
    assert parser.examined_bytes <= 2 * 60_000


# --- properties ---------------------------------------------------------------------------

line_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=20
)
leaf = st.one_of(
    line_text.map(SimpleString),
    line_text.map(ErrorReply),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=30),
    st.none(),
    st.just(NULL_ARRAY),
)
replies_strategy = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=20,
)


def as_parsed(reply: Reply) -> Reply:
    """What a reply looks like after a round trip: arrays come back as lists."""
    if isinstance(reply, list | tuple):
        return [as_parsed(item) for item in reply]
    return reply


@settings(max_examples=150, deadline=None)
@given(
    replies=st.lists(replies_strategy, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_replies_round_trip_through_the_parser_whatever_the_chunking(
    replies: list[Reply], cuts: list[int]
) -> None:
    data = b"".join(encode_reply(reply) for reply in replies)
    bounds = [0, *sorted({min(c, len(data)) for c in cuts}), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    parsed, error, buffered = read_replies(chunks)
    assert (parsed, error, buffered) == ([as_parsed(r) for r in replies], None, 0)


reply_garbage = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.sampled_from(
            [b"*", b"$", b"+", b"-", b":", b"\r\n", b"\r", b"\n", b"-1", b"0", b"1", b"2", b"9"]
        ),
    ),
    max_size=40,
).map(b"".join)
# SMALL but for the buffer bound, whose outcome legitimately depends on the chunk sizes.
UNBOUNDED_SMALL = RespLimits(max_bulk_bytes=8, max_args=3, max_inline_bytes=16, max_nesting_depth=2)


@settings(max_examples=200, deadline=None)
@given(data=reply_garbage, cut=st.integers(min_value=0, max_value=200))
def test_reply_garbage_only_raises_protocol_errors(data: bytes, cut: int) -> None:
    # read_replies lets any other exception escape and fail the test.
    whole = read_replies([data], UNBOUNDED_SMALL)
    split = read_replies([data[:cut], data[cut:]], UNBOUNDED_SMALL)
    assert split[:2] == whole[:2]
    _, _, buffered = read_replies([data[:cut], data[cut:]], SMALL)
    assert buffered <= SMALL.max_unparsed_bytes
