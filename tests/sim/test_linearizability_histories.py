"""The linearizability checker on real histories with known verdicts, and on small ones that
spell out the rules (stale reads, concurrency, unknown and failed outcomes, determinism).

The real histories live in the shared data directory beside the repository
(`<repo>/../shared/data/histories`, see its README): 102 Jepsen etcd register logs and six
Porcupine key-value histories. A checker that gets any of them wrong is wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest

from shardkv.sim.history_formats import parse_jepsen_log, parse_porcupine_kv
from shardkv.sim.linearizability import (
    INFINITY,
    UNKNOWN,
    CheckResult,
    KvInput,
    Model,
    Operation,
    RegisterInput,
    check_operations,
    kv_model,
    register_model,
)

HISTORIES_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "histories"
JEPSEN_DIR = HISTORIES_DIR / "jepsen"
KV_DIR = HISTORIES_DIR / "kv"
# Generous: every shared history checks in well under a second on this machine; the bound
# only turns a pathological regression into a failure instead of a hang.
HISTORY_TIMEOUT_S = 60.0


def _expected_jepsen_verdicts() -> dict[str, str]:
    expected = JEPSEN_DIR / "EXPECTED.txt"
    if not expected.exists():
        return {}
    return dict(line.split() for line in expected.read_text().splitlines() if line.strip())


JEPSEN_VERDICTS = _expected_jepsen_verdicts()
KV_FILES = sorted(p.name for p in KV_DIR.glob("c*-*.txt")) if KV_DIR.exists() else []


def test_shared_histories_are_present() -> None:
    assert HISTORIES_DIR.is_dir(), f"shared histories not found at {HISTORIES_DIR}"
    assert len(JEPSEN_VERDICTS) == 102
    assert sum(v == "linearizable" for v in JEPSEN_VERDICTS.values()) == 23
    assert [f"c{n}-{v}.txt" for n in ("01", "10", "50") for v in ("bad", "ok")] == KV_FILES


@pytest.mark.parametrize("name", sorted(JEPSEN_VERDICTS))
def test_jepsen_etcd_history_gets_its_known_verdict(name: str) -> None:
    history = parse_jepsen_log(JEPSEN_DIR / name)

    report = check_operations(register_model, history, timeout_s=HISTORY_TIMEOUT_S)

    expected = {"linearizable": CheckResult.OK, "not-linearizable": CheckResult.ILLEGAL}
    assert report.result is expected[JEPSEN_VERDICTS[name]], report.explanation


@pytest.mark.parametrize("name", KV_FILES)
def test_porcupine_kv_history_gets_its_known_verdict(name: str) -> None:
    history = parse_porcupine_kv(KV_DIR / name)

    report = check_operations(kv_model, history, timeout_s=HISTORY_TIMEOUT_S)

    assert report.result is (CheckResult.OK if name.endswith("-ok.txt") else CheckResult.ILLEGAL)
    assert report.partitions == 10 or name.startswith("c01")


def test_an_illegal_verdict_names_the_key_and_the_longest_linearizable_prefix() -> None:
    report = check_operations(kv_model, parse_porcupine_kv(KV_DIR / "c01-bad.txt"))

    assert report.result is CheckResult.ILLEGAL
    assert report.failed_key == "7"
    assert report.longest_prefix
    assert all(op.input.key == "7" for op in report.longest_prefix)
    assert report.explanation.startswith("partition '7': not linearizable")
    assert "stuck before" in report.explanation


# -- The rules, on hand-written register histories ----------------------------------------


def read(value: Hashable, call: int, ret: float, client: int = 0) -> Operation:
    return Operation(client, RegisterInput("read"), value, call, ret)


def write(value: Hashable, call: int, ret: float, client: int = 0) -> Operation:
    output = UNKNOWN if ret == INFINITY else None
    return Operation(client, RegisterInput("write", value), output, call, ret)


def cas(expected: Hashable, new: Hashable, swapped: Any, call: int, ret: float) -> Operation:
    return Operation(0, RegisterInput("cas", expected, new), swapped, call, ret)


def verdict(*history: Operation) -> CheckResult:
    return check_operations(register_model, history).result


def test_a_read_sees_the_latest_completed_write() -> None:
    assert verdict(write(1, 0, 1), write(2, 2, 3), read(2, 4, 5)) is CheckResult.OK


def test_a_stale_read_is_illegal() -> None:
    report = check_operations(register_model, [write(1, 0, 1), write(2, 2, 3), read(1, 4, 5)])

    assert report.result is CheckResult.ILLEGAL
    assert [op.input for op in report.longest_prefix] == [
        RegisterInput("write", 1),
        RegisterInput("write", 2),
    ]
    assert "stuck before: client 0 [4, 5] read() -> 1" in report.explanation


def test_a_read_of_a_value_never_written_is_illegal() -> None:
    assert verdict(write(1, 0, 1), read(3, 2, 3)) is CheckResult.ILLEGAL
    assert verdict(read(1, 0, 1), write(1, 2, 3)) is CheckResult.ILLEGAL


@pytest.mark.parametrize("seen", [1, 2])
def test_a_concurrent_write_may_be_seen_or_not(seen: int) -> None:
    history = [write(1, 0, 1), write(2, 2, 6, client=1), read(seen, 3, 4)]

    assert verdict(*history) is CheckResult.OK


def test_once_a_concurrent_write_is_seen_it_cannot_be_unseen() -> None:
    history = [write(1, 0, 1), write(2, 2, 9, client=1), read(2, 3, 4), read(1, 5, 6)]

    assert verdict(*history) is CheckResult.ILLEGAL


@pytest.mark.parametrize("seen", [1, 2])
def test_an_unknown_outcome_write_may_take_effect_later_or_never(seen: int) -> None:
    history = [write(1, 0, 1), write(2, 2, INFINITY, client=1), read(1, 3, 4), read(seen, 50, 51)]

    assert verdict(*history) is CheckResult.OK


def test_an_unknown_outcome_write_cannot_take_effect_before_its_call() -> None:
    history = [write(1, 0, 1), read(2, 2, 3), write(2, 4, INFINITY, client=1)]

    assert verdict(*history) is CheckResult.ILLEGAL


def test_an_unknown_outcome_write_takes_effect_at_most_once() -> None:
    history = [
        write(2, 0, INFINITY, client=1),
        read(2, 1, 2),
        write(1, 3, 4),
        read(2, 5, 6),
    ]

    assert verdict(*history) is CheckResult.ILLEGAL


def test_an_unknown_operation_that_could_never_have_happened_is_dropped() -> None:
    # A counter that saturates at 1: the pending increment is illegal in every state the
    # finished operations leave behind, so a checker that insists on placing it somewhere
    # (even at the very end) would call this legal history illegal.
    def step(state: int, op: str, output: Any) -> tuple[bool, int]:
        if op == "inc":
            return state < 1, state + 1
        return output == state, state

    saturating: Model[int] = Model(init=lambda: 0, step=step, name="saturating-counter")
    history = [
        Operation(1, "inc", UNKNOWN, 0, INFINITY),
        Operation(0, "inc", None, 1, 2),
        Operation(0, "get", 1, 3, 4),
    ]

    assert check_operations(saturating, history).result is CheckResult.OK


def test_a_failed_compare_and_set_must_not_be_seen() -> None:
    failed = cas(1, 5, False, 2, 3)

    assert verdict(write(1, 0, 1), failed, read(5, 4, 5)) is CheckResult.ILLEGAL
    assert verdict(write(2, 0, 1), failed, read(2, 4, 5)) is CheckResult.OK


def test_a_jepsen_failed_write_is_left_out_and_must_not_be_seen(tmp_path: Path) -> None:
    log = tmp_path / "failed.log"
    log.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
        "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]\n"
        "INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]\n"
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 0\t:ok\t:read\t4\n"
    )

    history = parse_jepsen_log(log)

    assert [op.input.kind for op in history] == ["write", "read"]
    assert check_operations(register_model, history).result is CheckResult.ILLEGAL


def test_keys_are_checked_independently() -> None:
    history = [
        Operation(0, KvInput("put", "a", "1"), None, 0, 1),
        Operation(1, KvInput("put", "b", "2"), None, 2, 3),
        Operation(0, KvInput("get", "a"), "1", 4, 5),
        Operation(1, KvInput("get", "b"), "", 6, 7),
    ]

    report = check_operations(kv_model, history)

    assert report.result is CheckResult.ILLEGAL
    assert report.failed_key == "b"
    assert report.partitions == 2


# -- Determinism and the timeout ----------------------------------------------------------


def _never_called() -> float:
    raise AssertionError("the checker read the clock without a timeout")


def _hard_illegal_history(concurrent_appends: int) -> list[Operation]:
    """Concurrent appends, then a read no order of them explains: exponential to refute."""
    appends = [
        Operation(c, KvInput("append", "k", f"<{c}>"), None, c, 1000 + c)
        for c in range(concurrent_appends)
    ]
    return [*appends, Operation(99, KvInput("get", "k"), "<impossible>", 2000, 2001)]


_REPORT_SCRIPT = """
import sys
from shardkv.sim.history_formats import parse_porcupine_kv
from shardkv.sim.linearizability import check_operations, kv_model
report = check_operations(kv_model, parse_porcupine_kv(sys.argv[1]))
print(report.result, report.failed_key, report.explanation)
"""


def test_the_report_does_not_depend_on_the_clock_or_the_hash_seed() -> None:
    history_file = KV_DIR / "c50-bad.txt"
    runs = [
        subprocess.run(
            [sys.executable, "-c", _REPORT_SCRIPT, str(history_file)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    in_process = check_operations(kv_model, parse_porcupine_kv(history_file), clock=_never_called)

    assert runs[0] == runs[1]
    assert runs[0].startswith(f"CheckResult.ILLEGAL {in_process.failed_key} partition")
    assert in_process.explanation in runs[0]


def test_a_search_that_outlives_its_timeout_reports_unknown() -> None:
    readings = iter([0.0, 0.5, 10.0])

    report = check_operations(
        kv_model, _hard_illegal_history(9), timeout_s=1.0, clock=lambda: next(readings)
    )

    assert report.result is CheckResult.UNKNOWN


def test_a_hard_illegal_history_is_refuted_exhaustively() -> None:
    report = check_operations(kv_model, _hard_illegal_history(7), clock=_never_called)

    assert report.result is CheckResult.ILLEGAL
    assert len(report.longest_prefix) == 7
