"""PeerTransport between real gRPC servers on 127.0.0.1, two or three per test, on uvloop.

Each test runs a scenario on its own uvloop with a hard deadline. Waiting is always polling
a condition with a deadline (`eventually`); a claim that something did NOT arrive is made
after a later marker message on the same path did arrive (delivery is in order per sender).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import uvloop
from prometheus_client import CollectorRegistry

from shardkv.cli.certs import init_ca, issue_node
from shardkv.core.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from shardkv.transport import PeerTLS, PeerTransport, SnapshotSendError, codec
from shardkv.transport.identity import DEFAULT_CLUSTER_ID, identity_metadata
from shardkv.transport.metrics import TransportCollector
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc
from shardkv.transport.snapshot import iter_chunks

SCENARIO_TIMEOUT_S = 20.0
WAIT_S = 5.0


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(SCENARIO_TIMEOUT_S):
            await scenario

    uvloop.run(bounded())


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for: {what}")
        await asyncio.sleep(0.005)


@dataclass
class Inbox:
    """What one node's transport delivered: every on_messages call, in order."""

    calls: list[tuple[int, list[Message]]] = field(default_factory=list)
    snapshots: list[tuple[int, Message]] = field(default_factory=list)
    snapshot_status: list[tuple[int, int, bool]] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)

    def on_messages(self, from_node: int, messages: list[Message]) -> None:
        self.calls.append((from_node, messages))

    def on_snapshot(self, from_node: int, message: Message) -> None:
        self.snapshots.append((from_node, message))

    def on_snapshot_status(self, to: int, group_id: int, ok: bool) -> None:
        self.snapshot_status.append((to, group_id, ok))

    def on_peer_unreachable(self, node_id: int) -> None:
        self.unreachable.append(node_id)

    @property
    def messages(self) -> list[Message]:
        return [m for _, batch in self.calls for m in batch]


