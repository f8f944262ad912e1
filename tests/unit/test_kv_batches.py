"""The batch contract: an overlay of pending writes over committed state."""

from __future__ import annotations

import pytest

from shardkv.core.engine import DATA, META, DeleteRange, Put
from shardkv.core.kv import BatchStateError, KVStateMachine, codec
from shardkv.core.resp.replies import OK, ErrorReply
from tests.unit.test_kv_harness import START_MS, Harness, MemoryView, to_args


def execute(machine: KVStateMachine, *args: bytes | str | int) -> object:
    return machine.execute(to_args(args), START_MS)


def test_commands_see_earlier_writes_of_the_same_batch() -> None:
    h = Harness()
    replies = h.batch(
        [
            ["SET", "a", "1"],
            ["GET", "a"],
            ["INCR", "a"],
            ["APPEND", "a", "0"],
            ["GET", "a"],
            ["DEL", "a"],
            ["EXISTS", "a"],
        ]
    )
    assert replies == [OK, b"1", 2, 2, b"20", 1, 0]


def test_scans_see_pending_writes_and_deletions() -> None:
    h = Harness()
    h.run("MSET", "a", "1", "b", "2", "c", "3")
    replies = h.batch(
        [["DEL", "b"], ["SET", "d", "4"], ["KEYS", "*"], ["SCAN", 0, "COUNT", 1000], ["DBSIZE"]]
    )
    assert sorted(replies[2]) == [b"a", b"c", b"d"]  # type: ignore[arg-type]
    assert sorted(replies[3][1]) == [b"a", b"c", b"d"]  # type: ignore[index]
    assert replies[4] == 3


def test_scans_page_through_large_committed_state_under_an_overlay() -> None:
    h = Harness()
    names = [f"k{i:04}".encode() for i in range(1000)]  # more than one ReadView page
    h.run("MSET", *[part for name in names for part in (name, b"v")])
    replies = h.batch([["DEL", "k0500"], ["SET", "k0500x", "v"], ["KEYS", "*"]])
    expected = set(names) - {b"k0500"} | {b"k0500x"}
    keys = replies[2]
    assert isinstance(keys, list)
    assert len(keys) == len(expected)
    assert set(keys) == expected


def test_flushall_inside_a_batch_hides_committed_state() -> None:
    h = Harness()
    h.run("MSET", "a", "1", "b", "2")
    replies = h.batch([["FLUSHALL"], ["GET", "a"], ["SET", "c", "3"], ["KEYS", "*"], ["DBSIZE"]])
    assert replies == [OK, None, OK, [b"c"], 1]
    assert h.stored_keys() == {b"c"}


def test_flushall_batch_deletes_ranges_then_writes() -> None:
    h = Harness()
    h.run("SET", "a", "1")
    h.machine.begin_batch()
    execute(h.machine, "FLUSHALL")
    execute(h.machine, "SET", "b", "2")
    batch = h.machine.finish_batch()
    assert isinstance(batch.ops[0], DeleteRange) and batch.ops[0].column == DATA
    assert isinstance(batch.ops[1], DeleteRange)
    assert Put(DATA, codec.data_key(b"b"), codec.encode_value(0, 0, b"2")) in batch.ops


def test_a_batch_that_is_not_applied_leaves_no_trace() -> None:
    h = Harness()
    h.run("SET", "a", "committed")
    h.machine.begin_batch()
    assert execute(h.machine, "SET", "a", "pending") == OK
    assert execute(h.machine, "SET", "b", "pending") == OK
    h.machine.finish_batch()  # returned but never applied
    assert h.read("GET", "a") == b"committed"
    assert h.read("GET", "b") is None
    assert h.machine.key_count() == 1
    h.machine.begin_batch()
    execute(h.machine, "SET", "c", "pending")
    h.machine.abort_batch()
    assert h.read("EXISTS", "c") == 0
    h.check_invariants()


def test_read_only_batches_and_unchanged_counts_write_nothing() -> None:
    h = Harness()
    h.run("SET", "a", "1")
    h.machine.begin_batch()
    execute(h.machine, "GET", "a")
    execute(h.machine, "SET", "a", "2")  # overwrite: the counts do not change
    batch = h.machine.finish_batch()
    assert [op.column for op in batch.ops] == [DATA]
    h.machine.begin_batch()
    execute(h.machine, "GET", "a")
    assert not h.machine.finish_batch()


def test_counts_are_written_to_meta_when_they_change() -> None:
    h = Harness()
    h.run("SET", "a", "1", "EX", 10)
    assert h.view.get(META, codec.key_count_key(1)) == codec.encode_count(1)
    assert h.view.get(META, codec.expires_count_key(1)) == codec.encode_count(1)
    # A fresh machine over the same state reads the counts back.
    fresh = KVStateMachine(h.view)
    assert fresh.key_count() == 1
    assert fresh.expires_count() == 1


def test_batch_protocol_misuse_raises() -> None:
    machine = KVStateMachine(MemoryView())
    with pytest.raises(BatchStateError):
        execute(machine, "SET", "a", "1")
    with pytest.raises(BatchStateError):
        machine.finish_batch()
    with pytest.raises(BatchStateError):
        machine.expire_sweep(START_MS, 10)
    machine.begin_batch()
    with pytest.raises(BatchStateError):
        machine.begin_batch()


def test_read_only_commands_run_outside_a_batch() -> None:
    h = Harness()
    h.run("SET", "a", "1")
    assert h.read("GET", "a") == b"1"
    assert h.read("DBSIZE") == 1


def test_client_errors_never_raise() -> None:
    machine = KVStateMachine(MemoryView())
    machine.begin_batch()
    assert machine.execute([], START_MS) == ErrorReply("ERR empty command")
    assert execute(machine, "NOSUCH", "x") == ErrorReply(
        "ERR unknown command 'NOSUCH', with args beginning with: 'x' "
    )
    reply = execute(machine, "PING")
    assert isinstance(reply, ErrorReply) and "server" in reply.message
    assert not machine.finish_batch()


def test_replicas_produce_identical_batches_and_replies() -> None:
    commands = [
        ["SET", "a", "1", "EX", "100"],
        ["INCR", "a"],
        ["SETEX", "b", "5", "x"],
        ["EXPIRE", "a", "50", "LT"],
        ["GETEX", "b", "PERSIST"],
        ["MSET", "c", "1", "d", "2"],
        ["DEL", "c"],
        ["INCRBYFLOAT", "e", "0.1"],
    ]
    outputs = []
    for _ in range(2):
        machine = KVStateMachine(MemoryView())
        machine.begin_batch()
        replies = [machine.execute(to_args(command), START_MS) for command in commands]
        outputs.append((replies, machine.finish_batch().ops))
    assert outputs[0] == outputs[1]
