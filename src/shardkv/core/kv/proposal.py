"""The payload of a Raft log entry that carries client commands.

A leader stamps the time once, when it proposes, and every replica applies the commands
with that time: expiry stays deterministic across replicas (DESIGN.md section 7). Layout,
all integers big-endian::

    version (1 byte, = 1) | now_ms (8) | command count (4)
    then per command: arg count (4), then per arg: length (4) + bytes

An empty payload is the no-op a new leader appends; it decodes to no commands.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

FORMAT_VERSION: Final = 1
_HEADER: Final = struct.Struct(">BQI")
_U32: Final = struct.Struct(">I")


class ProposalDecodeError(ValueError):
    """A log entry's payload is not a proposal this version understands (corruption, or an
    entry written by a newer version): the replica must stop rather than skip it."""


@dataclass(frozen=True, slots=True)
class Proposal:
    now_ms: int
    commands: tuple[list[bytes], ...]


def encode_proposal(now_ms: int, commands: list[list[bytes]]) -> bytes:
    """Encode ``commands`` (each a non-empty list of args) stamped with ``now_ms``."""
    parts: list[bytes] = [_HEADER.pack(FORMAT_VERSION, now_ms, len(commands))]
    pack = _U32.pack
    for args in commands:
        parts.append(pack(len(args)))
        for arg in args:
            parts.append(pack(len(arg)))
            parts.append(arg)
    return b"".join(parts)


def lone_command_name(data: bytes) -> bytes | None:
    """The name (first arg) of the command of a proposal that carries exactly one, read
    without decoding the rest; None for any other payload. Cheap enough for every entry."""
    if len(data) < _HEADER.size + 8:
        return None
    _, _, count = _HEADER.unpack_from(data, 0)
    if count != 1:
        return None
    (size,) = _U32.unpack_from(data, _HEADER.size + 4)
    start = _HEADER.size + 8
    return data[start : start + size]


def decode_proposal(data: bytes) -> Proposal:
    """Decode an entry payload; raises :class:`ProposalDecodeError` on malformed input."""
    if not data:
        return Proposal(0, ())
    try:
        version, now_ms, count = _HEADER.unpack_from(data, 0)
        if version != FORMAT_VERSION:
            raise ProposalDecodeError(f"unknown proposal format version {version}")
        pos = _HEADER.size
        unpack = _U32.unpack_from
        commands: list[list[bytes]] = []
        for _ in range(count):
            (argc,) = unpack(data, pos)
            pos += 4
            args: list[bytes] = []
            for _ in range(argc):
                (size,) = unpack(data, pos)
                pos += 4
                end = pos + size
                if end > len(data):
                    raise ProposalDecodeError("argument runs past the end of the entry")
                args.append(data[pos:end])
                pos = end
            commands.append(args)
    except struct.error as exc:
        raise ProposalDecodeError(f"truncated proposal: {exc}") from exc
    if pos != len(data):
        raise ProposalDecodeError(f"{len(data) - pos} trailing bytes after the proposal")
    return Proposal(now_ms, tuple(commands))