def make(node_id: int, inbox: Inbox, port: int = 0, **kwargs: Any) -> PeerTransport:
    kwargs.setdefault("backoff_initial_s", 0.02)
    kwargs.setdefault("backoff_max_s", 0.2)
    kwargs.setdefault("rng", random.Random(node_id))
    return PeerTransport(
        node_id,
        f"127.0.0.1:{port}",
        {},
        on_messages=inbox.on_messages,
        on_snapshot=inbox.on_snapshot,
        on_snapshot_status=inbox.on_snapshot_status,
        on_peer_unreachable=inbox.on_peer_unreachable,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def started(*transports: PeerTransport) -> AsyncIterator[None]:
    try:
        for t in transports:
            await t.start()
        yield
    finally:
        for t in transports:
            await t.stop(grace_s=0.2)


def connect(*transports: PeerTransport) -> None:
    """Make every started transport a peer of every other."""
    for a in transports:
        for b in transports:
            if a is not b:
                a.add_peer(b.node_id, b.address)


def app(to: int, from_: int, index: int, group: int = 1) -> Message:
    return Message(
        MessageType.APP,
        group,
        to,
        from_,
        term=2,
        log_term=2,
        index=index - 1,
        entries=(Entry(2, index, EntryType.NORMAL, b"v%d" % index),),
        commit=index - 1,
    )


async def dead_port() -> int:
    """A port a transport could bind but nobody listens on (a peer that is down)."""
    probe = make(99, Inbox())
    await probe.start()
    port = probe.port
    await probe.stop(grace_s=0)
    return port


# --- delivery ---------------------------------------------------------------------------------


def test_one_send_is_one_stream_message_per_peer_and_arrives_in_order() -> None:
    async def scenario() -> None:
        ia, ib, ic = Inbox(), Inbox(), Inbox()
        a, b, c = make(1, ia), make(2, ib), make(3, ic)
        async with started(a, b, c):
            connect(a, b, c)
            to_b = [app(2, 1, i, group=i % 3) for i in range(1, 201)]
            to_c = [
                Message(MessageType.HEARTBEAT, g, 3, 1, term=2, commit=5, context=b"rq")
                for g in range(50)
            ]
            # One loop iteration's output, destinations interleaved, in two send() calls.
            a.send([m for pair in zip(to_b[:50], to_c, strict=True) for m in pair])
            a.send(to_b[50:150])
            await eventually(lambda: len(ib.messages) == 150, "B got the first iteration")
            await eventually(lambda: len(ic.messages) == 50, "C got its share")
            a.send(to_b[150:])  # a later iteration
            await eventually(lambda: len(ib.messages) == 200, "B got the second iteration")

            assert ib.messages == to_b
            assert ic.messages == to_c
            assert {frm for frm, _ in ib.calls + ic.calls} == {1}
            # One stream message per destination per iteration, delivered as one call.
            assert [len(batch) for _, batch in ib.calls] == [150, 50]
            assert a.peer_stats()[2].sent_batches == 2
            assert a.peer_stats()[3].sent_batches == 1
            assert a.peer_stats()[2].dropped_messages == 0
            assert b.stats().received_messages == 200

    run(scenario())


def test_messages_for_unknown_nodes_are_dropped_and_counted() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a, b = make(1, ia), make(2, ib)
        async with started(a, b):
            connect(a, b)
            a.send([app(7, 1, 1), app(2, 1, 1)])
            await eventually(lambda: len(ib.messages) == 1, "B got its message")
            assert a.stats().dropped_unknown_peer == 1

    run(scenario())


def test_a_peer_that_was_down_gets_later_messages_once_it_starts() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        port = await dead_port()
        a = make(1, ia)
        async with started(a):
            a.add_peer(2, f"127.0.0.1:{port}")
            a.send([app(2, 1, 1)])
            await eventually(
                lambda: a.peer_stats()[2].connect_failures >= 2, "A retried the dead peer"
            )
            assert not a.is_connected(2)
            await eventually(lambda: 2 in ia.unreachable, "A reported node 2 unreachable")

            b = make(2, ib, port=port)
            async with started(b):
                await eventually(lambda: a.is_connected(2), "A reconnected with backoff")
                a.send([app(2, 1, 2)])
                await eventually(lambda: app(2, 1, 2) in ib.messages, "the later message")
                # What waited in the queue goes first: order holds across the outage.
                assert ib.messages == [app(2, 1, 1), app(2, 1, 2)]
                stats = a.peer_stats()[2]
                assert stats.connects == 1 and stats.dropped_messages == 0

    run(scenario())


def test_a_restarted_peer_is_reconnected_to() -> None:
    async def scenario() -> None:
        ia, ib, ib2 = Inbox(), Inbox(), Inbox()
        a, b = make(1, ia), make(2, ib)
        async with started(a, b):
            connect(a, b)
            a.send([app(2, 1, 1)])
            await eventually(lambda: len(ib.messages) == 1, "first delivery")
            port = b.port
            await b.stop(grace_s=0)
            await eventually(lambda: not a.is_connected(2), "A noticed B went away")
            b2 = make(2, ib2, port=port)
            async with started(b2):
                await eventually(lambda: a.is_connected(2), "A reconnected to the new B")
                a.send([app(2, 1, 2)])
                await eventually(lambda: ib2.messages == [app(2, 1, 2)], "delivery to new B")
                assert a.peer_stats()[2].connects == 2
                assert a.peer_stats()[2].disconnects == 1

    run(scenario())


def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        port = await dead_port()
        a = make(1, ia, max_queue_messages=10)
        async with started(a):
            a.add_peer(2, f"127.0.0.1:{port}")
            for i in range(1, 26):
                a.send([app(2, 1, i)])
            assert a.queue_depth(2) == 10
            stats = a.peer_stats()[2]
            assert stats.dropped_overflow == 15 and stats.queued_messages == 10
            assert stats.dropped_messages == 15

            b = make(2, ib, port=port)
            async with started(b):
                await eventually(lambda: len(ib.messages) == 10, "the queue drained into B")
                assert ib.messages == [app(2, 1, i) for i in range(16, 26)], "newest kept"
                assert a.queue_depth(2) == 0

    run(scenario())


def test_drops_and_queue_depth_are_exported_as_prometheus_metrics() -> None:
    async def scenario() -> None:
        port = await dead_port()
        a = make(1, Inbox(), max_queue_messages=4)
        registry = CollectorRegistry()
        registry.register(TransportCollector(a))
        async with started(a):
            a.add_peer(2, f"127.0.0.1:{port}")
            a.send([app(2, 1, i) for i in range(1, 8)])
            a.send([app(5, 1, 1)])
            value = registry.get_sample_value
            assert value("shardkv_peer_queue_messages", {"peer": "2"}) == 4
            assert value("shardkv_peer_connected", {"peer": "2"}) == 0
            labels = {"peer": "2", "reason": "overflow"}
            assert value("shardkv_peer_dropped_messages_total", labels) == 3
            assert (
                value("shardkv_transport_dropped_messages_total", {"reason": "unknown_peer"}) == 1
            )

    run(scenario())


def test_the_queue_byte_bound_also_drops_the_oldest() -> None:
    async def scenario() -> None:
        port = await dead_port()
        big = [
            Message(MessageType.APP, 1, 2, 1, entries=(Entry(1, i, data=b"x" * 1000),))
            for i in range(1, 11)
        ]
        a = make(
            1,
            Inbox(),
            max_queue_bytes=4000,
            max_message_bytes=2000,
            max_batch_bytes=2000,
            snapshot_chunk_bytes=1000,
        )
        async with started(a):
            a.add_peer(2, f"127.0.0.1:{port}")
            a.send(big)
            stats = a.peer_stats()[2]
            assert stats.queued_messages == 3 and stats.queued_bytes <= 4000
            assert stats.dropped_overflow == 7
            huge = Message(MessageType.APP, 1, 2, 1, entries=(Entry(1, 1, data=b"y" * 5000),))
            a.send([huge])
            assert a.peer_stats()[2].dropped_too_large == 1

    run(scenario())


def test_set_blocked_drops_traffic_both_ways_until_healed() -> None:
    async def scenario() -> None:
        ia, ib, ic = Inbox(), Inbox(), Inbox()
        a, b, c = make(1, ia), make(2, ib), make(3, ic)
        async with started(a, b, c):
            connect(a, b, c)
            a.send([app(2, 1, 1)])
            b.send([app(1, 2, 1)])
            await eventually(lambda: len(ia.messages) == len(ib.messages) == 1, "warm streams")

            a.set_blocked({2})
            a.send([app(2, 1, 2), app(3, 1, 2)])  # to B: dropped; to C: unaffected
            b.send([app(1, 2, 2)])  # B is not blocked: it sends, A drops it on arrival
            await eventually(lambda: a.stats().dropped_inbound_blocked == 1, "A dropped B's")
            await eventually(lambda: len(ic.messages) == 1, "C still reachable from A")
            assert a.peer_stats()[2].dropped_blocked == 1

            a.set_blocked(set())
            a.send([app(2, 1, 3)])
            b.send([app(1, 2, 3)])
            await eventually(lambda: len(ia.messages) == 2 and len(ib.messages) == 2, "healed")
            # The markers arrived right after the first messages: nothing blocked leaked.
            assert ib.messages == [app(2, 1, 1), app(2, 1, 3)]
            assert ia.messages == [app(1, 2, 1), app(1, 2, 3)]

    run(scenario())


def test_a_node_answering_with_another_id_is_not_sent_to() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a, b = make(1, ia), make(2, ib)
        async with started(a, b):
            a.add_peer(3, b.address)  # misconfigured: node 2 listens there
            a.send([app(3, 1, 1)])
            await eventually(
                lambda: a.peer_stats()[3].connect_failures >= 2, "A refused the wrong node"
            )
            assert not a.is_connected(3) and ib.calls == []

    run(scenario())


def test_remove_and_re_add_a_peer_with_a_new_address() -> None:
    async def scenario() -> None:
        ia, ib, ib2 = Inbox(), Inbox(), Inbox()
        a, b = make(1, ia), make(2, ib)
        async with started(a, b):
            connect(a, b)
            a.send([app(2, 1, 1)])
            await eventually(lambda: len(ib.messages) == 1, "delivery")
            a.remove_peer(2)
            assert 2 not in a.peers()
            a.send([app(2, 1, 2)])
            assert a.stats().dropped_unknown_peer == 1

            b2 = make(2, ib2)
            async with started(b2):
                a.add_peer(2, b.address)
                a.add_peer(2, b2.address)  # moved: reconnect to the new address
                a.send([app(2, 1, 3)])
                await eventually(lambda: app(2, 1, 3) in ib2.messages + ib.messages, "sent")
                await eventually(lambda: a.peers()[2] == b2.address, "address updated")
                a.send([app(2, 1, 4)])
                await eventually(lambda: app(2, 1, 4) in ib2.messages, "sent to the new B")

    run(scenario())


def test_a_newer_stream_from_a_sender_supersedes_the_older_one() -> None:
    """Per-sender order across reconnects: once node 5 opened a new stream, whatever still
    arrives on its old one is ignored (and that stream is ended), never interleaved."""

    async def scenario() -> None:
        ib = Inbox()
        b = make(2, ib)
        async with started(b), grpc.aio.insecure_channel(b.address) as channel:
            stub = pb_grpc.RaftStub(channel)

            def batch(index: int, to: int = 2) -> pb.MessageBatch:
                return codec.encode_batch(5, [app(to, 5, index)])

            as_node_5 = identity_metadata(DEFAULT_CLUSTER_ID, 5)
            old = stub.Stream(metadata=as_node_5)
            assert (await old.read()).node_id == 2
            await old.write(batch(1))
            await eventually(lambda: len(ib.messages) == 1, "old stream delivers")
            new = stub.Stream(metadata=as_node_5)
            assert (await new.read()).node_id == 2
            await new.write(batch(2))
            await eventually(lambda: len(ib.messages) == 2, "new stream delivers")
            await old.write(batch(3))  # a straggler on the old stream
            assert await old.read() is grpc.aio.EOF, "the old stream is ended"
            await new.write(batch(4, to=9))  # misrouted: dropped and counted
            await new.write(batch(5))
            await eventually(lambda: len(ib.messages) == 3, "new stream still delivers")
            assert ib.messages == [app(2, 5, 1), app(2, 5, 2), app(2, 5, 5)]
            assert b.stats().streams_superseded == 1 and b.stats().dropped_misrouted == 1
            new.cancel()

    run(scenario())


# --- snapshots ----------------------------------------------------------------------------------


def snapshot_message(size_bytes: int, to: int = 2, group: int = 5) -> Message:
    data = random.Random(size_bytes).randbytes(size_bytes)
    md = SnapshotMetadata(index=1000, term=4, conf_state=ConfState.of([1, 2, 3], [4]))
    return Message(MessageType.SNAP, group, to, 1, term=4, snapshot=Snapshot(md, data))


def test_a_multi_megabyte_snapshot_arrives_whole_in_chunks() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a = make(1, ia, snapshot_chunk_bytes=256 << 10)
        b = make(2, ib)
        async with started(a, b):
            connect(a, b)
            snap = snapshot_message(5 << 20)
            heartbeat = Message(MessageType.HEARTBEAT, 5, 2, 1, term=4)
            a.send([snap, heartbeat])  # the snapshot leaves the stream; the heartbeat doesn't
            await eventually(lambda: ia.snapshot_status == [(2, 5, True)], "success reported")
            assert ib.snapshots == [(1, snap)]
            assert heartbeat in ib.messages and snap not in ib.messages
            assert a.peer_stats()[2].snapshots_sent == 1
            assert b.stats().snapshots_received == 1
            # The direct API waits for the acknowledgement.
            assert await a.send_snapshot(snapshot_message(3 << 20, group=6)) == 3 << 20
            assert [m.group_id for _, m in ib.snapshots] == [5, 6]

    run(scenario())


def test_an_oversized_snapshot_is_refused_and_reported_failed() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a = make(1, ia)
        b = make(2, ib, max_snapshot_bytes=1 << 20)
        async with started(a, b):
            connect(a, b)
            with pytest.raises(SnapshotSendError) as info:
                await a.send_snapshot(snapshot_message(2 << 20))
            assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            a.send([snapshot_message(2 << 20, group=8)])
            await eventually(lambda: ia.snapshot_status == [(2, 8, False)], "failure reported")
            assert ib.snapshots == [] and b.stats().snapshots_refused == 2

    run(scenario())


def test_snapshot_sends_beyond_the_per_peer_bound_are_reported_failed_at_once() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a = make(1, ia, max_pending_snapshots_per_peer=1)
        b = make(2, ib)
        async with started(a, b):
            connect(a, b)
            a.send([snapshot_message(100_000, group=1), snapshot_message(100_000, group=2)])
            await eventually(lambda: len(ia.snapshot_status) == 2, "both outcomes reported")
            assert ia.snapshot_status == [(2, 2, False), (2, 1, True)]
            assert a.stats().dropped_snapshot_backlog == 1
            assert [m.group_id for _, m in ib.snapshots] == [1]

    run(scenario())


def test_the_sender_is_acknowledged_only_once_the_node_took_the_snapshot() -> None:
    async def scenario() -> None:
        called = asyncio.Event()
        installed = asyncio.Event()

        async def install(from_node: int, message: Message) -> None:
            called.set()
            await installed.wait()  # e.g. written to disk off the loop

        def refuse(from_node: int, message: Message) -> None:
            raise RuntimeError("disk full")

        a = make(1, Inbox())
        b = PeerTransport(
            2, "127.0.0.1:0", {}, on_messages=Inbox().on_messages, on_snapshot=install
        )
        c = PeerTransport(3, "127.0.0.1:0", {}, on_messages=Inbox().on_messages, on_snapshot=refuse)
        async with started(a, b, c):
            connect(a, b, c)
            sending = asyncio.ensure_future(a.send_snapshot(snapshot_message(50_000)))
            await asyncio.wait_for(called.wait(), WAIT_S)
            assert not sending.done() and b.stats().snapshots_received == 0
            installed.set()
            assert await sending == 50_000 and b.stats().snapshots_received == 1
            with pytest.raises(SnapshotSendError) as info:
                await a.send_snapshot(snapshot_message(50_000, to=3))
            assert info.value.code is grpc.StatusCode.INTERNAL
            assert c.stats().snapshots_refused == 1

    run(scenario())


def test_a_corrupted_chunk_is_rejected_and_nothing_is_installed() -> None:
    async def scenario() -> None:
        ib = Inbox()
        b = make(2, ib)
        async with started(b):
            chunks = list(iter_chunks(snapshot_message(3 << 20), 1 << 20))
            assert len(chunks) == 3
            chunks[1].data = chunks[1].data[:100] + b"\x00" + chunks[1].data[101:]
            async with grpc.aio.insecure_channel(b.address) as channel:
                stub = pb_grpc.RaftStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.SendSnapshot(
                        iter(chunks), metadata=identity_metadata(DEFAULT_CLUSTER_ID, 1)
                    )
            assert info.value.code() is grpc.StatusCode.DATA_LOSS
            assert "checksum" in (info.value.details() or "")
            assert ib.snapshots == [] and b.stats().snapshots_refused == 1

    run(scenario())


def test_snapshots_to_a_blocked_peer_fail_fast() -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a, b = make(1, ia), make(2, ib)
        async with started(a, b):
            connect(a, b)
            a.set_blocked({2})
            a.send([snapshot_message(1000, group=3)])
            await eventually(lambda: ia.snapshot_status == [(2, 3, False)], "failure reported")
            # And a blocked receiver refuses one in flight towards it.
            a.set_blocked(set())
            b.set_blocked({1})
            with pytest.raises(SnapshotSendError) as info:
                await a.send_snapshot(snapshot_message(1000))
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
            assert ib.snapshots == []

    run(scenario())


# --- admin ---------------------------------------------------------------------------------------


def test_admin_status_and_partition_injection_is_opt_in() -> None:
    async def scenario() -> None:
        ia, ib, ic = Inbox(), Inbox(), Inbox()
        a = make(1, ia, enable_fault_injection=True)
        b, c = make(2, ib), make(3, ic)
        async with started(a, b, c):
            connect(a, b, c)
            await eventually(lambda: a.is_connected(2) and a.is_connected(3), "connected")
            async with grpc.aio.insecure_channel(a.address) as channel:
                admin = pb_grpc.AdminStub(channel)
                me = identity_metadata(DEFAULT_CLUSTER_ID, 9)
                status = await admin.Status(pb.StatusRequest(), metadata=me)
                assert status.node_id == 1
                assert [(p.node_id, p.connected) for p in status.peers] == [(2, True), (3, True)]
                reply = await admin.SetPartition(
                    pb.SetPartitionRequest(blocked_nodes=[3, 2]), metadata=me
                )
                assert list(reply.blocked_nodes) == [2, 3] and a.blocked == {2, 3}
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await admin.TransferLeader(
                        pb.TransferLeaderRequest(group_id=1, to_node=2), metadata=me
                    )
                assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
            async with grpc.aio.insecure_channel(b.address) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await pb_grpc.AdminStub(channel).SetPartition(
                        pb.SetPartitionRequest(blocked_nodes=[1]), metadata=me
                    )
                assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                assert b.blocked == frozenset()

    run(scenario())


# --- mutual TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA with certificates naming nodes 1 and 2 (127.0.0.1), and a stranger:
    node 4 of another CA."""
    d = tmp_path_factory.mktemp("peer-certs")
    init_ca(d / "ca", DEFAULT_CLUSTER_ID)
    for node in (1, 2):
        issue_node(d / "ca", node, ["127.0.0.1"])
    init_ca(d / "other-ca", DEFAULT_CLUSTER_ID)
    issue_node(d / "other-ca", 4, ["127.0.0.1"])
    return d


def tls(certs: Path, node: int, ca: str = "ca", issuer: str = "ca") -> PeerTLS:
    """Node ``node``'s certificate from ``issuer``'s directory, trusting ``ca``."""
    d = certs / issuer
    return PeerTLS(d / f"node-{node}.crt", d / f"node-{node}.key", certs / ca / "ca.crt")


def test_mutual_tls_delivers_between_nodes_of_the_cluster(certs: Path) -> None:
    async def scenario() -> None:
        ia, ib = Inbox(), Inbox()
        a = make(1, ia, tls=tls(certs, 1))
        b = make(2, ib, tls=tls(certs, 2))
        async with started(a, b):
            connect(a, b)
            a.send([app(2, 1, 1)])
            b.send([app(1, 2, 1)])
            await eventually(lambda: len(ia.messages) == len(ib.messages) == 1, "both ways")
            assert await a.send_snapshot(snapshot_message(300_000)) == 300_000

    run(scenario())


def test_mutual_tls_refuses_peers_without_a_cluster_client_cert(certs: Path) -> None:
    async def scenario() -> None:
        ib = Inbox()
        b = make(2, ib, tls=tls(certs, 2))
        plain = make(3, Inbox())
        stranger = make(4, Inbox(), tls=tls(certs, 4, issuer="other-ca"))
        async with started(b, plain, stranger):
            plain.add_peer(2, b.address)
            stranger.add_peer(2, b.address)
            plain.send([app(2, 3, 1)])
            stranger.send([app(2, 4, 1)])

            # A client that trusts the CA but presents no certificate.
            ca = (certs / "ca" / "ca.crt").read_bytes()
            creds = grpc.ssl_channel_credentials(root_certificates=ca)
            async with grpc.aio.secure_channel(b.address, creds) as channel:
                call = pb_grpc.RaftStub(channel).Stream()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call.read()
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE

            await eventually(
                lambda: (
                    plain.peer_stats()[2].connect_failures >= 2
                    and stranger.peer_stats()[2].connect_failures >= 2
                ),
                "plaintext and foreign-CA peers keep failing",
            )
            assert not plain.is_connected(2) and not stranger.is_connected(2)
            assert ib.calls == [] and b.stats().received_batches == 0

    run(scenario())


def refused_by_node_2(
    sender: PeerTransport, reason: str, tls: PeerTLS | None = None
) -> PeerTransport:
    """``sender`` sends node 2 (with ``tls``) a message: node 2 refuses the call for
    ``reason`` and delivers nothing. Returns node 2 (stopped)."""
    inbox = Inbox()
    receiver = make(2, inbox, tls=tls)

    async def scenario() -> None:
        async with started(receiver, sender):
            sender.add_peer(2, receiver.address)
            sender.send([app(2, sender.node_id, 1)])
            await eventually(
                lambda: receiver.stats().peer_refusals.get(reason, 0) >= 1, f"refused: {reason}"
            )
            assert inbox.messages == []

    run(scenario())
    return receiver


def test_a_peer_of_another_cluster_or_of_none_is_refused_and_counted() -> None:
    b = refused_by_node_2(make(1, Inbox(), cluster_id="another-cluster"), "other_cluster")
    registry = CollectorRegistry()
    registry.register(TransportCollector(b))
    assert registry.get_sample_value("shardkv_peer_refusals_total", {"reason": "other_cluster"})

    async def without_identity() -> None:
        c = make(3, Inbox())
        async with started(c), grpc.aio.insecure_channel(c.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.AdminStub(channel).Status(pb.StatusRequest())
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert c.stats().peer_refusals["no_identity"] == 1

    run(without_identity())


def test_a_node_cannot_speak_as_another_node_with_its_own_certificate(certs: Path) -> None:
    """Node 1's certificate is valid for the cluster, but a process holding it that claims
    to be node 3 is refused: the certificate names node 1."""
    impostor = make(3, Inbox(), tls=tls(certs, 1))
    refused_by_node_2(impostor, "node_id_mismatch", tls(certs, 2))


def test_a_certificate_of_another_cluster_is_refused_even_from_the_same_ca(
    certs: Path,
) -> None:
    """The CA signed a certificate for node 1 of cluster "other": it passes TLS, but the
    identity it carries is of another cluster."""
    same_ca = certs / "same-ca-other-cluster"
    shutil.copytree(certs / "ca", same_ca, dirs_exist_ok=True)
    issue_node(same_ca, 1, ["127.0.0.1"], cluster_id="other", days=2)
    foreign = make(1, Inbox(), tls=tls(certs, 1, issuer="same-ca-other-cluster"))
    refused_by_node_2(foreign, "other_cluster", tls(certs, 2))
