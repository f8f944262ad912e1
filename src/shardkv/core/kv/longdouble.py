"""INCRBYFLOAT arithmetic as Redis does it: x87 80-bit ``long double``, exactly.

Redis parses both operands with ``strtold``, adds them in ``long double`` (64-bit
significand on x86-64) and prints the sum with ``"%.17Lf"``, then trims trailing zeros (and
the dot). Python floats have a 53-bit significand, which changes visible results (10.5 +
0.1 must print ``10.6``), so we emulate the format exactly with rational arithmetic: values
are ``Fraction`` objects rounded to the nearest representable ``long double`` (ties to
even), infinities are ``math.inf``. Every replica computes the same bytes.

Accepted input is what Redis accepts (``string2ld``): 1 to 5119 bytes, no leading
whitespace, ``strtold`` syntax (decimal, hexadecimal ``0x1.8p3``, ``inf``/``infinity``) with
nothing after the number; NaN, overflow and underflow to zero are rejected.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

#: Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are rejected.
MAX_LONG_DOUBLE_CHARS: Final = 5 * 1024
_SIGNIFICAND_BITS: Final = 64
_MIN_EXPONENT: Final = -16382  # smallest normal binary exponent
_MAX_EXPONENT: Final = 16383
_SUBNORMAL_QUANTUM_EXPONENT: Final = _MIN_EXPONENT - (_SIGNIFICAND_BITS - 1)
_OVERFLOW_BOUND: Final = 1 << (_MAX_EXPONENT + 1)
# Decimal exponents beyond which the value certainly overflows / underflows to zero; they
# let us reject "1e999999999" without building a billion-digit integer.
_DECIMAL_OVERFLOW_EXPONENT: Final = 4940
_DECIMAL_UNDERFLOW_EXPONENT: Final = -4960
# Python refuses int <-> str conversions beyond 4300 digits; stay well under that.
_DIGIT_CHUNK: Final = 1000

LongDouble = Fraction | float
"""A finite long double as an exact ``Fraction``, or ``math.inf``/``-math.inf``."""

_DECIMAL: Final = re.compile(rb"([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?")
_HEX: Final = re.compile(
    rb"([+-]?)0[xX](?:([0-9a-fA-F]+)(?:\.([0-9a-fA-F]*))?|\.([0-9a-fA-F]+))(?:[pP]([+-]?\d+))?"
)
_INFINITY: Final = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)
_C_SPACE: Final = frozenset(b" \t\n\v\f\r")


def _int_from_digits(digits: bytes, base: int) -> int:
    value = 0
    for start in range(0, len(digits), _DIGIT_CHUNK):
        chunk = digits[start : start + _DIGIT_CHUNK]
        value = value * base ** len(chunk) + int(chunk, base)
    return value


def _digits_of(value: int) -> str:
    """Decimal digits of a non-negative int of any size."""
    if value < 10**_DIGIT_CHUNK:
        return str(value)
    high, low = divmod(value, 10**_DIGIT_CHUNK)
    return _digits_of(high) + str(low).rjust(_DIGIT_CHUNK, "0")


def round_to_long_double(value: Fraction) -> LongDouble:
    """The long double nearest to ``value`` (ties to even); +-inf when it overflows."""
    if value == 0:
        return Fraction(0)
    magnitude = abs(value)
    # floor(log2(magnitude)), from bit lengths, corrected by one comparison.
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    quantum_exponent = max(exponent - (_SIGNIFICAND_BITS - 1), _SUBNORMAL_QUANTUM_EXPONENT)
    quantum = Fraction(2) ** quantum_exponent
    rounded = round(magnitude / quantum) * quantum  # round() on Fraction: ties to even
    if rounded >= _OVERFLOW_BOUND:
        return math.inf if value > 0 else -math.inf
    return rounded if value > 0 else -rounded


def parse_long_double(text: bytes) -> LongDouble | None:
    """Redis's ``string2ld``: the long double ``text`` denotes, or ``None`` if Redis would
    answer "value is not a valid float"."""
    if not text or len(text) >= MAX_LONG_DOUBLE_CHARS or text[0] in _C_SPACE:
        return None
    if (match := _DECIMAL.fullmatch(text)) is not None:
        sign, whole, fraction, only_fraction, exponent_text = match.groups()
        digits = (whole or b"") + (fraction or only_fraction or b"")
        scale = len(fraction or only_fraction or b"")
        exponent = _bounded_exponent(exponent_text)
        significant = digits.lstrip(b"0")
        if not significant:
            return Fraction(0)
        magnitude_exponent = len(significant) - scale + exponent
        if magnitude_exponent > _DECIMAL_OVERFLOW_EXPONENT:
            return None  # ERANGE, HUGE_VAL
        if magnitude_exponent < _DECIMAL_UNDERFLOW_EXPONENT:
            return None  # ERANGE, rounds to zero
        exact = Fraction(_int_from_digits(significant, 10)) * Fraction(10) ** (exponent - scale)
    elif (match := _HEX.fullmatch(text)) is not None:
        sign, whole, fraction, only_fraction, exponent_text = match.groups()
        digits = (whole or b"") + (fraction or only_fraction or b"")
        scale = 4 * len(fraction or only_fraction or b"")
        exponent = _bounded_exponent(exponent_text)
        significant = digits.lstrip(b"0")
        if not significant:
            return Fraction(0)
        magnitude_exponent = 4 * len(significant) - scale + exponent
        if magnitude_exponent > _MAX_EXPONENT + 2:
            return None
        if magnitude_exponent < _SUBNORMAL_QUANTUM_EXPONENT - 2:
            return None
        exact = Fraction(_int_from_digits(significant, 16)) * Fraction(2) ** (exponent - scale)
    elif (match := _INFINITY.fullmatch(text)) is not None:
        return -math.inf if match.group(1) == b"-" else math.inf
    else:
        return None  # includes "nan": Redis rejects NaN
    if sign == b"-":
        exact = -exact
    rounded = round_to_long_double(exact)
    if isinstance(rounded, float) or rounded == 0:
        return None  # overflow to HUGE_VAL or underflow to zero: ERANGE
    return rounded


def _bounded_exponent(exponent_text: bytes | None) -> int:
    """The exponent, clamped far beyond any meaningful range (it may have a million digits)."""
    if exponent_text is None:
        return 0
    negative = exponent_text.startswith(b"-")
    digits = exponent_text.lstrip(b"+-").lstrip(b"0") or b"0"
    bound = 10**7
    value = bound if len(digits) > 7 else min(int(digits), bound)
    return -value if negative else value


def add_long_double(left: LongDouble, right: LongDouble) -> Fraction | None:
    """``left + right`` in long double; ``None`` if the sum is NaN or infinite (Redis:
    "increment would produce NaN or Infinity")."""
    if isinstance(left, float) or isinstance(right, float):
        return None  # any infinite operand makes the sum inf or NaN
    total = round_to_long_double(left + right)
    if isinstance(total, float):
        return None
    return total


def format_long_double(value: Fraction) -> bytes:
    """Redis's human-friendly long double text: ``"%.17Lf"``, trailing zeros and a trailing
    dot removed, ``-0`` printed as ``0``."""
    negative = value < 0
    scaled = round(abs(value) * 10**17)  # printf rounds the exact binary value, ties to even
    whole, fraction = divmod(scaled, 10**17)
    fraction_text = str(fraction).rjust(17, "0").rstrip("0")
    text = _digits_of(whole)
    if fraction_text:
        text += "." + fraction_text
    if negative and text != "0":
        text = "-" + text
    return text.encode()
