"""Hash slots: which of the 16384 slots a key belongs to, exactly as Redis Cluster computes it.

Cluster-aware Redis clients compute slots themselves and send each command to the node that
owns the slot, so this must agree with Redis bit for bit: CRC16/XMODEM (polynomial 0x1021,
initial value 0, no reflection) of the key, modulo 16384, where a key containing a non-empty
``{hash tag}`` hashes only the tag. Storage keys are prefixed with their slot (2 bytes,
big-endian), so every slot is a contiguous key range.

This module owns the slot arithmetic only; which node owns which slot lives elsewhere.
"""

from __future__ import annotations

from binascii import crc_hqx
from typing import Final

SLOT_COUNT: Final = 16384
_SLOT_MASK: Final = SLOT_COUNT - 1
#: Size of the slot prefix on storage keys.
SLOT_PREFIX_BYTES: Final = 2

# One shared bytes object per slot: the hot path concatenates a prefix per command and
# should not allocate it.
_PREFIXES: Final = tuple(slot.to_bytes(SLOT_PREFIX_BYTES, "big") for slot in range(SLOT_COUNT))
#: The first byte string greater than every slot-prefixed key (an exclusive range end).
SLOTS_END: Final = SLOT_COUNT.to_bytes(SLOT_PREFIX_BYTES, "big")


def crc16(data: bytes) -> int:
    """CRC16/XMODEM of ``data``, the checksum Redis Cluster uses (``crc16(b"123456789")``
    is ``0x31C3``). ``binascii.crc_hqx`` with a zero initial value is exactly this CRC."""
    return crc_hqx(data, 0)


def key_slot(key: bytes) -> int:
    """Slot of ``key``: CRC16 of the hash tag if the key has a non-empty one (the bytes
    between the first ``{`` and the first ``}`` after it), else of the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        # "{}" (empty tag) or no closing brace: hash the whole key, as Redis does.
        if end > start + 1:
            return crc_hqx(key[start + 1 : end], 0) & _SLOT_MASK
    return crc_hqx(key, 0) & _SLOT_MASK


def slot_prefix(slot: int) -> bytes:
    """The 2-byte big-endian prefix of every storage key in ``slot`` (0 <= slot < 16384).

    Raises ``IndexError`` for a slot out of range: that is a caller bug, never client input.
    """
    if slot < 0:
        raise IndexError(f"slot {slot} out of range")
    return _PREFIXES[slot]


def slot_of_prefixed(prefixed_key: bytes) -> int:
    """The slot encoded in the first two bytes of a slot-prefixed storage key."""
    return (prefixed_key[0] << 8) | prefixed_key[1]


def prefixed_key(key: bytes) -> bytes:
    """``slot_prefix(key_slot(key)) + key``: the storage key of a user key (the hot path)."""
    return _PREFIXES[key_slot(key)] + key


def pattern_slot(pattern: bytes) -> int | None:
    """The one slot every key matching the glob ``pattern`` must hash to, or ``None`` if
    matching keys may live in any slot.

    A pattern pins a slot when it has a non-empty hash tag made of literal characters that
    comes before any wildcard (``user:{42}:*`` -> slot of ``42``), or when it has no
    wildcard at all (it can only match itself). Escapes are treated as "any slot" rather
    than unescaped, which is correct, only slower. ``KEYS`` and ``SCAN ... MATCH`` use this
    to visit one slot instead of all of them, as Redis Cluster does.
    """
    brace = -1  # index of the first '{'; -2 once an empty tag "{}" was seen
    for i, byte in enumerate(pattern):
        if byte in _GLOB_SPECIAL:
            return None
        if brace == -1 and byte == 0x7B:  # '{'
            brace = i
        elif brace >= 0 and byte == 0x7D:  # '}'
            if i == brace + 1:
                brace = -2  # "{}": the whole key is hashed, keep looking for wildcards
            else:
                return crc_hqx(pattern[brace + 1 : i], 0) & _SLOT_MASK
    return key_slot(pattern)


_GLOB_SPECIAL: Final = frozenset(b"*?[\\")
