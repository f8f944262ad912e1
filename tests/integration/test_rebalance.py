"""The cluster places shards by itself: a node that joins receives its share of replicas
and leaders, and a node that dies has its replicas re-created on the live ones, while
every key stays readable. Real processes, real clients."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from redis.cluster import RedisCluster

from shardkv.core.cluster.shardmap import ShardMap
from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_cluster import Cluster

KEYS = 10_000


def status(node: ServerProcess) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/v1/status", timeout=5) as r:
        data: dict[str, object] = json.load(r)
        return data


def shard_map(node: ServerProcess) -> ShardMap:
    return ShardMap.decode(str(status(node)["shard_map"]).encode())


def leads(node: ServerProcess) -> int:
    return sum(1 for s in status(node)["shards"] if s["role"] == "leader")  # type: ignore[attr-defined,index]


def eventually(check: Callable[[], bool], what: Callable[[], str], timeout_s: float) -> float:
    """Seconds until ``check`` held; fails with ``what()`` after ``timeout_s``."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except OSError:  # a node busy or restarting: ask again
            pass
        assert time.monotonic() - started < timeout_s, what()
        time.sleep(0.5)


def write_keys(port: int) -> None:
    client = RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)
    pipe = client.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.set(f"key:{i}", f"value:{i}")
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


def assert_every_key_reads_back(port: int) -> None:
    client = RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)
    pipe = client.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.get(f"key:{i}")
    values = pipe.execute()
    client.close()
    missing = [i for i, v in enumerate(values) if v != f"value:{i}".encode()]
    assert not missing, f"{len(missing)} keys lost or wrong, e.g. key:{missing[0]}"


def test_a_joined_node_receives_its_share_of_replicas_and_leaders(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=12)
    newcomer: ServerProcess | None = None
    try:
        cluster.start()
        write_keys(cluster.nodes[1].port)
        seed = cluster.peer_ports[2]
        newcomer = ServerProcess(
            tmp_path / "c" / "node-new", "--peer-port", str(free_port()), "--join",
            f"127.0.0.1:{seed}",
        ).start(timeout_s=60)  # fmt: skip
        joined = newcomer
        assert status(joined)["node_id"] == 4

        def balanced() -> bool:
            m = shard_map(cluster.nodes[1])
            if any(s.target for s in m.shards.values()):
                return False
            held = sum(1 for s in m.shards.values() if 4 in s.replicas)
            return 8 <= held <= 10 and 2 <= leads(joined) <= 4

        took_s = eventually(
            balanced,
            lambda: (
                f"not balanced: {shard_map(cluster.nodes[1]).shards}, node 4 leads {leads(joined)}"
            ),
            timeout_s=120,
        )
        print(f"balanced {took_s:.1f} s after the join")
        m = shard_map(cluster.nodes[1])
        assert all(len(s.replicas) == 3 for s in m.shards.values())
        counts = {n: sum(1 for s in m.shards.values() if n in s.replicas) for n in m.nodes}
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        assert_every_key_reads_back(joined.port)
        # Replicas that moved away were deleted from the nodes they left.
        eventually(
            lambda: all(
                len(status(n)["shards"]) == counts[i]  # type: ignore[arg-type]
                for i, n in (*cluster.nodes.items(), (4, joined))
            ),
            lambda: "a node still hosts a replica it no longer holds",
            timeout_s=30,
        )
    finally:
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()


def test_a_dead_nodes_replicas_are_recreated_on_the_live_nodes(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 4, shards=8)
    for node in cluster.nodes.values():
        node.env["SHARDKV_DEAD_NODE_TIMEOUT_S"] = "10"
    try:
        cluster.start()
        write_keys(cluster.nodes[1].port)
        victim = 4
        cluster.nodes[victim].stop(signal.SIGKILL)
        live = [n for i, n in cluster.nodes.items() if i != victim]

        def repaired() -> bool:
            m = shard_map(live[0])
            return all(
                len(s.replicas) == 3 and victim not in s.replicas and not s.target
                for s in m.shards.values()
            )

        took_s = eventually(
            repaired,
            lambda: f"not repaired: {shard_map(live[0]).shards}",
            timeout_s=90,
        )
        print(f"every shard has 3 live replicas {took_s:.1f} s after the kill")
        assert_every_key_reads_back(live[0].port)
        # With its last replica gone, the dead node is out of the cluster.
        assert shard_map(live[0]).nodes[victim].state == "removed"
    finally:
        cluster.stop()
