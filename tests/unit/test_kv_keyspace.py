"""Keyspace commands: DEL, UNLINK, EXISTS, TYPE, DBSIZE, KEYS, SCAN, FLUSHALL."""

from __future__ import annotations

import pytest

from shardkv.core.cluster.slots import SLOT_COUNT, key_slot
from shardkv.core.kv import parse_scan_cursor
from shardkv.core.resp.replies import OK, ErrorReply, SimpleString
from tests.unit.test_kv_harness import Harness

SYNTAX = ErrorReply("ERR syntax error")


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_del_and_unlink_count_keys_actually_removed(h: Harness) -> None:
    h.run("MSET", "a", "1", "b", "2", "c", "3")
    assert h.run("DEL", "a", "a", "missing") == 1
    assert h.run("UNLINK", "b", "c") == 2
    assert h.run("DBSIZE") == 0


def test_exists_counts_duplicates(h: Harness) -> None:
    h.run("SET", "a", "1")
    assert h.run("EXISTS", "a", "a", "missing", "a") == 3


def test_type(h: Harness) -> None:
    h.run("SET", "a", "1")
    assert h.run("TYPE", "a") == SimpleString("string")
    assert h.run("TYPE", "missing") == SimpleString("none")


def test_dbsize_counts_keys(h: Harness) -> None:
    assert h.run("DBSIZE") == 0
    h.run("MSET", "a", "1", "b", "2")
    h.run("SET", "a", "again")
    assert h.run("DBSIZE") == 2
    assert h.machine.key_count() == 2


def test_flushall_removes_everything(h: Harness) -> None:
    h.run("MSET", "a", "1", "b", "2")
    h.run("SET", "c", "3", "EX", 100)
    assert h.run("FLUSHALL") == OK
    assert h.run("DBSIZE") == 0
    assert h.machine.expires_count() == 0
    assert h.run("KEYS", "*") == []
    assert h.stored_keys() == set()
    assert h.run("FLUSHALL", "ASYNC") == OK
    assert h.run("FLUSHALL", "sync") == OK
    assert h.run("FLUSHDB") == OK
    assert h.run("FLUSHALL", "now") == SYNTAX
    assert h.run("FLUSHALL", "SYNC", "ASYNC") == SYNTAX


def test_keys_matches_redis_globs(h: Harness) -> None:
    h.run("MSET", "hello", "1", "hallo", "2", "hxllo", "3", "world", "4")
    assert sorted(h.run("KEYS", "h?llo")) == [b"hallo", b"hello", b"hxllo"]  # type: ignore[arg-type]
    assert sorted(h.run("KEYS", "h[ae]llo")) == [b"hallo", b"hello"]  # type: ignore[arg-type]
    assert h.run("KEYS", "w*") == [b"world"]
    assert len(h.run("KEYS", "*")) == 4  # type: ignore[arg-type]


def test_keys_star_includes_the_empty_key(h: Harness) -> None:
    h.run("SET", "", "empty")
    assert h.run("KEYS", "*") == [b""]


def test_keys_with_a_hash_tag_reads_one_slot(h: Harness) -> None:
    h.run("MSET", "{u1}:a", "1", "{u1}:b", "2", "{u2}:a", "3", "u1:c", "4")
    assert sorted(h.run("KEYS", "{u1}:*")) == [b"{u1}:a", b"{u1}:b"]  # type: ignore[arg-type]


def full_scan(h: Harness, *options: str | int) -> tuple[list[bytes], int]:
    """Keys from a complete SCAN iteration, and the number of calls it took."""
    cursor = b"0"
    keys: list[bytes] = []
    calls = 0
    while True:
        reply = h.read("SCAN", cursor, *options)
        assert isinstance(reply, list)
        cursor, batch = reply  # type: ignore[assignment]
        assert isinstance(cursor, bytes) and isinstance(batch, list)
        keys.extend(batch)  # type: ignore[arg-type]
        calls += 1
        if cursor == b"0":
            return keys, calls


