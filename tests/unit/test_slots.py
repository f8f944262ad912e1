"""Hash slots must agree with Redis Cluster bit for bit (clients compute them too)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shardkv.core.cluster.slots import (
    SLOT_COUNT,
    SLOTS_END,
    crc16,
    key_slot,
    pattern_slot,
    prefixed_key,
    slot_of_prefixed,
    slot_prefix,
)


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


def test_key_slot_matches_redis_known_values() -> None:
    # Values from Redis Cluster (CLUSTER KEYSLOT) and its specification.
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061
    assert key_slot(b"hello") == 866
    assert key_slot(b"") == 0
    assert key_slot(b"{user1000}.following") == 3443
    assert key_slot(b"foo{}{bar}") == 8363
    assert key_slot(b"foo{{bar}}zap") == 4015
    assert key_slot(b"foo{bar}{zap}") == 5061


def test_hash_tag_selects_the_hashed_part() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    # Only the first '{' and the first '}' after it count.
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")


def test_empty_or_unclosed_tag_hashes_the_whole_key() -> None:
    assert key_slot(b"foo{}{bar}") == crc16(b"foo{}{bar}") % SLOT_COUNT
    assert key_slot(b"foo{bar") == crc16(b"foo{bar") % SLOT_COUNT
    assert key_slot(b"foo}bar{") == crc16(b"foo}bar{") % SLOT_COUNT


def test_slot_prefix_is_two_bytes_big_endian_and_orders_slots() -> None:
    assert slot_prefix(0) == b"\x00\x00"
    assert slot_prefix(12182) == (12182).to_bytes(2, "big")
    assert slot_prefix(SLOT_COUNT - 1) < SLOTS_END
    assert slot_of_prefixed(prefixed_key(b"foo")) == 12182
    assert prefixed_key(b"foo") == slot_prefix(12182) + b"foo"


@given(st.binary(max_size=40))
def test_every_key_maps_into_the_slot_space(key: bytes) -> None:
    slot = key_slot(key)
    assert 0 <= slot < SLOT_COUNT
    assert slot_of_prefixed(prefixed_key(key)) == slot


def test_pattern_slot_pins_a_slot_only_when_every_match_shares_it() -> None:
    assert pattern_slot(b"{user1}:*") == key_slot(b"user1")
    assert pattern_slot(b"a{user1}b?") == key_slot(b"user1")
    assert pattern_slot(b"exact-key") == key_slot(b"exact-key")
    assert pattern_slot(b"foo{}{bar}") == key_slot(b"foo{}{bar}")
    # A wildcard before the tag closes, or escapes: any slot.
    assert pattern_slot(b"*{user1}") is None
    assert pattern_slot(b"{us*er}") is None
    assert pattern_slot(b"{}*{a}") is None
    assert pattern_slot(b"user\\*") is None
    assert pattern_slot(b"user[12]") is None


@given(st.binary(max_size=12), st.binary(max_size=8), st.binary(max_size=8))
def test_pattern_slot_is_the_slot_of_every_key_it_can_match(
    tag: bytes, before: bytes, after: bytes
) -> None:
    # "before{tag}after" with literal parts: any key it matches hashes to the pinned slot.
    specials = set(b"*?[\\{}")
    if specials & set(tag + before + after):
        return
    pattern = before + b"{" + tag + b"}" + after + b"*"
    slot = pattern_slot(pattern)
    if tag:
        assert slot == key_slot(before + b"{" + tag + b"}" + after + b"suffix")
    else:
        assert slot is None
