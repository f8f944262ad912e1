"""Storage encoding of the KV state machine: what lives under which key in which column.

Several shards (Raft groups) share one engine; each group's state machine owns a
``KeyScope`` (``shardkv.core.kv.scope``): its group id and its slot ranges. Every record
below belongs to exactly one group, and each group's records form a few contiguous key
ranges, so a group's FLUSHALL, sweep, snapshot and install are range operations that never
touch another group's records.

Column ``DATA`` (see ``shardkv.core.engine``):
    key   = slot prefix (2 bytes, big-endian) + user key
    value = type tag (1 byte) + expire-at (8 bytes, big-endian, absolute unix milliseconds,
            0 = no expiry) + payload (for strings: the string itself)
    A group owns the keys of its slots: for each of its inclusive slot ranges
    ``(first, last)``, the one key range ``[slot_prefix(first), slot_prefix(last + 1))``
    (``SLOTS_END`` for the last slot): see `data_range` / `data_ranges`.

Column ``EXPIRY`` (an index to find expired keys without scanning the data):
    key   = group id (4 bytes, big-endian) + expire-at (8 bytes, big-endian) + data key
    value = b""
    There is exactly one entry per data value whose expire-at is non-zero, under the group
    owning that data key, and none other. A group's entries are the range
    `expiry_group_range` (expire-at < 2**63, so the byte after the group id is < 0x80),
    ordered by expire-at: the sweep is one range scan from the group's prefix.

Column ``SUB`` (the members of hashes, sets, sorted sets and lists: one record each):
    key   = sub-key prefix + family byte + member part, where the sub-key prefix of a
            data key is its slot prefix (2 bytes) + user key length (4 bytes, big-endian)
            + user key (`sub_prefix`), so a Redis key's members are one contiguous range
            (`sub_range`) and a slot range's members are the same byte range as its DATA
            keys (`data_range` holds for SUB too): splits and merges move nothing.
    The DATA value of such a key holds its metadata (`encode_collection_meta`): member
    count, bytes of its SUB records, and for lists the head and tail positions. Deleting
    or expiring a big key is one DATA delete plus one range deletion of its SUB range;
    RocksDB reclaims the space in its background compactions.

Column ``META``, per group (group id 4 bytes, big-endian):
    `key_count_key` ``b"kv/key_count/" + group id``         -> number of the group's
                                                                entries in DATA
    `expires_count_key` ``b"kv/expires_count/" + group id`` -> number of the group's
                                                                entries in EXPIRY
    (counts 8 bytes, big-endian; a missing entry is 0).

These counts include keys that are logically expired but not yet removed by the expiry
sweep, as Redis's DBSIZE does. This module owns the byte layout only; it never reads or
writes storage.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from shardkv.core.cluster.slots import SLOT_COUNT, SLOTS_END, prefixed_key, slot_prefix

#: Type tag of a string value.
TYPE_STRING: Final = 0
TYPE_HASH: Final = 1
TYPE_SET: Final = 2
TYPE_ZSET: Final = 3
TYPE_LIST: Final = 4
#: Name reported by TYPE for each tag.
TYPE_NAMES: Final = {
    TYPE_STRING: "string",
    TYPE_HASH: "hash",
    TYPE_SET: "set",
    TYPE_ZSET: "zset",
    TYPE_LIST: "list",
}

#: Family byte of each SUB record kind (after the sub-key prefix).
FAMILY_FIELD: Final = b"f"  # hash field -> value
FAMILY_MEMBER: Final = b"m"  # set member -> b""; sorted-set member -> score (8 bytes)
FAMILY_SCORE: Final = b"s"  # sorted-set score index: sortable score (8) + member -> b""
FAMILY_LIST: Final = b"l"  # list position (8 bytes, big-endian) -> element
#: Above every family byte: the exclusive end of one key's SUB range.
SUB_FAMILY_END: Final = b"\xff"
#: Position of the first element pushed into an empty list (the middle of 64 bits), so
#: LPUSH and RPUSH both have room.
LIST_START_POSITION: Final = 2**63

EXPIRE_AT_BYTES: Final = 8
#: Bytes before the payload in a DATA value.
HEADER_BYTES: Final = 1 + EXPIRE_AT_BYTES
#: Largest representable expire-at (Redis stores it as a signed 64-bit integer).
MAX_EXPIRE_AT_MS: Final = 2**63 - 1

#: Size of the group id in EXPIRY keys and META counter keys.
GROUP_ID_BYTES: Final = 4
#: Largest group id the layout can hold.
MAX_GROUP_ID: Final = 2 ** (8 * GROUP_ID_BYTES) - 1
#: Bytes before the data key in an EXPIRY key.
EXPIRY_HEAD_BYTES: Final = GROUP_ID_BYTES + EXPIRE_AT_BYTES

_HEADER: Final = struct.Struct(">BQ")
_EXPIRE_AT: Final = struct.Struct(">Q")
_GROUP: Final = struct.Struct(">I")
_EXPIRY_HEAD: Final = struct.Struct(">IQ")

#: Header of a string without expiry: the common case, shared rather than rebuilt.
STRING_NO_EXPIRY_HEADER: Final = _HEADER.pack(TYPE_STRING, 0)

KEY_COUNT_PREFIX: Final = b"kv/key_count/"
EXPIRES_COUNT_PREFIX: Final = b"kv/expires_count/"
SCOPE_PREFIX: Final = b"kv/scope/"
DATA_BYTES_PREFIX: Final = b"kv/data_bytes/"

#: Exclusive upper bound of every DATA key (every slot prefix is below it).
DATA_END: Final = SLOTS_END
#: Within one group's EXPIRY prefix, every key is below prefix + this (expire-at < 2**63).
_EXPIRY_GROUP_END: Final = b"\x80"

data_key = prefixed_key
"""``data_key(user_key) -> bytes``: the DATA column key of a user key."""

decode_header = _HEADER.unpack_from
"""``decode_header(value) -> (type_tag, expire_at_ms)`` of a DATA value."""

expiry_key_head = _EXPIRY_HEAD.pack
"""``expiry_key_head(group_id, expire_at_ms) -> bytes``: an EXPIRY key without its data key
(the hot path concatenates the data key itself)."""


_COLLECTION_META: Final = struct.Struct(">QQQQQ")
_SUB_KEY_LENGTH: Final = struct.Struct(">I")
_POSITION: Final = struct.Struct(">Q")
_DOUBLE: Final = struct.Struct(">d")
_SIGN_BIT: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1


def sub_prefix(data_key: bytes) -> bytes:
    """The prefix of every SUB record of the Redis key stored under ``data_key``."""
    return data_key[:2] + _SUB_KEY_LENGTH.pack(len(data_key) - 2) + data_key[2:]


def sub_range(data_key: bytes) -> tuple[bytes, bytes]:
    """``[start, end)`` holding exactly the SUB records of ``data_key``'s Redis key."""
    prefix = sub_prefix(data_key)
    return prefix, prefix + SUB_FAMILY_END


