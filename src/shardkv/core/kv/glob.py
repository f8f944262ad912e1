"""Redis's glob matching (``stringmatchlen`` in util.c), used by KEYS and SCAN MATCH.

Not ``fnmatch``: Redis's dialect differs in ways clients can observe, and we reproduce them:

- ``*`` any run of bytes, ``?`` one byte, ``\\x`` the byte ``x`` literally (a trailing
  backslash is a literal backslash).
- ``[abc]`` one of, ``[^abc]`` none of, ``[a-z]`` a range whose ends may come in either
  order (``[z-a]`` is ``[a-z]``), ``[\\]]`` an escaped byte. Range ends compare as C's signed
  ``char``, so ranges reaching bytes >= 0x80 behave as on x86 Redis. A class missing its
  ``]`` takes the rest of the pattern; ``[`` alone matches nothing.
- A non-empty pattern never matches the empty string (not even ``*``); callers treat the
  pattern ``*`` as "everything" before matching, as KEYS and SCAN do.
- A pattern needing more than 1000 nested ``*`` (Redis's guard against abusive patterns)
  matches nothing.

Matching is linear in practice: ``*`` backtracks to the most recent star only (every other
token consumes exactly one byte, so this finds a match whenever one exists).
"""

from __future__ import annotations

from typing import Final

#: Redis's recursion guard: more ``*`` groups than this before a non-star token never match.
MAX_STAR_NESTING: Final = 1000

_STAR: Final = -2
_ANY: Final = -1
# Tokens: an int >= 0 is a literal byte, _ANY is '?', _STAR is a run of '*', and a bytes
# object of length 256 is a character class (1 at the index of every byte it accepts).
_Token = int | bytes


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _compile(pattern: bytes) -> tuple[list[_Token], bool]:
    """Tokens of ``pattern`` and whether it can match anything at all."""
    tokens: list[_Token] = []
    n = len(pattern)
    i = 0
    while i < n:
        byte = pattern[i]
        if byte == 0x2A:  # '*'
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
            i += 1
        elif byte == 0x3F:  # '?'
            tokens.append(_ANY)
            i += 1
        elif byte == 0x5B:  # '['
            table, i = _compile_class(pattern, i + 1)
            tokens.append(table)
        elif byte == 0x5C and i + 1 < n:  # '\\' escapes the next byte
            tokens.append(pattern[i + 1])
            i += 2
        else:
            tokens.append(byte)
            i += 1
    star_groups = tokens.count(_STAR)
    nonterminal_stars = star_groups - (1 if tokens and tokens[-1] == _STAR else 0)
    return tokens, nonterminal_stars <= MAX_STAR_NESTING


def _compile_class(pattern: bytes, i: int) -> tuple[bytes, int]:
    """Compile the class starting just after '[' at ``i``; return (table, next index)."""
    n = len(pattern)
    negate = i < n and pattern[i] == 0x5E  # '^'
    if negate:
        i += 1
    accepted = bytearray(256)
    while True:
        if i >= n:  # unterminated: the class takes the rest of the pattern
            break
        byte = pattern[i]
        if byte == 0x5C and n - i >= 2:  # escaped byte
            accepted[pattern[i + 1]] = 1
            i += 2
        elif byte == 0x5D:  # ']'
            i += 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # range "a-z"
            low, high = _signed(byte), _signed(pattern[i + 2])
            if low > high:
                low, high = high, low
            for candidate in range(256):
                if low <= _signed(candidate) <= high:
                    accepted[candidate] = 1
            i += 3
        else:
            accepted[byte] = 1
            i += 1
    if negate:
        accepted = bytearray(1 - flag for flag in accepted)
    return bytes(accepted), i


class GlobPattern:
    """A compiled Redis glob. ``matches(data)`` equals Redis's ``stringmatchlen(pattern,
    data, nocase=0)``."""

    __slots__ = ("_literal", "_matchable", "_prefix", "_tokens", "pattern")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._tokens, self._matchable = _compile(pattern)
        tokens = self._tokens
        literal_count = len(tokens) - (1 if tokens and tokens[-1] == _STAR else 0)
        all_literal = all(isinstance(t, int) and t >= 0 for t in tokens[:literal_count])
        # Fast paths for the common shapes "exact" and "prefix*".
        self._literal: bytes | None = None
        self._prefix: bytes | None = None
        if all_literal and self._matchable:
            text = bytes(t for t in tokens[:literal_count] if isinstance(t, int))
            if literal_count == len(tokens):
                self._literal = text
            elif text:
                self._prefix = text

    def matches(self, data: bytes) -> bool:
        if self._literal is not None:
            return data == self._literal
        if self._prefix is not None:
            return data.startswith(self._prefix)
        if not data:
            # stringmatchlen never enters its loop for an empty string.
            return not self.pattern
        if not self._matchable:
            return False
        return self._match_tokens(data)

    def _match_tokens(self, data: bytes) -> bool:
        tokens = self._tokens
        token_count = len(tokens)
        data_len = len(data)
        ti = di = 0
        star_ti = -1
        star_di = 0
        while di < data_len:
            if ti < token_count:
                token = tokens[ti]
                if token == _STAR:
                    star_ti, star_di = ti, di
                    ti += 1
                    continue
                byte = data[di]
                ok = token[byte] == 1 if isinstance(token, bytes) else token in (_ANY, byte)
                if ok:
                    ti += 1
                    di += 1
                    continue
            if star_ti < 0:
                return False
            # Let the most recent star swallow one more byte and retry from there.
            star_di += 1
            di = star_di
            ti = star_ti + 1
        while ti < token_count and tokens[ti] == _STAR:
            ti += 1
        return ti == token_count


def glob_match(pattern: bytes, data: bytes) -> bool:
    """One-shot ``GlobPattern(pattern).matches(data)``; compile once when matching many."""
    return GlobPattern(pattern).matches(data)
