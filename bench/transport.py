"""Raft messages per second between two `PeerTransport`s on loopback.

Node 1 sends MsgApp messages (one 120-byte entry each) to node 2 in loop iterations of
``k`` messages (``send()`` called once per iteration, as the node runtime does), for k in
``--batches``. ``max_batch_bytes`` is set so that a stream message holds at most k Raft
messages: the figure for k is what one stream message of k Raft messages sustains, with no
extra coalescing. Node 2 acknowledges what it received (a MsgHeartbeatResp carrying its
running count, itself batched), and node 1 keeps at most ``--window`` messages
unacknowledged so nothing is dropped by the bounded queue (drops are reported; they should
be 0).

By default node 2 runs in a child process (its own event loop and core, as in a real
cluster); ``--inproc`` runs both on one loop.

Usage: ``python bench/transport.py [--seconds 3] [--batches 1,10,100] [--entry-bytes 120]
[--entries 1] [--window 4000] [--inproc]`` (``--entries``: entries per MsgApp).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import uvloop

from shardkv.core.raft.types import Entry, Message, MessageType
from shardkv.observability.logging import configure_logging
from shardkv.transport import PeerTransport
from shardkv.transport.peer import estimated_size_bytes

SENDER, RECEIVER = 1, 2
GROUP = 1
ACK_EVERY_MESSAGES = 200


@dataclass
class Result:
    per_iteration: int
    seconds: float
    messages: int
    stream_messages: int
    dropped: int

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def stream_messages_per_s(self) -> float:
        return self.stream_messages / self.seconds


class Receiver:
    """Counts what arrives and acknowledges every ``ACK_EVERY_MESSAGES`` (acknowledging
    every batch would double the stream messages the bench pays for)."""

    def __init__(self) -> None:
        self.count = 0
        self.acked = 0
        self.transport: PeerTransport | None = None

    def on_messages(self, from_node: int, messages: list[Message]) -> None:
        self.count += len(messages)
        if self.count - self.acked < ACK_EVERY_MESSAGES:
            return
        self.acked = self.count
        assert self.transport is not None
        self.transport.send(
            [Message(MessageType.HEARTBEAT_RESP, GROUP, from_node, RECEIVER, index=self.count)]
        )


class Sender:
    def __init__(self) -> None:
        self.acked = 0
        self.progress = asyncio.Event()

    def on_messages(self, from_node: int, messages: list[Message]) -> None:
        self.acked = max(self.acked, messages[-1].index)
        self.progress.set()


def _ignore_snapshot(from_node: int, message: Message) -> None:
    pass


async def measure(
    transport: PeerTransport,
    sender: Sender,
    k: int,
    seconds: float,
    window: int,
    data: bytes,
    per_message: int,
) -> Result:
    # Raft messages are immutable: a pool reused round-robin costs no allocation here.
    pool = [
        Message(
            MessageType.APP,
            GROUP,
            RECEIVER,
            SENDER,
            term=1,
            log_term=1,
            index=i,
            entries=tuple(Entry(1, i * per_message + j, data=data) for j in range(per_message)),
            commit=i,
        )
        for i in range(k)
    ]
    before = transport.peer_stats()[RECEIVER]
    start_acked = sent = sender.acked
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        if sent - sender.acked + k > window:
            sender.progress.clear()
            try:
                await asyncio.wait_for(sender.progress.wait(), 5.0)
            except TimeoutError:
                break
            continue
        transport.send(pool)
        sent += k
        await asyncio.sleep(0)  # one loop iteration: let the sender task and acks run
    elapsed = time.perf_counter() - start
    # Count only what was acknowledged in time (acks lag by < ACK_EVERY_MESSAGES, so
    # this errs low by well under 1%); then let the rest drain before the next size.
    delivered = sender.acked - start_acked
    after = transport.peer_stats()[RECEIVER]
    drain_deadline = time.perf_counter() + 5.0
    while sent - sender.acked >= ACK_EVERY_MESSAGES and time.perf_counter() < drain_deadline:
        sender.progress.clear()
        try:
            await asyncio.wait_for(sender.progress.wait(), 1.0)
        except TimeoutError:
            break
    return Result(
        per_iteration=k,
        seconds=elapsed,
        messages=delivered,
        stream_messages=after.sent_batches - before.sent_batches,
        dropped=after.dropped_messages - before.dropped_messages,
    )


async def wait_connected(transport: PeerTransport, node_id: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not transport.is_connected(node_id):
        if time.monotonic() > deadline:
            raise SystemExit(f"node {node_id} did not connect within {timeout_s} s")
        await asyncio.sleep(0.01)


async def run_receiver(peer_addr: str) -> None:
    receiver = Receiver()
    transport = PeerTransport(
        RECEIVER,
        "127.0.0.1:0",
        {SENDER: peer_addr},
        on_messages=receiver.on_messages,
        on_snapshot=_ignore_snapshot,
    )
    receiver.transport = transport
    await transport.start()
    print(transport.port, flush=True)
    # Runs until the parent closes our stdin.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await transport.stop(grace_s=0)


async def run(args: argparse.Namespace) -> list[Result]:
    data = b"x" * args.entry_bytes
    sender = Sender()
    results: list[Result] = []
    child: subprocess.Popen[str] | None = None
    local_receiver: PeerTransport | None = None
    for k in args.batches:
        probe = Message(
            MessageType.APP,
            GROUP,
            RECEIVER,
            SENDER,
            entries=tuple(Entry(1, 1, data=data) for _ in range(args.entries)),
        )
        transport = PeerTransport(
            SENDER,
            "127.0.0.1:0",
            {},
            on_messages=sender.on_messages,
            on_snapshot=_ignore_snapshot,
            max_batch_bytes=k * estimated_size_bytes(probe),
            max_queue_messages=max(args.window * 2, 4096),
        )
        await transport.start()
        if args.inproc:
            receiver = Receiver()
            local_receiver = PeerTransport(
                RECEIVER,
                "127.0.0.1:0",
                {SENDER: transport.address},
                on_messages=receiver.on_messages,
                on_snapshot=_ignore_snapshot,
            )
            receiver.transport = local_receiver
            await local_receiver.start()
            receiver_addr = local_receiver.address
        else:
            child = subprocess.Popen(
                [sys.executable, __file__, "--receiver-for", transport.address],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            receiver_addr = f"127.0.0.1:{child.stdout.readline().strip()}"
        sender.acked = 0
        transport.add_peer(RECEIVER, receiver_addr)
        try:
            await wait_connected(transport, RECEIVER, 10.0)
            await measure(transport, sender, k, args.warmup, args.window, data, args.entries)
            result = await measure(
                transport, sender, k, args.seconds, args.window, data, args.entries
            )
            results.append(result)
            print(
                f"{k:>4} per iteration: {result.messages_per_s:>10,.0f} Raft messages/s  "
                f"{result.stream_messages_per_s:>8,.0f} stream messages/s  "
                f"{result.messages_per_s * args.entries:>10,.0f} entries/s  "
                f"dropped {result.dropped}",
                flush=True,
            )
        finally:
            await transport.stop(grace_s=0)
            if local_receiver is not None:
                await local_receiver.stop(grace_s=0)
            if child is not None:
                assert child.stdin is not None
                child.stdin.close()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per size")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument(
        "--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100]
    )
    parser.add_argument("--entry-bytes", type=int, default=120)
    parser.add_argument("--entries", type=int, default=1, help="entries per Raft message")
    parser.add_argument("--window", type=int, default=4000, help="max unacknowledged messages")
    parser.add_argument("--inproc", action="store_true", help="both nodes on one event loop")
    parser.add_argument("--receiver-for", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging(log_level="warning")  # to stderr: stdout carries the child's port
    if args.receiver_for:
        uvloop.run(run_receiver(args.receiver_for))
        return
    mode = "one process" if args.inproc else "two processes"
    print(
        f"transport bench: {args.entries} x {args.entry_bytes}-byte entries per Raft message, "
        f"{mode}, {args.seconds} s per size"
    )
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
