"""Strict decimal parsing shared by the command and reply parsers.

Owns one rule: which byte strings are integers on the wire. It mirrors Redis's
``string2ll`` so that we refuse exactly what Redis refuses (``int()`` would accept
``b" 3"``, ``b"+3"``, ``b"0_3"`` and ``b"03"``).
"""

from __future__ import annotations

__all__ = ["LL_MAX", "LL_MIN", "parse_decimal"]

LL_MIN = -(2**63)
LL_MAX = 2**63 - 1

# string2ll refuses strings of LONG_STR_SIZE (21) bytes or more.
_MAX_DECIMAL_CHARS = 20


def parse_decimal(text: bytes) -> int | None:
    """Return the value of ``text`` as a signed 64-bit decimal, or ``None`` if invalid.

    Valid: ``0``, or an optional ``-`` then a digit 1-9 then ASCII digits, within the
    signed 64-bit range. Anything else (empty, ``+``, spaces, leading zeros, ``-0``) is
    ``None``; the caller chooses the error text.
    """
    if not 0 < len(text) <= _MAX_DECIMAL_CHARS:
        return None
    digits = text[1:] if text[0] == 0x2D else text  # '-'
    # bytes.isdigit() is ASCII-only and False for b"".
    if not digits.isdigit():
        return None
    if digits[0] == 0x30 and text != b"0":  # leading zero, or "-0"
        return None
    value = int(text)
    if not LL_MIN <= value <= LL_MAX:
        return None
    return value
