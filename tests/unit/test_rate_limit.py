"""The node-wide snapshot pacer: bytes leave at the configured rate on average, whatever
the number of concurrent senders, with at most one burst ahead. Time is a fake clock that
the pacer's own sleeps advance."""

from __future__ import annotations

import asyncio

from shardkv.transport.rate_limit import ByteRateLimiter

MIB = 1 << 20


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_ten_mib_at_two_mib_per_second_take_four_and_a_half_seconds_after_the_burst() -> None:
    fake = FakeTime()
    limiter = ByteRateLimiter(2 * MIB, MIB, clock=fake.clock, sleep=fake.sleep)

    async def send_all() -> int:
        sent = 0
        async for chunk in limiter.paced([b"x" * MIB] * 10, len):
            sent += len(chunk)
        return sent

    assert asyncio.run(send_all()) == 10 * MIB
    assert abs(fake.now - 4.5) < 1e-9  # the first MiB is the burst; 9 more at 2 MiB/s


def test_concurrent_senders_share_one_rate() -> None:
    fake = FakeTime()
    limiter = ByteRateLimiter(MIB, MIB, clock=fake.clock, sleep=fake.sleep)

    async def sender() -> None:
        async for _ in limiter.paced([b"y" * (MIB // 2)] * 4, len):
            pass

    async def three() -> None:
        await asyncio.gather(sender(), sender(), sender())

    asyncio.run(three())
    # 6 MiB in all at 1 MiB/s, one MiB of burst: 5 s, not 1/3 of it.
    assert abs(fake.now - 5.0) < 1e-9


def test_zero_means_no_limit() -> None:
    fake = FakeTime()
    limiter = ByteRateLimiter(0, MIB, clock=fake.clock, sleep=fake.sleep)

    async def send() -> None:
        async for _ in limiter.paced([b"z" * MIB] * 100, len):
            pass

    asyncio.run(send())
    assert fake.now == 0.0 and limiter.waited_s == 0.0
