"""INCRBYFLOAT arithmetic: x87 long double parsing, addition and "%.17Lf" printing.

Expected texts were produced by Redis 7.0 on x86-64 (INCRBYFLOAT on a key holding the
left operand).
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from shardkv.core.kv.longdouble import (
    MAX_LONG_DOUBLE_CHARS,
    add_long_double,
    format_long_double,
    parse_long_double,
    round_to_long_double,
)


def incrbyfloat(current: bytes, increment: bytes) -> bytes | None:
    left = parse_long_double(current)
    right = parse_long_double(increment)
    assert left is not None and right is not None
    total = add_long_double(left, right)
    return None if total is None else format_long_double(total)


@pytest.mark.parametrize(
    ("current", "increment", "expected"),
    [
        (b"10.5", b"0.1", b"10.6"),  # long double precision hides the binary error
        (b"3.0e3", b"1.1", b"3001.10000000000000009"),  # ... but 17 digits can show it
        (b"3", b"1.5e-20", b"3"),
        (b"0", b"-1e-20", b"0"),  # "-0.00000000000000000" prints as "0"
        (b"1e1", b"-0.0000000000000000001", b"10"),
        (b"0", b"0x10", b"16"),
        (b"0", b"0x1.8p1", b"3"),
        (b"0", b".5", b"0.5"),
        (b"5.", b"0", b"5"),
        (b"-2.5", b"1", b"-1.5"),
        (b"1", b"1e-4950", b"1"),  # a subnormal increment is accepted
        (
            b"10.6",
            b"1e300",
            b"1000000000000000000008997324079559193870523944273290747938260082321265646596"
            b"180935755849152083750497190350372508614274835903592556184672983913096260520748"
            b"646287327135641843653294084255107606016789726652932370030551382947620994540294"
            b"772781889620606179267611627097410650567187386105690089424915104006144",
        ),
    ],
)
def test_results_match_redis(current: bytes, increment: bytes, expected: bytes) -> None:
    assert incrbyfloat(current, increment) == expected


def test_huge_values_print_every_digit() -> None:
    text = incrbyfloat(b"0", b"1e4932")
    assert text is not None
    assert len(text) == 4933
    assert text.startswith(b"100000000000000000000601894938796389132383777425453311477")
    assert text.endswith(b"2720")


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b" 1",  # leading whitespace
        b"1 ",  # trailing garbage
        b"1\x00",
        b"nan",
        b"1e",
        b"0x",
        b"abc",
        b"1e4933",  # overflows long double
        b"1e-5000",  # underflows to zero
        b"1" * MAX_LONG_DOUBLE_CHARS,
        b"1e99999999999999999999",
    ],
)
def test_invalid_floats_are_refused(text: bytes) -> None:
    assert parse_long_double(text) is None


def test_accepted_syntax() -> None:
    assert parse_long_double(b"+1") == 1
    assert parse_long_double(b"-0") == 0
    assert parse_long_double(b"1E2") == 100
    assert parse_long_double(b"inf") == math.inf
    assert parse_long_double(b"-Infinity") == -math.inf
    assert parse_long_double(b"0x.8") == Fraction(1, 2)
    assert parse_long_double(b"1e-99999999999999") is None


def test_infinite_operands_or_sums_are_refused() -> None:
    assert add_long_double(Fraction(1), math.inf) is None
    big = parse_long_double(b"1.1e4932")
    assert big is not None
    assert add_long_double(big, big) is None


def test_rounding_to_64_bit_significand_ties_to_even() -> None:
    one = Fraction(1)
    ulp = Fraction(1, 2**63)  # spacing of long doubles in [1, 2)
    assert round_to_long_double(one + ulp) == one + ulp
    assert round_to_long_double(one + ulp / 2) == one  # tie: even significand
    assert round_to_long_double(one + ulp * 3 / 2) == one + 2 * ulp  # tie: even significand
