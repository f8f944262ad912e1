"""Hashes, sets, sorted sets and lists in the state machine: how they are stored, deleted,
expired, snapshotted, split off, and run in transactions. (Their replies are compared with
a real Redis by ``tests/compat/test_differential.py``.) Every `Harness` step also checks
that each collection has exactly the member records its metadata counts."""

from __future__ import annotations

from shardkv.core.cluster.slots import key_slot
from shardkv.core.engine import META, SUB, DeleteRange, WriteBatch
from shardkv.core.kv import KeyScope, KVStateMachine, codec
from shardkv.core.kv.machine import SMALL_COLLECTION_MEMBERS
from shardkv.core.kv.transaction import encode_transaction
from shardkv.core.resp.replies import (
    NULL_ARRAY,
    OK,
    ErrorReply,
    MapReply,
    SetReply,
    SimpleString,
)
from shardkv.storage.kv_snapshot import build_snapshot_data, stage_install
from tests.unit.test_kv_harness import Harness, MemoryView, to_args


def _fill(h: Harness, members: int) -> None:
    h.run("SADD", "big", *(f"m{i}" for i in range(members)))
    h.run("HSET", "hash", *(x for i in range(members) for x in (f"f{i}", f"v{i}")))
    h.run("ZADD", "zset", *(x for i in range(members) for x in (str(i % 7), f"z{i}")))
    h.run("RPUSH", "list", *(f"e{i}" for i in range(members)))


def test_deleting_a_big_collection_is_one_range_deletion_whatever_its_size() -> None:
    h = Harness()
    _fill(h, 5_000)
    h.machine.begin_batch()
    assert h.machine.execute(to_args(["DEL", "big", "hash", "zset", "list"]), h.now_ms) == 4
    batch = h.machine.finish_batch()
    sub_ops = [op for op in batch.ops if op.column == SUB]
    # Four keys: four range deletions and not one write per member.
    assert len(sub_ops) == 4 and all(isinstance(op, DeleteRange) for op in sub_ops)
    h.view.apply(batch)
    h.check_invariants()
    assert h.view.columns[SUB] == {}
    assert h.run("DBSIZE") == 0


def test_a_small_collection_is_deleted_member_by_member() -> None:
    # Range tombstones cost RocksDB reads until compacted: small keys do without them.
    h = Harness()
    h.run("SADD", "s", *(str(i) for i in range(SMALL_COLLECTION_MEMBERS)))
    h.machine.begin_batch()
    h.machine.execute(to_args(["DEL", "s"]), h.now_ms)
    ops = h.machine.finish_batch().ops
    assert not any(isinstance(op, DeleteRange) for op in ops)


def test_a_key_written_again_in_the_batch_that_deleted_it_keeps_only_new_members() -> None:
    h = Harness()
    _fill(h, 200)
    replies = h.batch(
        [["DEL", "big"], ["SADD", "big", "fresh"], ["SMEMBERS", "big"], ["SET", "hash", "s"]]
    )
    assert replies == [1, 1, SetReply((b"fresh",)), OK]
    assert h.run("SMEMBERS", "big") == SetReply((b"fresh",))
    assert h.run("GET", "hash") == b"s"


def test_expired_collections_lose_their_members_to_the_sweep() -> None:
    h = Harness()
    _fill(h, 300)
    for key in ("big", "hash", "zset", "list"):
        assert h.run("PEXPIRE", key, 10) == 1
    assert h.run("TYPE", "zset") == SimpleString("zset")
    h.advance(11)
    assert h.run("EXISTS", "big", "hash", "zset", "list") == 0
    assert h.sweep(100) == 4
    assert h.view.columns[SUB] == {}


def test_a_snapshot_carries_members_and_restores_the_same_answers() -> None:
    source = Harness()
    _fill(source, 300)
    source.run("HSET", "small", "a", "1")
    data = build_snapshot_data(source.view, 1)
    target = Harness()
    target.run("SADD", "stale", "gone")  # replaced by the install
    batch = WriteBatch()
    stage_install(data, batch, group_id=1)
    target.view.apply(batch)
    target.machine = KVStateMachine(target.view)
    target.check_invariants()
    for command in (["SCARD", "big"], ["HGET", "hash", "f7"], ["ZRANGE", "zset", "0", "3"]):
        assert target.run(*command) == source.run(*command)
    assert target.run("LRANGE", "list", "-2", "-1") == (b"e298", b"e299")
    assert target.run("HGETALL", "small") == MapReply(((b"a", b"1"),))
    assert target.run("EXISTS", "stale") == 0


def test_splitting_a_shard_moves_no_member_and_keeps_counts_exact() -> None:
    view = MemoryView()
    parent = Harness(view=view)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        parent.run("HSET", key, "a", "1", "b", "2")
        parent.run("RPUSH", f"{{{key}}}l", "x", "y")
    child_scope = KeyScope(2, ((0, 8191),))
    parent.machine.begin_batch()
    child_counts = parent.machine.split_off(child_scope)
    view.apply(parent.machine.finish_batch())
    parent.scope = KeyScope(1, ((8192, 16383),))
    parent.machine = parent.machine.narrowed(parent.scope)
    child = Harness(view=view, scope=child_scope)
    batch = WriteBatch()
    batch.put(META, codec.key_count_key(2), codec.encode_count(child_counts[0]))
    batch.put(META, codec.expires_count_key(2), codec.encode_count(child_counts[1]))
    batch.put(META, codec.data_bytes_key(2), codec.encode_count(child_counts[2]))
    view.apply(batch)
    parent.check_invariants()
    child.check_invariants()
    for key in keys:
        owner = child if key_slot(key.encode()) <= 8191 else parent
        assert owner.run("HGET", key, "b") == b"2"
        assert owner.run("LRANGE", f"{{{key}}}l", "0", "-1") == (b"x", b"y")


def test_exec_applies_all_or_nothing_and_watch_sees_any_change() -> None:
    h = Harness()
    h.run("HSET", "h", "f", "1")
    digest = h.read("WATCH", "h")
    assert isinstance(digest, list)
    watches = [(b"h", digest[0])]
    block = [[b"HINCRBY", b"h", b"f", b"1"], [b"SADD", b"s", b"x"], [b"INCR", b"h"]]
    # An error inside the block does not stop the others (Redis's rule).
    replies = h.run(*encode_transaction(watches, block))
    assert replies[:2] == [2, 1] and isinstance(replies[2], ErrorReply)
    # The block changed h: a transaction still watching the old digest runs nothing.
    assert h.run(*encode_transaction(watches, [[b"SADD", b"s", b"y"]])) == NULL_ARRAY
    assert h.run("SCARD", "s") == 1
    # Same-length change of a field: the collection's version still moves the digest.
    before = h.read("WATCH", "h")
    h.run("HSET", "h", "f", "9")
    assert h.read("WATCH", "h") != before


def test_random_choices_are_the_same_on_every_replica() -> None:
    replicas = [Harness(), Harness()]
    for h in replicas:
        h.run("SADD", "s", *(str(i) for i in range(100)))
    popped = [h.run("SPOP", "s", "10") for h in replicas]
    assert popped[0] == popped[1]
    remaining = [h.run("SMEMBERS", "s") for h in replicas]
    assert remaining[0] == remaining[1]
