"""The deterministic simulator over many seeds: every run must keep Raft's safety
invariants, converge once healed, and produce a linearizable client history.

A failure names the seed; replay it with ``python -m shardkv.sim --seed S --verbose`` and,
once fixed, add it to ``regression_seeds.txt`` so it runs on every CI build.

Scale with the environment: ``SHARDKV_SIM_SEEDS`` (default 600) seeds starting at
``SHARDKV_SIM_START`` (default fixed, so CI is reproducible).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shardkv.sim.cluster import Cluster, SimResult, SimStats, run_seed
from shardkv.sim.linearizability import check_operations, kv_model
from shardkv.sim.witness import witness_problem
from tests.sim.parallel import run_seeds

REGRESSION_SEEDS_FILE = Path(__file__).parent / "regression_seeds.txt"
DEFAULT_BATCH_SEEDS = 600
DEFAULT_BATCH_START = 1
BATCH_CHUNK_SEEDS = 50


def _regression_seeds() -> list[int]:
    seeds: list[int] = []
    for line in REGRESSION_SEEDS_FILE.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            seeds.append(int(text))
    return seeds


def _failure_report(results: list[SimResult]) -> str:
    lines = []
    for result in results:
        if not result.ok:
            lines.append(
                f"{result.failure} -- replay: python -m shardkv.sim --seed {result.seed} --verbose"
            )
    return "\n".join(lines)


def _batch_chunks() -> list[tuple[int, int]]:
    count = int(os.environ.get("SHARDKV_SIM_SEEDS", DEFAULT_BATCH_SEEDS))
    start = int(os.environ.get("SHARDKV_SIM_START", DEFAULT_BATCH_START))
    return [
        (first, min(BATCH_CHUNK_SEEDS, start + count - first))
        for first in range(start, start + count, BATCH_CHUNK_SEEDS)
    ]


def test_regression_seeds_file_lists_seeds() -> None:
    assert len(_regression_seeds()) >= 5


@pytest.mark.parametrize("seed", _regression_seeds())
def test_regression_seed(seed: int) -> None:
    result = run_seed(seed)
    assert result.ok, _failure_report([result])
    assert result.linearizability in ("ok", "ok (witness)", "inconclusive")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "count"), _batch_chunks(), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_random_seeds(first: int, count: int) -> None:
    results = run_seeds(run_seed, range(first, first + count))
    failed = [r for r in results if not r.ok]
    assert not failed, _failure_report(failed)
    # Exhaustive-check budget: an inconclusive check is not a failure, but it must stay rare.
    inconclusive = sum(r.linearizability == "inconclusive" for r in results)
    assert inconclusive <= max(1, count // 20)


def test_the_order_the_system_chose_is_a_valid_linearization() -> None:
    # The witness (log order, reads after what they saw) must agree with the exhaustive
    # checker wherever that one finishes: both oracles see the same histories as valid.
    for seed in range(61, 71):
        cluster = Cluster(seed)
        cluster.run_fault_phase()
        cluster.heal()
        cluster.run_liveness_phase()
        cluster.finish_history()
        assert check_operations(kv_model, cluster.history).ok
        assert witness_problem(kv_model, cluster.history, cluster.witness_positions) == ""


def test_a_seed_replays_exactly() -> None:
    first = run_seed(11, trace=True, trace_core=True)
    second = run_seed(11, trace=True, trace_core=True)
    assert first.trace == second.trace
    assert first.fingerprint == second.fingerprint
    assert len(first.trace) > 1000


def test_different_seeds_give_different_runs() -> None:
    fingerprints = {run_seed(seed).fingerprint for seed in (21, 22, 23)}
    assert len(fingerprints) == 3


def test_the_fault_model_is_exercised_across_seeds() -> None:
    # A simulator that never crashes, partitions or snapshots proves nothing: over a few
    # seeds every kind of fault and every recovery path must actually happen.
    totals = SimStats()
    lost_write_seeds = 0
    five_node_seeds = 0
    for seed in range(31, 51):
        result = run_seed(seed)
        assert result.ok, _failure_report([result])
        st = result.stats
        for name in (
            "crashes",
            "pauses",
            "partitions",
            "conf_changes_applied",
            "snapshots_installed",
            "transfers",
            "ops_ok",
            "ops_unknown",
        ):
            setattr(totals, name, getattr(totals, name) + getattr(st, name))
        lost_write_seeds += st.lost_writes > 0
        five_node_seeds += result.settings.node_count == 5
        assert result.history_size > 20
    assert totals.crashes > 20 and totals.pauses > 5 and totals.partitions > 5
    assert totals.conf_changes_applied > 5 and totals.snapshots_installed > 5
    assert totals.transfers > 0 and totals.ops_unknown > 0 and totals.ops_ok > 1000
    assert lost_write_seeds > 0 and five_node_seeds > 0