def encode_collection_meta(size: int, sub_bytes: int, head: int, tail: int, version: int) -> bytes:
    """The DATA payload of a hash, set, sorted set or list: its member count, the bytes of
    its SUB records, for a list the positions of its elements (``head`` .. ``tail - 1``;
    0 for other types), and a version that every change of its members increases (so a
    WATCH notices any change)."""
    return _COLLECTION_META.pack(size, sub_bytes, head, tail, version)


def decode_collection_meta(payload: bytes) -> tuple[int, int, int, int, int]:
    """``(size, sub_bytes, head, tail, version)`` of a collection's DATA payload."""
    size, sub_bytes, head, tail, version = _COLLECTION_META.unpack(payload)
    return size, sub_bytes, head, tail, version


encode_position = _POSITION.pack
"""``encode_position(position) -> bytes``: a list position as stored in a SUB key."""


def encode_score(score: float) -> bytes:
    """A score as 8 bytes that sort bytewise in numeric order (-inf first, +inf last;
    -0.0 is stored as 0.0)."""
    if score == 0.0:
        score = 0.0
    bits: int = int.from_bytes(_DOUBLE.pack(score), "big")
    bits = (bits ^ _ALL_BITS) if bits & _SIGN_BIT else (bits | _SIGN_BIT)
    return bits.to_bytes(8, "big")


