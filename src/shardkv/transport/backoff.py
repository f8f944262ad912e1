"""Exponential backoff with jitter for reconnecting to a peer.

Pure and deterministic given its ``random.Random``: the transport passes one in, tests pass
a seeded one. Jitter spreads the reconnects of many nodes that lost the same peer at the
same moment, so a restarted node is not hit by all of them in the same millisecond.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial_s * multiplier**n`` capped at ``max_s``, each shortened by a random
    fraction of up to ``jitter`` (so a delay lies in ``[base * (1 - jitter), base]``).

    `next_delay_s` after every failed attempt; `reset` after a success.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        initial_s: float = 0.05,
        max_s: float = 2.0,
        multiplier: float = 2.0,
        jitter: float = 0.5,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self._rng = rng
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.jitter = jitter
        self._base_s = initial_s

    @property
    def base_s(self) -> float:
        """The un-jittered delay the next `next_delay_s` call draws from."""
        return self._base_s

    def next_delay_s(self) -> float:
        base = self._base_s
        self._base_s = min(self.max_s, base * self.multiplier)
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._base_s = self.initial_s
