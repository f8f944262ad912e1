"""The cluster places shards by itself: a node that joins receives its share of replicas
and leaders, and a node that dies has its replicas re-created on the live ones, while
every key stays readable. Real processes, real clients."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

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


def shardkv_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardkv", *args], capture_output=True, text=True, timeout=180
    )


def metric(node: ServerProcess, name: str) -> float:
    """The value of an unlabelled series in ``node``'s /metrics."""
    url = f"http://127.0.0.1:{node.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


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


def cluster_client(port: int, timeout_s: float = 30.0) -> RedisCluster:
    """A RedisCluster client, once the node's CLUSTER SLOTS covers every slot: right after
    start the scheduler moves replicas and leaders, and a shard in an election is briefly
    listed without a master (redis-py then refuses to start, as with Redis Cluster)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)
        except RedisClusterException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def write_keys(port: int) -> None:
    client = cluster_client(port)
    pipe = client.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.set(f"key:{i}", f"value:{i}")
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


def assert_every_key_reads_back(port: int) -> None:
    client = cluster_client(port)
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
            counts = [sum(1 for s in m.shards.values() if n in s.replicas) for n in m.nodes]
            spread = max(counts) - min(counts)
            return 8 <= held <= 10 and 2 <= leads(joined) <= 4 and spread <= 1

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
        moved = sum(1 for s in m.shards.values() if 4 in s.replicas)
        assert metric(joined, "shardkv_snapshot_bytes_installed") > 0
        everyone = (*cluster.nodes.values(), joined)
        assert sum(metric(n, "shardkv_placement_moves_finished") for n in everyone) >= moved
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
        # It stays in the cluster (a node back from a reboot gets replicas again) until
        # an operator removes it; with nothing left to drain that is immediate.
        assert shard_map(live[0]).nodes[victim].state == "up"
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in live)
        out = shardkv_cli("node", "remove", "--id", str(victim), "--admin", admins)
        assert out.returncode == 0, out.stdout + out.stderr
        assert shard_map(live[0]).nodes[victim].state == "removed"
    finally:
        cluster.stop()


def test_node_remove_drains_a_node_and_every_shard_keeps_three_replicas(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 4, shards=8)
    try:
        cluster.start()
        write_keys(cluster.nodes[1].port)
        leaving = 3
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in cluster.nodes.values())
        started = time.monotonic()
        out = shardkv_cli("node", "remove", "--id", str(leaving), "--admin", admins)
        assert out.returncode == 0, out.stdout + out.stderr
        print(f"drained in {time.monotonic() - started:.1f} s:\n{out.stdout}")
        assert f"node {leaving} is removed" in out.stdout
        m = shard_map(cluster.nodes[1])
        assert m.nodes[leaving].state == "removed"
        for shard in m.shards.values():
            assert len(shard.replicas) == 3 and leaving not in shard.replicas, shard
        assert_every_key_reads_back(cluster.nodes[1].port)
        # A second remove would leave 2 nodes for 3 replicas: refused, nothing changes.
        again = shardkv_cli("node", "remove", "--id", "4", "--admin", admins, "--no-wait")
        assert again.returncode != 0
        assert "would leave 2 nodes for 3 replicas" in again.stderr, again.stderr
        assert shard_map(cluster.nodes[1]).nodes[4].state == "up"
    finally:
        cluster.stop()


def test_rebalance_pause_holds_moves_and_resume_lets_them_finish(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=6)
    newcomer: ServerProcess | None = None
    try:
        cluster.start()
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in cluster.nodes.values())
        paused = shardkv_cli("rebalance", "pause", "--admin", admins)
        assert paused.returncode == 0, paused.stderr
        newcomer = ServerProcess(
            tmp_path / "c" / "node-new", "--peer-port", str(free_port()), "--join",
            f"127.0.0.1:{cluster.peer_ports[1]}",
        ).start(timeout_s=60)  # fmt: skip
        time.sleep(8)  # several scheduler rounds
        m = shard_map(cluster.nodes[1])
        assert m.rebalance_paused
        assert not any(4 in s.placed for s in m.shards.values()), m.shards
        status_out = shardkv_cli("rebalance", "status", "--admin", admins)
        assert "balancing: paused" in status_out.stdout, status_out.stdout + status_out.stderr
        resumed = shardkv_cli("rebalance", "resume", "--admin", admins)
        assert resumed.returncode == 0, resumed.stderr
        joined = newcomer
        eventually(
            lambda: (
                sum(1 for s in shard_map(cluster.nodes[1]).shards.values() if 4 in s.replicas) >= 4
            ),
            lambda: f"no moves after resume: {shard_map(cluster.nodes[1]).shards}",
            timeout_s=90,
        )
        waited = shardkv_cli("rebalance", "status", "--admin", admins, "--wait")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "balancing: on" in waited.stdout
        assert leads(joined) >= 1 or eventually(
            lambda: leads(joined) >= 1, lambda: "node 4 leads nothing", timeout_s=30
        )
    finally:
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()


def test_six_processes_labelled_as_three_hosts_never_keep_two_replicas_on_one_host(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "c", 6, shards=6)
    for i, node in cluster.nodes.items():
        node.extra += ["--labels", f"host=h{(i + 1) // 2}"]
        node.env["SHARDKV_DEAD_NODE_TIMEOUT_S"] = "10"
    try:
        cluster.start()
        write_keys(cluster.nodes[1].port)

        def spread(live: set[int]) -> bool:
            m = shard_map(cluster.nodes[min(live)])
            host = {n: info.label("host") for n, info in m.nodes.items()}
            return all(
                not s.target
                and len(s.replicas) == 3
                and set(s.replicas) <= live
                and len({host[n] for n in s.replicas}) == 3
                for s in m.shards.values()
            )

        everyone = set(cluster.nodes)
        took_s = eventually(
            lambda: spread(everyone),
            lambda: f"replicas share a host: {shard_map(cluster.nodes[1]).shards}",
            timeout_s=120,
        )
        print(f"spread over hosts {took_s:.1f} s after start")
        cluster.nodes[6].stop(signal.SIGKILL)
        took_s = eventually(
            lambda: spread(everyone - {6}),
            lambda: f"not repaired apart: {shard_map(cluster.nodes[1]).shards}",
            timeout_s=120,
        )
        print(f"repaired, still spread, {took_s:.1f} s after the kill")
        assert_every_key_reads_back(cluster.nodes[1].port)
    finally:
        cluster.stop()
