"""Run independent simulator seeds on every core: each seed is deterministic on its own,
so the results are the same as a loop's, in the same order, in about 1/cores the time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

R = TypeVar("R")


def run_seeds(run: Callable[[int], R], seeds: Iterable[int]) -> list[R]:
    """``[run(seed) for seed in seeds]``, spread over one worker process per core."""
    seeds = list(seeds)
    workers = max(1, min(os.cpu_count() or 1, len(seeds)))
    if workers == 1:
        return [run(seed) for seed in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, seeds, chunksize=max(1, len(seeds) // (workers * 4))))
