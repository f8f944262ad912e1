"""Rebalancing holds back while the cluster is slow: with ``rebalance_max_p99_ms`` below
the write latency clients see, a node that joins under write load receives no replica
(``shardkv rebalance status`` says why); once the load stops, balancing resumes by itself.
Real processes, real clients."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from redis.cluster import RedisCluster

from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_cluster import Cluster
from tests.integration.test_rebalance import eventually, shard_map, shardkv_cli


def test_balancing_waits_while_a_nodes_write_p99_is_above_the_limit(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=6)
    for node in cluster.nodes.values():
        # Below any real write's latency: while writes flow, every node is "too slow".
        node.env["SHARDKV_REBALANCE_MAX_P99_MS"] = "0.01"
    newcomer: ServerProcess | None = None
    stop = threading.Event()

    def load() -> None:
        client = RedisCluster(host="127.0.0.1", port=cluster.nodes[1].port, socket_timeout=10)
        i = 0
        while not stop.is_set():
            client.set(f"load:{i % 500}", "v")
            i += 1
        client.close()

    writer = threading.Thread(target=load, daemon=True)
    try:
        cluster.start()
        writer.start()
        newcomer = ServerProcess(
            tmp_path / "c" / "node-new", "--peer-port", str(free_port()), "--join",
            f"127.0.0.1:{cluster.peer_ports[1]}",
        ).start(timeout_s=60)  # fmt: skip
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in cluster.nodes.values())

        def holding_back() -> bool:
            out = shardkv_cli("rebalance", "status", "--admin", admins)
            return "holding back" in out.stdout

        eventually(holding_back, lambda: "the scheduler never held back", timeout_s=30)
        time.sleep(8)  # several scheduler rounds under load
        held = sum(1 for s in shard_map(cluster.nodes[1]).shards.values() if 4 in s.placed)
        assert held == 0, f"node 4 received {held} replicas while the cluster was slow"

        stop.set()
        writer.join(timeout=30)

        def balanced() -> bool:
            m = shard_map(cluster.nodes[1])
            return sum(1 for s in m.shards.values() if 4 in s.replicas) >= 4

        took_s = eventually(
            balanced, lambda: f"not balanced after the load: {shard_map(cluster.nodes[1])}", 90
        )
        print(f"balancing resumed; node 4 holds its share {took_s:.1f} s after the load stopped")
    finally:
        stop.set()
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()
