"""KEYS / SCAN MATCH use Redis's glob dialect (util.c stringmatchlen), not fnmatch."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shardkv.core.kv.glob import MAX_STAR_NESTING, GlobPattern, glob_match


def test_star_and_question_mark() -> None:
    assert glob_match(b"h*llo", b"hllo")
    assert glob_match(b"h*llo", b"heeeello")
    assert glob_match(b"h?llo", b"hello")
    assert not glob_match(b"h?llo", b"hllo")
    assert glob_match(b"*", b"anything")
    assert glob_match(b"a*b*c", b"a-b-b-c")
    assert not glob_match(b"a*b*c", b"a-b-b-")


def test_classes_ranges_and_negation() -> None:
    assert glob_match(b"h[ae]llo", b"hello")
    assert glob_match(b"h[ae]llo", b"hallo")
    assert not glob_match(b"h[ae]llo", b"hillo")
    assert glob_match(b"h[^e]llo", b"hallo")
    assert not glob_match(b"h[^e]llo", b"hello")
    assert glob_match(b"h[a-b]llo", b"hbllo")
    assert not glob_match(b"h[a-b]llo", b"hcllo")


def test_reversed_range_is_the_same_range() -> None:
    assert glob_match(b"[z-a]", b"m")


def test_escapes() -> None:
    assert glob_match(b"a\\*b", b"a*b")
    assert not glob_match(b"a\\*b", b"axb")
    assert glob_match(b"[\\]]", b"]")
    assert glob_match(b"a\\", b"a\\")  # a trailing backslash is literal


def test_redis_quirks() -> None:
    # A non-empty pattern never matches the empty string, not even "*".
    assert not glob_match(b"*", b"")
    assert glob_match(b"", b"")
    assert not glob_match(b"", b"a")
    # An unterminated class takes the rest of the pattern; "[" alone matches nothing.
    assert glob_match(b"[ab", b"b")
    assert not glob_match(b"[", b"[")
    assert glob_match(b"x[^", b"xq")
    # "[a-]": a range from 'a' to ']' (ends swapped: ']'..'a'), and no closing bracket.
    assert glob_match(b"[a-]", b"_")
    assert not glob_match(b"[a-]", b"b")
    # Range ends compare as signed chars: [a-\xff] spans \xff(-1)..'a'.
    assert glob_match(b"[a-\xff]", b"\x00")
    assert not glob_match(b"[a-\xff]", b"b")
    assert glob_match(b"[a-\xff]", b"\xff")


def test_too_many_nested_stars_match_nothing() -> None:
    fits = b"*a" * MAX_STAR_NESTING
    assert glob_match(fits, b"a" * MAX_STAR_NESTING)
    too_deep = b"*a" * (MAX_STAR_NESTING + 1)
    assert not glob_match(too_deep, b"a" * (MAX_STAR_NESTING + 1))
    # A trailing star group does not nest.
    assert glob_match(fits + b"*", b"a" * MAX_STAR_NESTING + b"tail")


def test_fast_paths_agree_with_the_general_matcher() -> None:
    prefix = GlobPattern(b"user:*")
    assert prefix.matches(b"user:1")
    assert prefix.matches(b"user:")
    assert not prefix.matches(b"use")
    exact = GlobPattern(b"user\\:1")
    assert exact.matches(b"user:1")
    assert not exact.matches(b"user:10")


def _reference(pattern: bytes, string: bytes, nesting: int = 0) -> bool:
    """A direct transliteration of Redis's recursive stringmatchlen_impl (nocase=0,
    without the skipLongerMatches optimisation, which does not change results)."""
    if nesting > MAX_STAR_NESTING:
        return False

    def signed(byte: int) -> int:
        return byte - 256 if byte >= 128 else byte

    p, s = 0, 0
    plen, slen = len(pattern), len(string)
    while p < plen and s < slen:
        c = pattern[p]
        if c == ord("*"):
            while p + 1 < plen and pattern[p + 1] == ord("*"):
                p += 1
            if p + 1 == plen:
                return True
            while s < slen:
                if _reference(pattern[p + 1 :], string[s:], nesting + 1):
                    return True
                s += 1
            return False
        if c == ord("?"):
            s += 1
        elif c == ord("["):
            p += 1
            negate = p < plen and pattern[p] == ord("^")
            if negate:
                p += 1
            match = False
            while True:
                if p < plen and pattern[p] == ord("\\") and plen - p >= 2:
                    p += 1
                    if pattern[p] == string[s]:
                        match = True
                elif p < plen and pattern[p] == ord("]"):
                    break
                elif p >= plen:
                    p -= 1
                    break
                elif plen - p >= 3 and pattern[p + 1] == ord("-"):
                    low, high = signed(pattern[p]), signed(pattern[p + 2])
                    if low > high:
                        low, high = high, low
                    p += 2
                    if low <= signed(string[s]) <= high:
                        match = True
                elif pattern[p] == string[s]:
                    match = True
                p += 1
            if negate:
                match = not match
            if not match:
                return False
            s += 1
        else:
            if c == ord("\\") and plen - p >= 2:
                p += 1
            if pattern[p] != string[s]:
                return False
            s += 1
        p += 1
        if s == slen:
            while p < plen and pattern[p] == ord("*"):
                p += 1
            break
    return p == plen and s == slen


_ALPHABET = [*b"ab*?[]^-\\", 0xFF]
_PATTERN_BYTES = st.sampled_from(_ALPHABET)
_STRING_BYTES = st.sampled_from(_ALPHABET)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(_PATTERN_BYTES, max_size=10).map(bytes),
    st.lists(_STRING_BYTES, max_size=8).map(bytes),
)
def test_matches_a_transliteration_of_redis_stringmatchlen(pattern: bytes, data: bytes) -> None:
    assert GlobPattern(pattern).matches(data) == _reference(pattern, data)
