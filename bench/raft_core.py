"""Throughput of the pure Raft core: committed entries per second through a 3-node
in-memory cluster, all messages delivered synchronously, on one core.

Measures only the consensus core (RawNode + MemoryStorage + Python-level message passing):
no serialization, no network, no fsync. Two driving styles:

- ``lockstep``: propose a batch, then deliver and process until the cluster is quiet
  (every batch is committed and applied on all three nodes before the next one).
- ``pipelined``: like the node runtime's loop: each iteration proposes one batch, then
  every node handles one Ready and every queued message is delivered once; batches
  overlap in flight.

Usage: ``python bench/raft_core.py [--seconds 2] [--batches 1,10,100] [--payload-bytes 100]``
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from shardkv.core.raft import Config, ConfState, MemoryStorage, Message, RawNode, Role

NODE_IDS = (1, 2, 3)


class Cluster:
    def __init__(self) -> None:
        conf = ConfState.of(NODE_IDS)
        self.storages = {i: MemoryStorage.bootstrap(conf) for i in NODE_IDS}
        self.nodes = {
            i: RawNode(
                Config(node_id=i, group_id=1, max_inflight_messages=1024),
                self.storages[i],
                random.Random(i),
            )
            for i in NODE_IDS
        }
        self.queue: list[Message] = []
        self.applied = dict.fromkeys(NODE_IDS, 0)

    def handle_ready(self) -> bool:
        worked = False
        for node_id, node in self.nodes.items():
            if not node.has_ready():
                continue
            worked = True
            rd = node.ready()
            self.queue.extend(rd.messages)
            self.storages[node_id].persist_ready(rd)
            self.queue.extend(rd.messages_after_persist)
            if rd.committed_entries:
                self.applied[node_id] = rd.committed_entries[-1].index
            node.advance(rd)
        return worked

    def deliver(self) -> bool:
        if not self.queue:
            return False
        queue, self.queue = self.queue, []
        nodes = self.nodes
        for m in queue:
            nodes[m.to].step(m)
        return True

    def settle(self) -> None:
        while self.handle_ready() | self.deliver():
            pass

    def elect(self) -> RawNode:
        self.nodes[1].campaign()
        self.settle()
        leader = self.nodes[1]
        assert leader.role is Role.LEADER
        return leader

    def compact(self) -> None:
        """Keep memory flat during long runs: snapshot and compact every node."""
        for node_id, node in self.nodes.items():
            storage = self.storages[node_id]
            applied = self.applied[node_id]
            if applied - storage.first_index() > 100_000:
                storage.create_snapshot(applied, node.conf_state(), b"")
                storage.compact(applied)


def run_lockstep(batch: int, payload: bytes, seconds: float) -> tuple[int, float]:
    cluster = Cluster()
    leader = cluster.elect()
    proposals = [payload] * batch
    start_index = cluster.applied[1]
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    rounds = 0
    while True:
        leader.propose_many(proposals)
        cluster.settle()
        rounds += 1
        if rounds % 64 == 0:
            cluster.compact()
            if time.perf_counter() >= deadline:
                break
    elapsed = time.perf_counter() - started
    committed = min(cluster.applied.values()) - start_index
    return committed, elapsed


def run_pipelined(batch: int, payload: bytes, seconds: float) -> tuple[int, float]:
    cluster = Cluster()
    leader = cluster.elect()
    proposals = [payload] * batch
    start_index = cluster.applied[1]
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    iterations = 0
    while True:
        leader.propose_many(proposals)
        cluster.handle_ready()
        cluster.deliver()
        iterations += 1
        if iterations % 64 == 0:
            cluster.compact()
            if time.perf_counter() >= deadline:
                break
    cluster.settle()
    elapsed = time.perf_counter() - started
    committed = min(cluster.applied.values()) - start_index
    return committed, elapsed


MODES: dict[str, Callable[[int, bytes, float], tuple[int, float]]] = {
    "lockstep": run_lockstep,
    "pipelined": run_pipelined,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each run")
    parser.add_argument("--batches", default="1,10,100", help="comma-separated batch sizes")
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--modes", default="lockstep,pipelined")
    args = parser.parse_args()
    payload = bytes(args.payload_bytes)
    print(f"3-node in-memory cluster, {args.payload_bytes}-byte entries, one core")
    print(f"{'mode':<10} {'batch':>6} {'entries':>10} {'seconds':>8} {'entries/s':>12}")
    for mode in args.modes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            committed, elapsed = MODES[mode](batch, payload, args.seconds)
            rate = committed / elapsed
            print(f"{mode:<10} {batch:>6} {committed:>10} {elapsed:>8.2f} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
