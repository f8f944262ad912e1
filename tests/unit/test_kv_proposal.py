"""Proposals round-trip exactly, and damaged ones are refused, never half-applied."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardkv.core.kv.proposal import (
    ProposalDecodeError,
    decode_proposal,
    encode_proposal,
    lone_command_name,
)

commands = st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=5), max_size=8)


@given(now_ms=st.integers(0, 2**63 - 1), cmds=commands)
def test_round_trip(now_ms: int, cmds: list[list[bytes]]) -> None:
    p = decode_proposal(encode_proposal(now_ms, cmds))
    assert p.now_ms == now_ms
    assert list(p.commands) == cmds


def test_the_leader_no_op_decodes_to_nothing() -> None:
    assert decode_proposal(b"").commands == ()


@given(cmds=commands.filter(bool), cut=st.integers(1, 10))
def test_truncated_or_padded_payloads_are_refused(cmds: list[list[bytes]], cut: int) -> None:
    data = encode_proposal(5, cmds)
    with pytest.raises(ProposalDecodeError):
        decode_proposal(data[: max(1, len(data) - cut)])
    with pytest.raises(ProposalDecodeError):
        decode_proposal(data + b"\x00")


def test_unknown_versions_are_refused() -> None:
    data = bytearray(encode_proposal(1, [[b"GET", b"k"]]))
    data[0] = 9
    with pytest.raises(ProposalDecodeError, match="version 9"):
        decode_proposal(bytes(data))


def test_the_lone_command_name_is_read_without_decoding_the_entry() -> None:
    assert lone_command_name(encode_proposal(5, [[b"\x00absorb", b"2", b"9", b"0-9"]])) == (
        b"\x00absorb"
    )
    assert lone_command_name(encode_proposal(5, [[b"SET", b"k", b"\x00absorb"]])) == b"SET"
    assert lone_command_name(encode_proposal(5, [[b"\x00absorb"], [b"GET", b"k"]])) is None
    assert lone_command_name(b"") is None
