"""Expiry: EXPIRE family, TTL family, PERSIST, lazy invisibility and the index sweep."""

from __future__ import annotations

import pytest

from shardkv.core.engine import EXPIRY, WriteBatch
from shardkv.core.kv import codec
from shardkv.core.resp.replies import OK, ErrorReply
from tests.unit.test_kv_harness import Harness

I64_MAX = 2**63 - 1


@pytest.fixture
def h() -> Harness:
    return Harness()


class TestExpireCommands:
    def test_expire_sets_a_relative_ttl(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("EXPIRE", "k", 100) == 1
        assert h.run("TTL", "k") == 100
        assert h.run("PEXPIRE", "k", 1500) == 1
        assert h.run("PTTL", "k") == 1500

    def test_expireat_sets_an_absolute_time(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        at_s = h.now_ms // 1000 + 60
        assert h.run("EXPIREAT", "k", at_s) == 1
        assert h.run("EXPIRETIME", "k") == at_s
        assert h.run("PEXPIRETIME", "k") == at_s * 1000
        assert h.run("PEXPIREAT", "k", h.now_ms + 1234) == 1
        assert h.run("PEXPIRETIME", "k") == h.now_ms + 1234

    def test_missing_key_answers_zero(self, h: Harness) -> None:
        assert h.run("EXPIRE", "missing", 100) == 0
        assert h.run("EXISTS", "missing") == 0

    def test_a_time_in_the_past_deletes_the_key(self, h: Harness) -> None:
        for command in (["EXPIRE", "k", -1], ["PEXPIRE", "k", 0], ["EXPIREAT", "k", 1]):
            h.run("SET", "k", "v", "EX", 100)
            assert h.run(*command) == 1
            assert h.run("EXISTS", "k") == 0
        assert h.machine.key_count() == 0
        assert h.machine.expires_count() == 0

    def test_nx_xx_gt_lt(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("EXPIRE", "k", 100, "XX") == 0  # no TTL yet
        assert h.run("EXPIRE", "k", 100, "GT") == 0  # no TTL counts as infinite
        assert h.run("EXPIRE", "k", 100, "NX") == 1
        assert h.run("EXPIRE", "k", 200, "NX") == 0
        assert h.run("EXPIRE", "k", 50, "GT") == 0
        assert h.run("EXPIRE", "k", 150, "GT") == 1
        assert h.run("EXPIRE", "k", 200, "LT") == 0
        assert h.run("EXPIRE", "k", 120, "lt") == 1
        assert h.run("EXPIRE", "k", 300, "XX") == 1
        assert h.run("TTL", "k") == 300
        h.run("PERSIST", "k")
        assert h.run("EXPIRE", "k", 10, "LT") == 1  # infinite TTL: any time is less

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["NX", "XX"], "ERR NX and XX, GT or LT options at the same time are not compatible"),
            (["NX", "GT"], "ERR NX and XX, GT or LT options at the same time are not compatible"),
            (["GT", "LT"], "ERR GT and LT options at the same time are not compatible"),
            (["foo"], "ERR Unsupported option foo"),
        ],
    )
    def test_option_errors(self, h: Harness, options: list[str], message: str) -> None:
        h.run("SET", "k", "v")
        assert h.run("EXPIRE", "k", 100, *options) == ErrorReply(message)
        assert h.run("TTL", "k") == -1

    def test_options_are_checked_before_the_time(self, h: Harness) -> None:
        assert h.run("EXPIRE", "k", "abc", "foo") == ErrorReply("ERR Unsupported option foo")
        assert h.run("EXPIRE", "k", "abc") == ErrorReply(
            "ERR value is not an integer or out of range"
        )

    @pytest.mark.parametrize(
        ("command", "value"),
        [
            ("expire", -(2**63)),
            ("expire", I64_MAX),
            ("pexpire", I64_MAX),
            ("expireat", 9223372036854776),
        ],
    )
    def test_overflowing_times_are_invalid(self, h: Harness, command: str, value: int) -> None:
        h.run("SET", "k", "v")
        assert h.run(command, "k", value) == ErrorReply(
            f"ERR invalid expire time in '{command}' command"
        )

    def test_the_largest_absolute_time_is_accepted(self, h: Harness) -> None:
        h.run("SET", "k", "v")
        assert h.run("PEXPIREAT", "k", I64_MAX) == 1
        assert h.run("EXPIRETIME", "k") == 9223372036854776  # rounded, as Redis does
        assert h.run("PTTL", "k") == I64_MAX - h.now_ms


