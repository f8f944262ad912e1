"""A blocking client for code that does not run an event loop: `SyncClient`.

It owns a private event loop (uvloop when installed) running in a daemon thread, and a
`Client` living on that loop; every method submits the coroutine to that loop and blocks
until it finishes. Because the work happens on the private loop, a `SyncClient` may be used
from any thread, several threads at once (their commands are pipelined like concurrent
tasks), and even from code that runs its own, unrelated event loop. It must not be used from
inside its own loop (a callback of that loop), which would deadlock; that raises
RuntimeError.

Errors, retries and timeouts are exactly those of `Client`.
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from shardkv.client.client import Arg, Client, ClientStats
from shardkv.client.connection import DEFAULT_MAX_INFLIGHT_REQUESTS
from shardkv.core.cluster.slots import key_slot as cluster_key_slot
from shardkv.core.resp import Reply

_T = TypeVar("_T")


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SyncClient:
    """Blocking twin of `Client`: same parameters, same methods without `await`.

    Call `close()` (or use `with SyncClient(...) as client:`) to stop the loop thread; a
    client left open keeps its connections until the process exits.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7379,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float | None = 10.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        max_redirects: int = 5,
        max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS,
        retry_idempotent_writes: bool = True,
        key_slot: Callable[[bytes], int] | None = cluster_key_slot,
        ssl: ssl_module.SSLContext | None = None,
        rng: random.Random | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        # Validate on the caller's thread, so bad arguments fail before a thread exists.
        client = Client(
            host,
            port,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            request_timeout_s=request_timeout_s,
            max_retries=max_retries,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            max_redirects=max_redirects,
            max_inflight_requests=max_inflight_requests,
            retry_idempotent_writes=retry_idempotent_writes,
            key_slot=key_slot,
            ssl=ssl,
            rng=rng,
            username=username,
            password=password,
        )
        self._client = client
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop = _new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"shardkv-client-{host}:{port}", daemon=True
        )
        self._thread.start()

    @property
    def stats(self) -> ClientStats:
        """The wrapped client's counters (read them between calls; they are not locked)."""
        return self._client.stats

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections, stop the loop and join its thread. Idempotent; calls made
        afterwards raise RuntimeError."""
        with self._close_lock:
            if self._closed:
                return
            try:
                self._run(self._client.close())
            finally:
                self._closed = True
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()

    def execute(self, *args: Arg) -> Reply:
        """See `Client.execute`."""
        return self._run(self._client.execute(*args))

    def ping(self) -> bool:
        return self._run(self._client.ping())

    def get(self, key: Arg) -> bytes | None:
        return self._run(self._client.get(key))

    def set(
        self,
        key: Arg,
        value: Arg,
        *,
        ex_s: int | None = None,
        px_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
    ) -> bool:
        """See `Client.set`."""
        return self._run(
            self._client.set(key, value, ex_s=ex_s, px_ms=px_ms, nx=nx, xx=xx, keepttl=keepttl)
        )

    def delete(self, *keys: Arg) -> int:
        return self._run(self._client.delete(*keys))

    def exists(self, *keys: Arg) -> int:
        return self._run(self._client.exists(*keys))

    def incr(self, key: Arg) -> int:
        return self._run(self._client.incr(key))

    def incrby(self, key: Arg, amount: int) -> int:
        return self._run(self._client.incrby(key, amount))

    def append(self, key: Arg, value: Arg) -> int:
        return self._run(self._client.append(key, value))

    def mget(self, *keys: Arg) -> list[bytes | None]:
        return self._run(self._client.mget(*keys))

    def mset(self, mapping: Mapping[Arg, Arg]) -> None:
        self._run(self._client.mset(mapping))

    def expire(self, key: Arg, ttl_s: int) -> bool:
        return self._run(self._client.expire(key, ttl_s))

    def ttl(self, key: Arg) -> int:
        return self._run(self._client.ttl(key))

    def scan(
        self,
        cursor: int = 0,
        *,
        match: Arg | None = None,
        count: int | None = None,
        type_: str | None = None,
    ) -> tuple[int, list[bytes]]:
        return self._run(self._client.scan(cursor, match=match, count=count, type_=type_))

    def scan_iter(
        self,
        match: Arg | None = None,
        *,
        count: int | None = None,
        type_: str | None = None,
    ) -> Iterator[bytes]:
        """See `Client.scan_iter`; one blocking SCAN step per page."""
        cursor = 0
        while True:
            cursor, keys = self.scan(cursor, match=match, count=count, type_=type_)
            yield from keys
            if cursor == 0:
                return

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncClient is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncClient called from its own event loop thread; use Client")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt and the like: do not leave the command running unobserved.
            future.cancel()
            raise