def decode_score(raw: bytes) -> float:
    """The inverse of `encode_score`."""
    bits = int.from_bytes(raw[:8], "big")
    bits = (bits ^ _SIGN_BIT) if bits & _SIGN_BIT else (bits ^ _ALL_BITS)
    value: float = _DOUBLE.unpack(bits.to_bytes(8, "big"))[0]
    return value


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


# -- DATA ranges ---------------------------------------------------------------------------


def data_range(first: int, last: int) -> tuple[bytes, bytes]:
    """``[start, end)`` of the DATA keys of the inclusive slot range ``(first, last)``."""
    end = SLOTS_END if last + 1 >= SLOT_COUNT else slot_prefix(last + 1)
    return slot_prefix(first), end


def data_ranges(slot_ranges: Iterable[tuple[int, int]]) -> tuple[tuple[bytes, bytes], ...]:
    """The DATA key ranges of sorted, disjoint, inclusive slot ranges, in key order."""
    return tuple(data_range(first, last) for first, last in slot_ranges)


# -- EXPIRY ----------------------------------------------------------------------------------


def expiry_prefix(group_id: int) -> bytes:
    """The prefix of every EXPIRY key of ``group_id``."""
    return _GROUP.pack(group_id)


def expiry_group_range(group_id: int) -> tuple[bytes, bytes]:
    """``[start, end)`` holding exactly ``group_id``'s EXPIRY keys."""
    prefix = _GROUP.pack(group_id)
    return prefix, prefix + _EXPIRY_GROUP_END


def expiry_key(group_id: int, expire_at_ms: int, data_key: bytes) -> bytes:
    """The EXPIRY key of ``group_id``'s data key that expires at ``expire_at_ms``."""
    return _EXPIRY_HEAD.pack(group_id, expire_at_ms) + data_key


def expiry_range_end(group_id: int, now_ms: int) -> bytes:
    """Exclusive EXPIRY range end covering every key of ``group_id`` with expire-at <=
    ``now_ms`` (the range starts at `expiry_prefix`), never beyond `expiry_group_range`."""
    if now_ms >= MAX_EXPIRE_AT_MS:
        return _GROUP.pack(group_id) + _EXPIRY_GROUP_END
    return _EXPIRY_HEAD.pack(group_id, max(now_ms, -1) + 1)


def decode_expiry_key(key: bytes) -> tuple[int, int, bytes]:
    """``(group_id, expire_at_ms, data_key)`` of an EXPIRY column key."""
    group_id, expire_at = _EXPIRY_HEAD.unpack_from(key)
    return group_id, expire_at, key[EXPIRY_HEAD_BYTES:]


# -- META counters -----------------------------------------------------------------------------


def key_count_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s key count (DBSIZE)."""
    return KEY_COUNT_PREFIX + _GROUP.pack(group_id)


def expires_count_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s count of keys with an expiry."""
    return EXPIRES_COUNT_PREFIX + _GROUP.pack(group_id)


def data_bytes_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s count of DATA bytes (keys plus stored values)."""
    return DATA_BYTES_PREFIX + _GROUP.pack(group_id)


def scope_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s applied scope record (``scope.encode_scope_record``):
    its slot ranges and epoch as its own log last changed them (a split)."""
    return SCOPE_PREFIX + _GROUP.pack(group_id)


def encode_count(count: int) -> bytes:
    return _EXPIRE_AT.pack(count)


def decode_count(value: bytes | None) -> int:
    """A META count; a missing entry is 0 (a store that never held a key)."""
    if value is None:
        return 0
    count: int = _EXPIRE_AT.unpack(value)[0]
    return count
