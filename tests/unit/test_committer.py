"""Group commit: nobody hears about a write, or sees it, before it is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from shardkv.core.cluster.slots import prefixed_key
from shardkv.core.engine import DATA
from shardkv.core.kv import KVStateMachine
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.observability.metrics import ServerMetrics
from shardkv.server.committer import STORAGE_FAILURE, Committer
from shardkv.storage import MemoryEngine, StorageError


class ManualExecutor(Executor):
    """Runs a submitted sync only when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], Any], Future[Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.waiting.append((lambda: fn(*args, **kwargs), fut))
        return fut

    def finish_one(self, error: BaseException | None = None) -> None:
        fn, fut = self.waiting.pop(0)
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(fn())


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def make(engine: MemoryEngine, executor: ManualExecutor, fatal: list[BaseException]) -> Committer:
    return Committer(
        KVStateMachine(engine),
        engine,
        executor,
        ServerMetrics(),
        max_batch_commands=100,
        max_pending_commands=1000,
        max_group_reply_bytes=1 << 20,
        clock_ms=lambda: 1_000_000,
        on_fatal=fatal.append,
    )


class Answers:
    def __init__(self) -> None:
        self.got: dict[str, list[Reply]] = {}

    def to(self, name: str) -> Callable[[list[Reply]], None]:
        return lambda replies: self.got.__setitem__(name, replies)


async def test_writes_and_reads_that_saw_them_wait_for_the_sync() -> None:
    engine, executor, fatal, answers = MemoryEngine(), ManualExecutor(), [], Answers()
    committer = make(engine, executor, fatal)
    committer.submit([[b"SET", b"a", b"1"]], answers.to("write"))
    await turns()
    committer.submit([[b"GET", b"a"]], answers.to("read"))
    await turns()
    assert answers.got == {}, "nothing may be answered before the write is durable"
    assert len(executor.waiting) == 1

    executor.finish_one()
    await turns()
    assert answers.got == {"write": [OK], "read": [b"1"]}
    assert fatal == []


async def test_a_crash_before_the_sync_loses_only_unanswered_writes() -> None:
    engine, executor, fatal, answers = MemoryEngine(), ManualExecutor(), [], Answers()
    committer = make(engine, executor, fatal)
    committer.submit([[b"SET", b"kept", b"1"]], answers.to("first"))
    await turns()
    executor.finish_one()
    await turns()
    committer.submit([[b"SET", b"lost", b"1"]], answers.to("second"))
    await turns()
    assert engine.get(DATA, prefixed_key(b"lost")) is not None, "written, not yet synced"
    engine.crash()  # power loss while the second sync is still running
    assert "second" not in answers.got
    assert engine.get(DATA, prefixed_key(b"lost")) is None
    reopened = KVStateMachine(engine)
    reopened.begin_batch()
    assert reopened.execute([b"GET", b"kept"], 0) == b"1"
    assert reopened.execute([b"GET", b"lost"], 0) is None


async def test_reads_are_answered_at_once_when_nothing_is_unsynced() -> None:
    engine, executor, fatal, answers = MemoryEngine(), ManualExecutor(), [], Answers()
    committer = make(engine, executor, fatal)
    committer.submit([[b"GET", b"x"], [b"EXISTS", b"x"]], answers.to("read"))
    await turns()
    assert answers.got == {"read": [None, 0]}
    assert executor.waiting == []


async def test_a_failed_sync_fails_everything_waiting_and_stops_the_server() -> None:
    engine, executor, fatal, answers = MemoryEngine(), ManualExecutor(), [], Answers()
    committer = make(engine, executor, fatal)
    committer.submit([[b"SET", b"a", b"1"]], answers.to("write"))
    await turns()
    committer.submit([[b"SET", b"b", b"1"]], answers.to("next"))
    await turns()
    executor.finish_one(StorageError("disk on fire"))
    await turns()
    assert answers.got == {"write": [STORAGE_FAILURE], "next": [STORAGE_FAILURE]}
    assert len(fatal) == 1
    committer.submit([[b"GET", b"a"]], answers.to("after"))
    assert answers.got["after"] == [STORAGE_FAILURE]
    assert isinstance(STORAGE_FAILURE, ErrorReply)


async def test_large_replies_stop_a_group_early_so_the_rest_runs_later() -> None:
    engine, executor, fatal, answers = MemoryEngine(), ManualExecutor(), [], Answers()
    committer = Committer(
        KVStateMachine(engine),
        engine,
        executor,
        ServerMetrics(),
        max_batch_commands=100,
        max_pending_commands=1000,
        max_group_reply_bytes=250,
        clock_ms=lambda: 0,
        on_fatal=fatal.append,
    )
    committer.submit([[b"SET", b"v", b"x" * 100]], answers.to("set"))
    await turns()
    executor.finish_one()
    await turns()
    committer.submit([[b"GET", b"v"]] * 10, answers.to("gets"))
    await turns()
    assert answers.got["gets"] == [b"x" * 100] * 3
