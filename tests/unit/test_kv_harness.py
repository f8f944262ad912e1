"""A small in-memory store for the KV state machine tests, and tests of the store itself.

``MemoryView`` implements the ``ReadView`` contract with a dict per column (sorted on
scan) and applies ``WriteBatch``es; ``Harness`` drives a ``KVStateMachine`` over it the
way the node will: one batch per call, applied before the next, with the storage
invariants (counts, expiry index) checked after every batch. Several harnesses may share
one view, each with its own ``KeyScope``, as shards share one engine on a node: each one's
invariants cover its own scope only.
"""

from __future__ import annotations

from collections.abc import Iterable

from shardkv.core.cluster.slots import slot_of_prefixed
from shardkv.core.engine import (
    ALL_COLUMNS,
    DATA,
    EXPIRY,
    SUB,
    Delete,
    DeleteRange,
    Put,
    WriteBatch,
)
from shardkv.core.kv import KeyScope, KVStateMachine, codec
from shardkv.core.resp.replies import Reply

#: An arbitrary but fixed "now": 2023-11-14T22:13:20Z.
START_MS = 1_700_000_000_000

Arg = bytes | str | int


def to_args(args: Iterable[Arg]) -> list[bytes]:
    out = []
    for arg in args:
        if isinstance(arg, bytes):
            out.append(arg)
        else:
            out.append(str(arg).encode())
    return out


class MemoryView:
    """ReadView over plain dicts; ``apply`` writes a batch atomically (ops in order)."""

    def __init__(self) -> None:
        self.columns: dict[str, dict[bytes, bytes]] = {column: {} for column in ALL_COLUMNS}

    def get(self, column: str, key: bytes) -> bytes | None:
        return self.columns[column].get(key)

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        assert limit > 0
        items = self.columns[column]
        keys = sorted(k for k in items if k >= start and (end is None or k < end))
        return [(k, items[k]) for k in keys[:limit]]

    def apply(self, batch: WriteBatch) -> None:
        for op in batch.ops:
            items = self.columns[op.column]
            if isinstance(op, Put):
                items[op.key] = op.value
            elif isinstance(op, Delete):
                items.pop(op.key, None)
            elif isinstance(op, DeleteRange):
                for key in [k for k in items if op.start <= k < op.end]:
                    del items[key]


class Harness:
    """One command per batch unless ``batch()`` is used; time is explicit. ``scope`` and
    ``view`` default to every slot (group 1) and a fresh store."""

    def __init__(
        self,
        now_ms: int = START_MS,
        *,
        scope: KeyScope | None = None,
        view: MemoryView | None = None,
    ) -> None:
        self.view = MemoryView() if view is None else view
        self.scope = KeyScope.whole() if scope is None else scope
        self.machine = KVStateMachine(self.view, scope=self.scope)
        self.now_ms = now_ms

    def run(self, *args: Arg) -> Reply:
        """Execute one command in its own batch, apply the batch, check invariants."""
        return self.batch([args])[0]

    def batch(self, commands: Iterable[Iterable[Arg]]) -> list[Reply]:
        self.machine.begin_batch()
        replies = [self.machine.execute(to_args(command), self.now_ms) for command in commands]
        self.view.apply(self.machine.finish_batch())
        self.check_invariants()
        return replies

    def read(self, *args: Arg) -> Reply:
        """Execute a read-only command outside any batch."""
        return self.machine.execute(to_args(args), self.now_ms)

    def sweep(self, max_keys: int) -> int:
        self.machine.begin_batch()
        deleted = self.machine.expire_sweep(self.now_ms, max_keys)
        self.view.apply(self.machine.finish_batch())
        self.check_invariants()
        return deleted

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def stored_keys(self) -> set[bytes]:
        """User keys of this scope physically stored, expired or not."""
        return {codec.user_key(k) for k in self.scope_data()}

    def scope_data(self) -> dict[bytes, bytes]:
        """The DATA records of this scope's slots."""
        owned = self.scope.owns
        return {k: v for k, v in self.view.columns[DATA].items() if owned(slot_of_prefixed(k))}

    def scope_index(self) -> set[bytes]:
        """The EXPIRY keys of this scope's group."""
        start, end = codec.expiry_group_range(self.scope.group_id)
        return {k for k in self.view.columns[EXPIRY] if start <= k < end}

    def check_invariants(self) -> None:
        """For this scope: META counts equal a brute-force recount; the group's expiry
        index matches the data."""
        data = self.scope_data()
        index = self.scope_index()
        expected_index = set()
        for dkey, value in data.items():
            _, expire_at = codec.decode_header(value)
            if expire_at:
                expected_index.add(codec.expiry_key(self.scope.group_id, expire_at, dkey))
        assert index == expected_index
        assert self.machine.key_count() == len(data)
        assert self.machine.expires_count() == len(index)
        self.check_members(data)

    def check_members(self, data: dict[bytes, bytes]) -> None:
        """Every hash, set, sorted set and list has exactly the member records its
        metadata counts (size and bytes), no member record lies outside a live
        collection, and the group's byte count is a recount of DATA and SUB records."""
        owned = self.scope.owns
        sub = {k: v for k, v in self.view.columns[SUB].items() if owned(slot_of_prefixed(k))}
        claimed = 0
        for dkey, value in data.items():
            if value[0] == codec.TYPE_STRING:
                continue
            size, sub_bytes, _, _, _ = codec.decode_collection_meta(value[codec.HEADER_BYTES :])
            start, end = codec.sub_range(dkey)
            members = {k: v for k, v in sub.items() if start <= k < end}
            claimed += len(members)
            per_member = 2 if value[0] == codec.TYPE_ZSET else 1
            assert len(members) == size * per_member, codec.user_key(dkey)
            assert sum(len(k) + len(v) for k, v in members.items()) == sub_bytes
        assert claimed == len(sub), "member records outside any live collection"
        stored = sum(len(k) + len(v) for k, v in [*data.items(), *sub.items()])
        assert self.machine.data_bytes() == stored


def test_memory_view_scan_honours_bounds_order_and_limit() -> None:
    view = MemoryView()
    batch = WriteBatch()
    for key in (b"c", b"a", b"d", b"b"):
        batch.put(DATA, key, key.upper())
    view.apply(batch)
    assert view.scan(DATA, b"b", b"d", 10) == [(b"b", b"B"), (b"c", b"C")]
    assert view.scan(DATA, b"", None, 2) == [(b"a", b"A"), (b"b", b"B")]


def test_memory_view_applies_ops_in_order() -> None:
    view = MemoryView()
    batch = WriteBatch()
    batch.put(DATA, b"a", b"1")
    batch.put(DATA, b"b", b"2")
    batch.delete_range(DATA, b"a", b"c")
    batch.put(DATA, b"b", b"3")
    batch.delete(DATA, b"zz")
    view.apply(batch)
    assert view.columns[DATA] == {b"b": b"3"}
