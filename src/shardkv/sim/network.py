"""A simulated network for the deterministic simulator.

Owns: messages in flight between simulated nodes, per-message faults (drop, delay,
duplicate, reorder) and link-level faults (symmetric and one-way partitions). Every random
choice comes from the one ``random.Random`` handed in, so a seed replays exactly. It never
reads a clock (time is the caller's tick count), never touches real sockets, and knows
nothing about Raft: a payload is opaque.

Delivery model: a message sent at tick ``t`` is due at ``t + delay`` with
``delay >= 1``; messages due at the same tick are delivered in the order they were
scheduled (a per-message sequence number breaks ties), so reordering comes only from
different delays. A blocked link drops a message both when it is sent and when it would be
delivered (a partition cuts what is in flight too).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

MAX_IN_FLIGHT_MESSAGES: Final = 20_000
"""Default bound on messages held by the network; sends beyond it are dropped (counted as
``overflow``), as a full socket buffer would."""


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """How hostile the network is during a run's fault phase. Probabilities are per message
    (``*_probability``) or per tick (``partition_*``); delays are in ticks.

    - ``drop_probability``: a message is lost.
    - ``duplicate_probability``: a message is delivered twice (each copy gets its own delay).
    - ``min_delay_ticks`` .. ``max_delay_ticks``: uniform latency (>= 1).
    - ``reorder_probability`` / ``reorder_max_extra_ticks``: a message is held back by up to
      that many extra ticks, so later messages overtake it.
    - ``partition_probability``: chance per tick that a new partition starts (if none is in
      force); it lasts ``partition_min_ticks`` .. ``partition_max_ticks``.
    - ``one_way_partition_probability``: share of partitions that block only one direction.
    """

    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    min_delay_ticks: int = 1
    max_delay_ticks: int = 1
    reorder_probability: float = 0.0
    reorder_max_extra_ticks: int = 0
    partition_probability: float = 0.0
    partition_min_ticks: int = 10
    partition_max_ticks: int = 100
    one_way_partition_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "drop_probability",
            "duplicate_probability",
            "reorder_probability",
            "partition_probability",
            "one_way_partition_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 1 <= self.min_delay_ticks <= self.max_delay_ticks:
            raise ValueError("need 1 <= min_delay_ticks <= max_delay_ticks")
        if self.reorder_max_extra_ticks < 0:
            raise ValueError("reorder_max_extra_ticks must be >= 0")
        if not 1 <= self.partition_min_ticks <= self.partition_max_ticks:
            raise ValueError("need 1 <= partition_min_ticks <= partition_max_ticks")

    @staticmethod
    def draw(rng: random.Random) -> FaultSettings:
        """Settings for one seed: from a calm network to a very lossy one, so that both
        progress and faults get exercised across seeds."""
        calm = rng.random() < 0.15
        max_delay = rng.choice((1, 2, 3, 5, 8))
        return FaultSettings(
            drop_probability=0.0 if calm else rng.choice((0.0, 0.01, 0.05, 0.1, 0.2)),
            duplicate_probability=0.0 if calm else rng.choice((0.0, 0.01, 0.05)),
            min_delay_ticks=1,
            max_delay_ticks=max_delay,
            reorder_probability=0.0 if calm else rng.choice((0.0, 0.02, 0.1)),
            reorder_max_extra_ticks=rng.randint(0, 20),
            partition_probability=0.0 if calm else rng.choice((0.0, 0.002, 0.005, 0.01)),
            partition_min_ticks=10,
            partition_max_ticks=rng.choice((50, 150, 400)),
            one_way_partition_probability=rng.choice((0.0, 0.3, 0.5)),
        )

    @staticmethod
    def healed() -> FaultSettings:
        """A network that delivers everything promptly (the liveness phase)."""
        return FaultSettings()


@dataclass(frozen=True, slots=True)
class Envelope(Generic[T]):
    """One message on the wire: ``payload`` from node ``src`` to node ``dst``, sent at
    ``sent_tick``."""

    src: int
    dst: int
    payload: T
    sent_tick: int


DropReason = str
DROP_RANDOM: Final[DropReason] = "random"
DROP_PARTITION: Final[DropReason] = "partition"
DROP_OVERFLOW: Final[DropReason] = "overflow"


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_random: int = 0
    dropped_partition: int = 0
    dropped_overflow: int = 0
    duplicated: int = 0


class Network(Generic[T]):
    """Messages in flight plus the fault model. Drive it from one thread.

    ``on_drop(envelope, reason)`` is called for every message the network loses, at the
    moment it is lost (the simulator uses it to play the transport's part, e.g. reporting
    a failed snapshot send). It must not call back into the network synchronously.
    """

    __slots__ = (
        "_blocked",
        "_heap",
        "_on_drop",
        "_rng",
        "_seq",
        "max_in_flight_messages",
        "settings",
        "stats",
    )

    def __init__(
        self,
        rng: random.Random,
        settings: FaultSettings,
        *,
        max_in_flight_messages: int = MAX_IN_FLIGHT_MESSAGES,
        on_drop: Callable[[Envelope[T], DropReason], None] | None = None,
    ) -> None:
        if max_in_flight_messages <= 0:
            raise ValueError("max_in_flight_messages must be > 0")
        self._rng = rng
        self.settings = settings
        self.max_in_flight_messages = max_in_flight_messages
        self._on_drop = on_drop
        # (due tick, sequence, envelope): the sequence makes the order total and stable.
        self._heap: list[tuple[int, int, Envelope[T]]] = []
        self._seq = 0
        # Directed links (src, dst) that currently lose everything.
        self._blocked: set[tuple[int, int]] = set()
        self.stats = NetworkStats()

    # -- links ----------------------------------------------------------------------------

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def block(self, src: int, dst: int) -> None:
        """Cut the one-way link ``src -> dst``."""
        if src != dst:
            self._blocked.add((src, dst))

    def partition(self, side_a: list[int], side_b: list[int], *, one_way: bool = False) -> None:
        """Cut every link from ``side_a`` to ``side_b`` (and back, unless ``one_way``)."""
        for a in side_a:
            for b in side_b:
                self.block(a, b)
                if not one_way:
                    self.block(b, a)

    def heal(self) -> None:
        """Restore every link."""
        self._blocked.clear()

    def blocked_links(self) -> list[tuple[int, int]]:
        """The cut links, sorted (for traces)."""
        return sorted(self._blocked)

    # -- traffic --------------------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._heap)

    def _drop(self, envelope: Envelope[T], reason: DropReason) -> None:
        if reason == DROP_RANDOM:
            self.stats.dropped_random += 1
        elif reason == DROP_PARTITION:
            self.stats.dropped_partition += 1
        else:
            self.stats.dropped_overflow += 1
        if self._on_drop is not None:
            self._on_drop(envelope, reason)

    def _schedule(self, now_tick: int, envelope: Envelope[T]) -> None:
        if len(self._heap) >= self.max_in_flight_messages:
            self._drop(envelope, DROP_OVERFLOW)
            return
        s = self.settings
        rng = self._rng
        delay = s.min_delay_ticks
        if s.max_delay_ticks > s.min_delay_ticks:
            delay = rng.randint(s.min_delay_ticks, s.max_delay_ticks)
        if s.reorder_probability and rng.random() < s.reorder_probability:
            delay += rng.randint(0, s.reorder_max_extra_ticks)
        self._seq += 1
        heapq.heappush(self._heap, (now_tick + delay, self._seq, envelope))

    def send(self, now_tick: int, src: int, dst: int, payload: T) -> None:
        """Hand ``payload`` to the network at ``now_tick``; it may be lost, delayed or
        duplicated according to `settings`."""
        self.stats.sent += 1
        envelope = Envelope(src, dst, payload, now_tick)
        if (src, dst) in self._blocked:
            self._drop(envelope, DROP_PARTITION)
            return
        s = self.settings
        rng = self._rng
        if s.drop_probability and rng.random() < s.drop_probability:
            self._drop(envelope, DROP_RANDOM)
            return
        self._schedule(now_tick, envelope)
        if s.duplicate_probability and rng.random() < s.duplicate_probability:
            self.stats.duplicated += 1
            self._schedule(now_tick, envelope)

    def drop_sent_since(self, src: int, since_tick: int) -> int:
        """Lose every message from ``src`` sent at or after ``since_tick`` that is still in
        flight (a machine that crashes loses what had not left its network buffers).
        Returns how many were lost."""
        heap = self._heap
        kept = [
            item for item in heap if not (item[2].src == src and item[2].sent_tick >= since_tick)
        ]
        lost = len(heap) - len(kept)
        if lost:
            heapq.heapify(kept)
            self._heap = kept
            self.stats.dropped_random += lost
        return lost

    def deliver_due(self, now_tick: int) -> list[Envelope[T]]:
        """Every message due at or before ``now_tick`` whose link is open, in due order.
        Messages whose link is cut now are dropped instead."""
        heap = self._heap
        out: list[Envelope[T]] = []
        blocked = self._blocked
        while heap and heap[0][0] <= now_tick:
            _, _, envelope = heapq.heappop(heap)
            if blocked and (envelope.src, envelope.dst) in blocked:
                self._drop(envelope, DROP_PARTITION)
                continue
            out.append(envelope)
        self.stats.delivered += len(out)
        return out
