"""Three node runtimes in one process, wired by an in-memory network: the Ready loop,
group commit, proposals, ReadIndex reads, redirects and failover, on the real core."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from shardkv.core.raft import Message
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.node.runtime import ClusterSettings, NodeRuntime
from shardkv.storage import MemoryEngine

MEMBERS = {1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}


class Net:
    """Delivers messages between runtimes on the next loop turn; can cut nodes off."""

    def __init__(self) -> None:
        self.nodes: dict[int, NodeRuntime] = {}
        self.down: set[int] = set()

    def sender(self, src: int) -> Callable[[list[Message]], None]:
        def send(messages: list[Message]) -> None:
            loop = asyncio.get_running_loop()
            for m in messages:
                if src in self.down or m.to in self.down or m.to not in self.nodes:
                    continue
                loop.call_soon(self.nodes[m.to].step, [m])

        return send


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Net, dict[int, MemoryEngine]]]:
    net = Net()
    engines = {i: MemoryEngine() for i in MEMBERS}
    executor = ThreadPoolExecutor(4)
    for i in MEMBERS:
        settings = ClusterSettings(
            node_id=i,
            initial_members=MEMBERS,
            client_address=f"127.0.0.1:{7000 + i}",
            tick_interval_ms=10,
            snapshot_interval_entries=50,
            compaction_margin_entries=10,
        )
        rt = NodeRuntime(settings, engines[i], executor, net.sender(i), rng=random.Random(i))
        rt.open()
        net.nodes[i] = rt
    for rt in net.nodes.values():
        for other in net.nodes.values():  # the transport's hello, which this Net lacks
            if other is not rt:
                rt.learn_client_address(other.node_id, other.settings.client_address)
        await rt.start()
    yield net, engines
    for rt in net.nodes.values():
        await rt.stop(transfer_timeout_s=0)
    executor.shutdown()


async def call(rt: NodeRuntime, *args: bytes) -> Reply:
    fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
    rt.submit([list(args)], lambda replies: fut.done() or fut.set_result(replies))
    return (await asyncio.wait_for(fut, 5))[0]


async def wait_leader(net: Net, timeout_s: float = 5.0) -> NodeRuntime:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders = [
            rt for i, rt in net.nodes.items() if i not in net.down and rt.replica().is_leader
        ]
        if len(leaders) == 1 and leaders[0].leader_client_address() is not None:
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no leader elected")


async def test_writes_go_through_the_leader_and_followers_redirect(
    cluster: tuple[Net, dict[int, MemoryEngine]],
) -> None:
    net, _ = cluster
    leader = await wait_leader(net)
    assert await call(leader, b"SET", b"k", b"v") == OK
    assert await call(leader, b"GET", b"k") == b"v"
    assert await call(leader, b"INCR", b"n") == 1
    follower = next(rt for rt in net.nodes.values() if rt is not leader)
    deadline = time.monotonic() + 5
    while True:  # the follower knows the leader's client address (hello, node registry)
        reply = await call(follower, b"GET", b"k")
        if isinstance(reply, ErrorReply) and reply.message.startswith("MOVED"):
            break
        assert time.monotonic() < deadline, reply
        await asyncio.sleep(0.01)
    assert reply == ErrorReply(f"MOVED 7629 {leader.settings.client_address}")


async def test_a_new_leader_keeps_every_acknowledged_write(
    cluster: tuple[Net, dict[int, MemoryEngine]],
) -> None:
    net, _engines = cluster
    leader = await wait_leader(net)
    for i in range(120):  # past the snapshot interval: compaction runs too
        assert await call(leader, b"SET", b"key%d" % i, b"%d" % i) == OK
    old = leader.node_id
    net.down.add(old)
    new = await wait_leader(net)
    assert new.node_id != old
    for i in range(120):
        assert await call(new, b"GET", b"key%d" % i) == b"%d" % i
    assert await call(new, b"SET", b"after", b"failover") == OK
    # The old leader comes back, catches up (by log or snapshot) and follows.
    net.down.clear()
    back = net.nodes[old]
    deadline = time.monotonic() + 5
    while back.replica().applied_index < new.replica().applied_index:
        assert time.monotonic() < deadline, "the old leader did not catch up"
        await asyncio.sleep(0.01)
    assert not back.replica().is_leader or back is new
