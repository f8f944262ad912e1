"""Storage encoding of the KV state machine: what lives under which key in which column.

Column ``DATA`` (see ``shardkv.core.engine``):
    key   = slot prefix (2 bytes, big-endian) + user key
    value = type tag (1 byte) + expire-at (8 bytes, big-endian, absolute unix milliseconds,
            0 = no expiry) + payload (for strings: the string itself)

Column ``EXPIRY`` (an index to find expired keys without scanning the data):
    key   = expire-at (8 bytes, big-endian) + data key
    value = b""
    There is exactly one entry per data value whose expire-at is non-zero, and none other.

Column ``META``:
    ``KEY_COUNT_KEY``     -> number of entries in DATA (8 bytes, big-endian)
    ``EXPIRES_COUNT_KEY`` -> number of entries in EXPIRY (8 bytes, big-endian)

These counts include keys that are logically expired but not yet removed by the expiry
sweep, as Redis's DBSIZE does. This module owns the byte layout only; it never reads or
writes storage.
"""

from __future__ import annotations

import struct
from typing import Final

from shardkv.core.cluster.slots import SLOTS_END, prefixed_key

#: Type tag of a string value. Other Redis types will get other tags.
TYPE_STRING: Final = 0
#: Name reported by TYPE for each tag.
TYPE_NAMES: Final = {TYPE_STRING: "string"}

EXPIRE_AT_BYTES: Final = 8
#: Bytes before the payload in a DATA value.
HEADER_BYTES: Final = 1 + EXPIRE_AT_BYTES
#: Largest representable expire-at (Redis stores it as a signed 64-bit integer).
MAX_EXPIRE_AT_MS: Final = 2**63 - 1

_HEADER: Final = struct.Struct(">BQ")
_EXPIRE_AT: Final = struct.Struct(">Q")

#: Header of a string without expiry: the common case, shared rather than rebuilt.
STRING_NO_EXPIRY_HEADER: Final = _HEADER.pack(TYPE_STRING, 0)

KEY_COUNT_KEY: Final = b"kv/key_count"
EXPIRES_COUNT_KEY: Final = b"kv/expires_count"

#: Exclusive upper bound of every DATA key (every slot prefix is below it).
DATA_END: Final = SLOTS_END
#: Exclusive upper bound of every EXPIRY key (expire-at < 2**63, so the first byte < 0x80).
EXPIRY_END: Final = b"\x80"

data_key = prefixed_key
"""``data_key(user_key) -> bytes``: the DATA column key of a user key."""

decode_header = _HEADER.unpack_from
"""``decode_header(value) -> (type_tag, expire_at_ms)`` of a DATA value."""


def user_key(data_key: bytes) -> bytes:
    """The user key inside a DATA column key."""
    return data_key[2:]


def encode_value(type_tag: int, expire_at_ms: int, payload: bytes) -> bytes:
    """A DATA value. ``expire_at_ms`` is 0 for no expiry, else in ``1..MAX_EXPIRE_AT_MS``."""
    if expire_at_ms == 0 and type_tag == TYPE_STRING:
        return STRING_NO_EXPIRY_HEADER + payload
    return _HEADER.pack(type_tag, expire_at_ms) + payload


def payload(value: bytes) -> bytes:
    """The payload of a DATA value (a copy: bytes slicing copies)."""
    return value[HEADER_BYTES:]


def expiry_key(expire_at_ms: int, data_key: bytes) -> bytes:
    """The EXPIRY column key for a data key that expires at ``expire_at_ms``."""
    return _EXPIRE_AT.pack(expire_at_ms) + data_key


def expiry_range_end(now_ms: int) -> bytes:
    """Exclusive EXPIRY range end covering every key with expire-at <= ``now_ms``."""
    return _EXPIRE_AT.pack(min(max(now_ms, -1), MAX_EXPIRE_AT_MS) + 1)


def decode_expiry_key(key: bytes) -> tuple[int, bytes]:
    """``(expire_at_ms, data_key)`` of an EXPIRY column key."""
    return _EXPIRE_AT.unpack_from(key)[0], key[EXPIRE_AT_BYTES:]


def encode_count(count: int) -> bytes:
    return _EXPIRE_AT.pack(count)


def decode_count(value: bytes | None) -> int:
    """A META count; a missing entry is 0 (a store that never held a key)."""
    if value is None:
        return 0
    count: int = _EXPIRE_AT.unpack(value)[0]
    return count
