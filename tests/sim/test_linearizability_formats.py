"""Parsing the shared history formats into operations: times, inputs, outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardkv.sim.history_formats import parse_jepsen_log, parse_porcupine_kv
from shardkv.sim.linearizability import INFINITY, UNKNOWN, KvInput, Operation, RegisterInput


def jepsen(tmp_path: Path, *events: str) -> list[Operation]:
    log = tmp_path / "history.log"
    noise = "2015-01-01 12:00:00,000{main} INFO jepsen.core - Worker 0 starting\n"
    log.write_text(noise + "".join(f"INFO  jepsen.util - {e}\n" for e in events) + "\n")
    return parse_jepsen_log(log)


def test_jepsen_events_are_numbered_in_file_order(tmp_path: Path) -> None:
    history = jepsen(
        tmp_path,
        "0\t:invoke\t:write\t3",
        "1\t:invoke\t:read\tnil",
        "1\t:ok\t:read\tnil",
        "0\t:ok\t:write\t3",
        "1\t:invoke\t:cas\t[3 4]",
        "1\t:ok\t:cas\t[3 4]",
    )

    assert history == [
        Operation(0, RegisterInput("write", 3), None, 1, 4),
        Operation(1, RegisterInput("read"), None, 2, 3),
        Operation(1, RegisterInput("cas", 3, 4), True, 5, 6),
    ]


def test_jepsen_fields_may_be_separated_by_spaces(tmp_path: Path) -> None:
    history = jepsen(tmp_path, "7   :invoke :read   nil", "7   :ok     :read   2")

    assert history == [Operation(7, RegisterInput("read"), 2, 1, 2)]


def test_jepsen_outcomes(tmp_path: Path) -> None:
    history = jepsen(
        tmp_path,
        "0\t:invoke\t:cas\t[1 2]",
        "0\t:fail\t:cas\t[1 2]",  # did not happen: left out
        "1\t:invoke\t:write\t1",
        "1\t:info\t:write\t:timed-out",  # unknown
        "2\t:invoke\t:read\tnil",
        "2\t:fail\t:read\t:timed-out",  # unknown
        "3\t:invoke\t:write\t4",  # never completes: unknown
    )

    assert history == [
        Operation(1, RegisterInput("write", 1), UNKNOWN, 3, INFINITY),
        Operation(2, RegisterInput("read"), UNKNOWN, 5, INFINITY),
        Operation(3, RegisterInput("write", 4), UNKNOWN, 7, INFINITY),
    ]


@pytest.mark.parametrize(
    "events",
    [
        ("0\t:ok\t:read\t1",),  # completes nothing
        ("0\t:invoke\t:read\tnil", "0\t:invoke\t:read\tnil"),  # two at once
        ("0\t:invoke\t:read\tnil", "0\t:ok\t:write\t1"),  # completes another function
        ("0\t:invoke\t:write\tx",),  # not a value
        ("0\t:invoke\t:delete\t1",),  # not a register event
    ],
)
def test_jepsen_malformed_events_are_rejected(tmp_path: Path, events: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        jepsen(tmp_path, *events)


def test_porcupine_kv_history(tmp_path: Path) -> None:
    log = tmp_path / "kv.txt"
    log.write_text(
        '{:process 0, :type :invoke, :f :get, :key "k", :value nil}\n'
        '{:process 1, :type :invoke, :f :append, :key "k", :value "x \\"1\\" y"}\n'
        '{:process 0, :type :ok, :f :get, :key "k", :value ""}\n'
        '{:process 2, :type :invoke, :f :put, :key "j", :value "v"}\n'
        '{:process 2, :type :ok, :f :put, :key "j", :value "v"}\n'
    )

    assert parse_porcupine_kv(log) == [
        Operation(0, KvInput("get", "k"), "", 1, 3),
        Operation(1, KvInput("append", "k", 'x "1" y'), UNKNOWN, 2, INFINITY),
        Operation(2, KvInput("put", "j", "v"), None, 4, 5),
    ]


def test_porcupine_kv_rejects_lines_it_does_not_understand(tmp_path: Path) -> None:
    log = tmp_path / "kv.txt"
    log.write_text('{:process 0, :type :invoke, :f :cas, :key "k", :value nil}\n')

    with pytest.raises(ValueError, match=r"kv\.txt:1:"):
        parse_porcupine_kv(log)
