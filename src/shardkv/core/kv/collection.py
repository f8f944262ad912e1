"""One hash, set, sorted set or list while a command works on it.

A `Collection` is opened by ``KVStateMachine.open_collection`` and holds the key's
metadata (member count, bytes of its member records, list head and tail) as the command
changes it. Member records live in column ``SUB`` (layout in ``shardkv.core.kv.codec``);
every read and write goes through the machine's overlay of the open batch, so later
commands of the batch see them. Contract: a command that changed members calls `save`
once it is done (it writes the metadata, or deletes the key when no member is left);
reads need no save. Writes are only allowed inside a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from shardkv.core.kv.codec import SUB_FAMILY_END, sub_prefix

if TYPE_CHECKING:
    from shardkv.core.kv.machine import KVStateMachine


class Collection:
    __slots__ = (
        "dkey",
        "expire_at",
        "head",
        "machine",
        "old",
        "prefix",
        "size",
        "sub_bytes",
        "tail",
        "type_tag",
        "version",
    )

    def __init__(
        self,
        machine: KVStateMachine,
        dkey: bytes,
        type_tag: int,
        old: bytes | None,
        size: int,
        sub_bytes: int,
        head: int,
        tail: int,
        expire_at: int,
        version: int = 0,
    ) -> None:
        self.machine = machine
        self.dkey = dkey
        self.type_tag = type_tag
        #: The DATA value as stored now (None: the key does not exist yet).
        self.old = old
        #: Members (for a list: elements).
        self.size = size
        #: Bytes of the member records (keys and values), kept so a delete is O(1).
        self.sub_bytes = sub_bytes
        #: A list's elements are at positions head .. tail - 1.
        self.head = head
        self.tail = tail
        self.expire_at = expire_at
        #: Increased by every `save` (WATCH compares it).
        self.version = version
        self.prefix = sub_prefix(dkey)

    @property
    def exists(self) -> bool:
        return self.old is not None

    def get(self, family: bytes, member: bytes) -> bytes | None:
        """The value of one member record, or None."""
        return self.machine.read_member(self.prefix, self.prefix + family + member)

    def put(self, family: bytes, member: bytes, value: bytes, *, counts: bool = True) -> bool:
        """Store one member record; returns whether it is new. ``counts``: a new record
        adds one member (False for secondary records such as a score index)."""
        skey = self.prefix + family + member
        old = self.machine.read_member(self.prefix, skey)
        if old == value:
            return False
        self.sub_bytes += self.machine.write_member(skey, value, old)
        if old is None and counts:
            self.size += 1
        return old is None

    def remove(self, family: bytes, member: bytes, *, counts: bool = True) -> bytes | None:
        """Delete one member record; returns its old value (None: there was none)."""
        skey = self.prefix + family + member
        old = self.machine.read_member(self.prefix, skey)
        if old is None:
            return None
        self.sub_bytes += self.machine.write_member(skey, None, old)
        if counts:
            self.size -= 1
        return old

    def items(
        self, family: bytes, start: bytes = b"", end: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """(member part, value) of the records of ``family`` whose member part is in
        ``[start, end)`` (``end`` None: to the family's end), ascending or ``reverse``."""
        base = self.prefix + family
        skip = len(base)
        stop = base + end if end is not None else self.prefix + bytes([family[0] + 1])
        for skey, value in self.machine.iter_members(
            self.prefix, base + start, min(stop, self.prefix + SUB_FAMILY_END), reverse=reverse
        ):
            yield skey[skip:], value

    def save(self) -> None:
        """Write the metadata, or delete the key if it has no member left."""
        self.machine.save_collection(self)
