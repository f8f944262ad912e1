"""The shipped multi-group node driver under simulation: many shards on every node,
crashes that lose unsynced writes, restarts through the real recovery path, lossy and
partitioned networks, and clients that follow -MOVED like a Redis Cluster client.

Every seed checks: each slot is served only by the group the map gives it to, at that
group's epoch (never by two groups in one epoch); every shard elects a leader and commits
a write once healed; every key's history is linearizable. A failure names the seed;
``run_seed(seed)`` replays it exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from shardkv.node.driver import NodeDriver
from shardkv.observability.logging import configure_logging
from shardkv.sim.shards import ShardSimSettings, run_seed
from tests.sim.parallel import run_seeds

SEEDS = 500


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """The drivers log every election; thousands of them would only slow the run."""
    configure_logging("console", "error")
    yield
    logging.getLogger().handlers.clear()
    configure_logging("console", "info")


def test_500_seeds_joining_splitting_and_merging_under_faults_stay_safe_and_linearizable() -> None:
    failures = []
    shapes = set()
    crashes = redirects = ops = joins = splits = merges = 0
    for seed, result in enumerate(run_seeds(run_seed, range(1, SEEDS + 1)), start=1):
        shapes.add((result.settings.node_count, result.settings.shard_count))
        crashes += result.stats.crashes
        redirects += result.stats.redirects
        ops += result.stats.ops_ok
        joins += result.stats.joins
        splits += result.stats.splits_ordered
        merges += result.stats.merges_recorded
        if not result.ok:
            first_line = str(result.failure).splitlines()[0]
            failures.append(f"{first_line} (replay: run_seed({seed}))")
    assert not failures, "\n".join(failures)
    # The seeds covered what they claim to: several shapes, crashes, redirects, real load,
    # nodes joining through the placement group (then following it, checked per seed), and
    # shards splitting and merging back (each applied and recorded before the maps count
    # as settled).
    assert len(shapes) >= 8 and crashes > 500 and redirects > 10_000 and ops > 20_000
    assert joins > 200 and splits > 300 and merges > 100


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(77), run_seed(77)
    assert first.ok and second.ok
    assert (first.ticks, first.history_size, first.stats) == (
        second.ticks,
        second.history_size,
        second.stats,
    )


# -- planted bugs: each must be caught, or the checks have gone blind -----------------------


def _misroute(driver: NodeDriver) -> None:
    """Routing bug: every slot goes to the shard hosted here that owns the slot 1024 later."""
    groups = driver._slot_group
    driver._slot_group = groups[1024:] + groups[:1024]


def _misroute_unfenced(driver: NodeDriver) -> None:
    """The routing bug, with the epoch fence off: replicas execute what they do not own."""
    _misroute(driver)
    for _, replica in driver.groups():
        replica.fenced = False


def _stale_reads(driver: NodeDriver) -> None:
    """Reads served by whatever replica receives them, without a ReadIndex round."""
    submit = driver.submit

    def stale(commands, on_done, *, allow_stale=False, has_write=None):  # type: ignore[no-untyped-def]
        submit(commands, on_done, allow_stale=True, has_write=has_write)

    driver.submit = stale  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (_misroute, "liveness"),
        (_misroute_unfenced, "slot served by a group that does not own it"),
        (_stale_reads, "linearizability"),
    ],
)
def test_planted_routing_fence_and_read_bugs_are_caught(
    plant: Callable[[NodeDriver], None], expected: str
) -> None:
    settings = ShardSimSettings.draw(2)
    assert settings.shard_count >= 4  # the routing bug moves slots across shards
    result = run_seed(2, plant=plant)
    assert result.failure is not None, "planted bug survived"
    assert result.failure.invariant == expected, str(result.failure)
    caught = sum(not run_seed(seed, plant=plant).ok for seed in range(1, 11))
    assert caught >= 5, f"planted bug caught by only {caught} of 10 seeds"
