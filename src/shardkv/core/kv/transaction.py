"""MULTI/EXEC as one replicated command, and WATCH as digests checked when it applies.

A client's transaction reaches the state machine as one command, so the Raft log holds it
as one entry and every replica applies it in one batch (atomically, with nothing between
its commands):

    [TRANSACTION_COMMAND, watch blob, command blob, command blob, ...]

The connection builds it (`encode_transaction`) from the commands queued between MULTI
and EXEC; clients cannot send it themselves (the connection answers every EXEC it
receives). Each blob is a length-prefixed argument list (`encode_args`).

WATCH: the connection asks the machine for the digest of each watched key's value
(`WATCH_DIGESTS_COMMAND`, a read), keeps them, and sends them with EXEC. When the
transaction applies, the machine compares each key's digest now with the one seen at WATCH
time: any difference (a write, a deletion, an expiry, a new TTL) makes EXEC answer the null
array and run nothing, as in Redis. The digest covers the whole stored value of a string
and, for a hash, set, sorted set or list, its metadata, which carries a version bumped by
every change of its members. One difference from Redis: a write that leaves a string key
byte-for-byte as it was (SET to the same value) does not abort a watching transaction.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from shardkv.core.cluster.slots import key_slot
from shardkv.core.commands import command_keys, lookup

#: First argument of a transaction command (the name clients use; see the module doc).
TRANSACTION_COMMAND: Final = b"EXEC"
#: First argument of the read that returns the digests of watched keys.
WATCH_DIGESTS_COMMAND: Final = b"WATCH"
#: Digest of a key that does not exist (or has expired).
ABSENT_DIGEST: Final = b"-"

_COUNT: Final = struct.Struct(">I")


def value_digest(value: bytes | None) -> bytes:
    """The digest of a stored DATA value (None: no live key)."""
    if value is None:
        return ABSENT_DIGEST
    return hashlib.blake2b(value, digest_size=16).digest()


def encode_args(args: list[bytes]) -> bytes:
    parts = [_COUNT.pack(len(args))]
    for arg in args:
        parts.append(_COUNT.pack(len(arg)))
        parts.append(arg)
    return b"".join(parts)


def decode_args(blob: bytes) -> list[bytes]:
    """The inverse of `encode_args`; ``ValueError`` for a malformed blob."""
    (count,) = _COUNT.unpack_from(blob, 0)
    position = _COUNT.size
    args: list[bytes] = []
    for _ in range(count):
        (size,) = _COUNT.unpack_from(blob, position)
        position += _COUNT.size
        if position + size > len(blob):
            raise ValueError("truncated transaction blob")
        args.append(blob[position : position + size])
        position += size
    if position != len(blob):
        raise ValueError("bytes after a transaction blob")
    return args


def encode_transaction(
    watches: list[tuple[bytes, bytes]], commands: list[list[bytes]]
) -> list[bytes]:
    """The transaction command for ``commands`` guarded by ``watches`` ((key, digest))."""
    watch_blob = encode_args([x for key, digest in watches for x in (key, digest)])
    return [TRANSACTION_COMMAND, watch_blob, *(encode_args(c) for c in commands)]


def decode_transaction(args: list[bytes]) -> tuple[list[tuple[bytes, bytes]], list[list[bytes]]]:
    """(watches, commands) of a transaction command; ``ValueError`` if malformed."""
    flat = decode_args(args[1])
    if len(flat) % 2:
        raise ValueError("odd watch list")
    watches = list(zip(flat[::2], flat[1::2], strict=True))
    return watches, [decode_args(blob) for blob in args[2:]]


def transaction_keys(args: list[bytes]) -> list[bytes]:
    """Every key a transaction command watches or names (for routing)."""
    watches, commands = decode_transaction(args)
    keys = [key for key, _ in watches]
    for command in commands:
        spec = lookup(command[0])
        if spec is not None:
            keys.extend(command_keys(spec, command))
    return keys


def keys_slot(keys: list[bytes]) -> int | None:
    """The one slot of ``keys``; -1 if there are none; None if they span slots."""
    if not keys:
        return -1
    slot = key_slot(keys[0])
    for key in keys[1:]:
        if key_slot(key) != slot:
            return None
    return slot
