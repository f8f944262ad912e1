"""``python -m shardkv.sim``: the interface scripts and CI rely on."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from shardkv.core.raft import log as raft_log
from shardkv.sim import cluster
from shardkv.sim.__main__ import main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_seeds_prints_a_summary_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--start", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "3 seeds, 0 failed"
    assert "seeds 5..7" in lines[-2]


def test_a_failing_seed_is_printed_with_its_replay_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plant a bug the simulator catches at once, so some seeds fail.
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    assert main(["--seeds", "4", "--start", "1"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    failures = [line for line in lines if line.startswith("FAIL seed ")]
    assert failures
    seed = failures[0].split()[2].rstrip(":")
    assert f"python -m shardkv.sim --seed {seed} --verbose" in failures[0]
    assert lines[-1] == f"4 seeds, {len(failures)} failed"


def test_verbose_replay_prints_a_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "3", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "becomes leader of term" in out
    assert "liveness phase" in out
    assert out.strip().splitlines()[-1].startswith("seed 3: ok")


def test_check_determinism(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "2", "--check-determinism"]) == 0
    assert "seed 2: deterministic" in capsys.readouterr().out


def test_check_determinism_reports_a_deterministic_failure_as_deterministic(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    assert main(["--seed", "1", "--check-determinism"]) == 0
    out = capsys.readouterr().out
    assert "seed 1: deterministic" in out and "FAILED" in out


def test_check_determinism_catches_a_nondeterministic_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Leak state between runs: every stream is seeded from a process-wide counter.
    calls = itertools.count()
    monkeypatch.setattr(cluster, "derive_rng", lambda seed, purpose: random.Random(next(calls)))
    assert main(["--seed", "2", "--check-determinism"]) == 1
    assert "NOT deterministic" in capsys.readouterr().out


def test_bad_usage_exits_with_status_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--seeds", "3", "--verbose"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def _fingerprint_in_subprocess(seed: int, hash_seed: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED=hash_seed)
    completed = subprocess.run(
        [sys.executable, "-m", "shardkv.sim", "--seed", str(seed)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return completed.stdout.rsplit("fingerprint ", 1)[1].strip()


def test_runs_are_identical_across_processes_and_hash_seeds() -> None:
    # Iteration order of str/bytes sets changes with PYTHONHASHSEED; nothing in a run may
    # depend on it.
    assert _fingerprint_in_subprocess(4, "1") == _fingerprint_in_subprocess(4, "2")