class TestScan:
    def test_a_full_iteration_returns_every_key_once(self, h: Harness) -> None:
        names = [f"key:{i}".encode() for i in range(300)]
        h.run("MSET", *[part for name in names for part in (name, b"v")])
        keys, calls = full_scan(h)
        assert sorted(keys) == sorted(names)
        assert calls > 10  # COUNT 10 by default: many calls

    def test_cursor_is_the_next_slot_and_count_is_a_hint(self, h: Harness) -> None:
        first_tag, second_tag = sorted([b"alpha", b"beta"], key=key_slot)
        first = [b"{" + first_tag + b"}:" + str(i).encode() for i in range(25)]
        second = [b"{" + second_tag + b"}:" + str(i).encode() for i in range(3)]
        h.run("MSET", *[part for name in first + second for part in (name, b"v")])
        # COUNT 5 is reached inside the first slot, which is still returned whole.
        reply = h.read("SCAN", 0, "COUNT", 5)
        assert isinstance(reply, list)
        assert sorted(reply[1]) == sorted(first)  # type: ignore[type-var]
        assert reply[0] == str(key_slot(second_tag)).encode()
        # Then the next slot with keys; nothing after it, so the iteration ends.
        reply = h.read("SCAN", reply[0], "COUNT", 5)
        assert isinstance(reply, list)
        assert sorted(reply[1]) == sorted(second)  # type: ignore[type-var]
        assert reply[0] == b"0"

    def test_cursors_fit_in_unsigned_64_bits(self, h: Harness) -> None:
        h.run("MSET", *[part for i in range(50) for part in (f"k{i}".encode(), b"v")])
        cursor = b"0"
        while True:
            reply = h.read("SCAN", cursor, "COUNT", 3)
            assert isinstance(reply, list)
            cursor = reply[0]  # type: ignore[assignment]
            assert 0 <= int(cursor) < SLOT_COUNT
            if cursor == b"0":
                break

    def test_match_and_type_filters(self, h: Harness) -> None:
        h.run("MSET", "user:1", "a", "user:2", "b", "item:1", "c")
        keys, _ = full_scan(h, "MATCH", "user:*", "COUNT", 1000)
        assert sorted(keys) == [b"user:1", b"user:2"]
        keys, _ = full_scan(h, "TYPE", "STRING", "COUNT", 1000)
        assert len(keys) == 3
        keys, _ = full_scan(h, "TYPE", "list")
        assert keys == []
        keys, _ = full_scan(h, "TYPE", "nosuchtype")
        assert keys == []

    def test_match_with_a_hash_tag_visits_only_its_slot(self, h: Harness) -> None:
        h.run("MSET", "{u1}:a", "1", "{u1}:b", "2", "{u2}:a", "3")
        reply = h.read("SCAN", 0, "MATCH", "{u1}:*", "COUNT", 1)
        assert isinstance(reply, list)
        assert reply[0] == b"0"
        assert sorted(reply[1]) == [b"{u1}:a", b"{u1}:b"]  # type: ignore[type-var]
        # A cursor already past the pinned slot is done.
        past = key_slot(b"u1") + 1
        assert h.read("SCAN", past, "MATCH", "{u1}:*") == [b"0", []]

    def test_keys_present_for_the_whole_iteration_survive_concurrent_writes(
        self, h: Harness
    ) -> None:
        stable = [f"stable:{i}".encode() for i in range(100)]
        h.run("MSET", *[part for name in stable for part in (name, b"v")])
        cursor = b"0"
        seen: set[bytes] = set()
        step = 0
        while True:
            reply = h.read("SCAN", cursor, "COUNT", 7)
            assert isinstance(reply, list)
            cursor, keys = reply  # type: ignore[assignment]
            seen.update(keys)  # type: ignore[arg-type]
            h.run("SET", f"churn:{step}", "v")  # keys come and go during the iteration
            h.run("DEL", f"churn:{step - 3}")
            step += 1
            if cursor == b"0":
                break
        assert set(stable) <= seen

    def test_cursor_past_the_last_slot_is_done(self, h: Harness) -> None:
        h.run("SET", "a", "1")
        assert h.read("SCAN", SLOT_COUNT) == [b"0", []]
        assert h.read("SCAN", "18446744073709551615") == [b"0", []]

    @pytest.mark.parametrize("cursor", [" 1", "abc", "1x", "18446744073709551616", "-"])
    def test_invalid_cursors(self, h: Harness, cursor: str) -> None:
        assert h.read("SCAN", cursor) == ErrorReply("ERR invalid cursor")

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            (["COUNT", 0], SYNTAX),
            (["COUNT", -1], SYNTAX),
            (["COUNT", "x"], ErrorReply("ERR value is not an integer or out of range")),
            (["COUNT"], SYNTAX),
            (["MATCH"], SYNTAX),
            (["FOO", "bar"], SYNTAX),
        ],
    )
    def test_option_errors(self, h: Harness, options: list[str | int], error: ErrorReply) -> None:
        assert h.read("SCAN", 0, *options) == error


@pytest.mark.parametrize(
    ("text", "cursor"),
    [
        (b"0", 0),
        (b"", 0),  # strtoul("") converts nothing and Redis accepts it
        (b"+5", 5),
        (b"007", 7),
        (b"-1", 2**64 - 1),  # strtoul negates modulo 2**64
        (b"18446744073709551615", 2**64 - 1),
        (b"18446744073709551616", None),
        (b" 5", None),
        (b"5 ", None),
        (b"-", None),
    ],
)
def test_scan_cursor_parsing_follows_strtoul(text: bytes, cursor: int | None) -> None:
    assert parse_scan_cursor(text) == cursor