class TestTtlCommands:
    def test_missing_and_persistent_keys(self, h: Harness) -> None:
        assert h.run("TTL", "k") == -2
        assert h.run("PTTL", "k") == -2
        assert h.run("EXPIRETIME", "k") == -2
        h.run("SET", "k", "v")
        assert h.run("TTL", "k") == -1
        assert h.run("PEXPIRETIME", "k") == -1

    def test_ttl_rounds_to_the_nearest_second(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 1499)
        assert h.run("TTL", "k") == 1
        h.run("SET", "k", "v", "PX", 1500)
        assert h.run("TTL", "k") == 2

    def test_ttl_counts_down_with_the_given_time(self, h: Harness) -> None:
        h.run("SET", "k", "v", "EX", 10)
        h.advance(4_000)
        assert h.run("TTL", "k") == 6
        assert h.run("PTTL", "k") == 6_000

    def test_persist(self, h: Harness) -> None:
        assert h.run("PERSIST", "k") == 0
        h.run("SET", "k", "v")
        assert h.run("PERSIST", "k") == 0
        h.run("EXPIRE", "k", 100)
        assert h.run("PERSIST", "k") == 1
        assert h.run("TTL", "k") == -1
        assert h.machine.expires_count() == 0


class TestLazyExpiry:
    def test_a_key_is_invisible_from_its_expire_time_on(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 100)
        h.advance(99)
        assert h.run("GET", "k") == b"v"
        h.advance(1)  # expire-at <= now: expired
        assert h.run("GET", "k") is None
        assert h.run("EXISTS", "k") == 0
        assert h.run("TTL", "k") == -2
        assert h.run("TYPE", "k") == h.run("TYPE", "missing")
        assert h.run("KEYS", "*") == []
        assert h.read("SCAN", 0) == [b"0", []]
        assert h.run("MGET", "k") == [None]
        assert h.run("STRLEN", "k") == 0

    def test_reads_never_write(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 100)
        h.advance(1000)
        h.machine.begin_batch()
        h.machine.execute([b"GET", b"k"], h.now_ms)
        h.machine.execute([b"KEYS", b"*"], h.now_ms)
        assert not h.machine.finish_batch()
        assert h.machine.key_count() == 1  # still stored until swept

    def test_writes_treat_an_expired_key_as_absent(self, h: Harness) -> None:
        h.run("SET", "k", "5", "PX", 100)
        h.advance(100)
        assert h.run("SET", "k", "new", "NX") == OK
        assert h.run("TTL", "k") == -1
        h.run("SET", "n", "5", "PX", 100)
        h.advance(100)
        assert h.run("INCR", "n") == 1
        assert h.run("TTL", "n") == -1
        h.run("SET", "a", "old", "PX", 100)
        h.advance(100)
        assert h.run("APPEND", "a", "x") == 1
        assert h.run("SET", "a", "v", "KEEPTTL") == OK
        assert h.run("TTL", "a") == -1
        h.run("SET", "d", "v", "PX", 100)
        h.advance(100)
        assert h.run("DEL", "d") == 0  # not counted, but the stale copy is removed
        assert b"d" not in h.stored_keys()
        assert h.run("EXPIRE", "d", 100) == 0
        assert h.run("MSETNX", "d", "1") == 1


class TestSweep:
    def test_sweep_removes_due_keys_oldest_first_up_to_the_limit(self, h: Harness) -> None:
        for i in range(5):
            h.run("SET", f"k{i}", "v", "PX", 100 * (i + 1))
        h.run("SET", "forever", "v")
        h.advance(350)  # k0, k1, k2 are due
        assert h.sweep(max_keys=2) == 2
        assert h.stored_keys() == {b"k2", b"k3", b"k4", b"forever"}
        assert h.sweep(max_keys=10) == 1
        assert h.stored_keys() == {b"k3", b"k4", b"forever"}
        assert h.sweep(max_keys=10) == 0
        assert h.machine.key_count() == 3
        assert h.machine.expires_count() == 2

    def test_sweep_only_takes_keys_due_at_the_given_time(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 100)
        h.advance(99)
        assert h.sweep(max_keys=10) == 0
        h.advance(1)
        assert h.sweep(max_keys=10) == 1

    def test_sweep_ignores_index_entries_that_do_not_match_the_data(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 500)
        stale = WriteBatch()
        stale.put(EXPIRY, codec.expiry_key(1, h.now_ms - 1, codec.data_key(b"k")), b"")
        h.view.apply(stale)
        h.machine.begin_batch()
        assert h.machine.expire_sweep(h.now_ms, 10) == 0
        h.view.apply(h.machine.finish_batch())
        h.check_invariants()  # the stale entry is gone, the live one stays
        assert h.run("GET", "k") == b"v"

    def test_sweep_with_no_budget_does_nothing(self, h: Harness) -> None:
        h.run("SET", "k", "v", "PX", 1)
        h.advance(10)
        assert h.sweep(max_keys=0) == 0
        assert h.machine.key_count() == 1

    def test_sweep_sees_writes_of_the_same_batch(self, h: Harness) -> None:
        h.machine.begin_batch()
        h.machine.execute([b"SET", b"k", b"v", b"PX", b"10"], h.now_ms)
        assert h.machine.expire_sweep(h.now_ms + 10, 10) == 1
        assert h.machine.execute([b"SET", b"j", b"v", b"PX", b"10"], h.now_ms) == OK
        h.view.apply(h.machine.finish_batch())
        h.check_invariants()
        assert h.stored_keys() == {b"j"}
