"""A token bucket that paces bytes on the event loop (snapshot sends, node-wide).

Every `PeerSender` of a node shares one `ByteRateLimiter`: the sum of the snapshot bytes it
sends to all peers stays under ``bytes_per_s`` (TiKV's ``snap-io-max-bytes-per-sec``), so
moving shards cannot starve client traffic of the node's disk and network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class ByteRateLimiter:
    """Paces callers to ``bytes_per_s`` on average, allowing bursts of ``burst_bytes``
    (0 ``bytes_per_s``: no limit). Use from one event loop; waiters are served in the
    order they asked (an ``asyncio.Lock`` queues them)."""

    def __init__(
        self,
        bytes_per_s: int,
        burst_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if bytes_per_s < 0 or burst_bytes <= 0:
            raise ValueError("bytes_per_s must be >= 0 and burst_bytes > 0")
        self.bytes_per_s = bytes_per_s
        self.burst_bytes = burst_bytes
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst_bytes)
        self._stamp = clock()
        self._lock = asyncio.Lock()
        #: Seconds callers spent waiting (a metric of how much the limit slowed sends).
        self.waited_s = 0.0

    async def acquire(self, n_bytes: int) -> None:
        """Return once ``n_bytes`` may go (a request above the burst goes alone, once the
        bucket is full, and leaves it in debt)."""
        if self.bytes_per_s == 0 or n_bytes <= 0:
            return
        async with self._lock:
            self._refill()
            need = min(float(n_bytes), float(self.burst_bytes))
            if self._tokens < need:
                wait_s = (need - self._tokens) / self.bytes_per_s
                self.waited_s += wait_s
                await self._sleep(wait_s)
                self._refill()
            self._tokens -= n_bytes

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(self.burst_bytes), self._tokens + (now - self._stamp) * self.bytes_per_s
        )
        self._stamp = now

    async def paced(self, items: Iterable[T], size: Callable[[T], int]) -> AsyncIterator[T]:
        """``items``, each released once its ``size`` may go."""
        for item in items:
            await self.acquire(size(item))
            yield item
