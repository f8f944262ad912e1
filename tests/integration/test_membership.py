"""Membership: a new node joins as a learner, is promoted once caught up; a node leaves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from redis.cluster import RedisCluster

from shardkv.core.cluster.shardmap import NODE_REMOVED, ShardMap
from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_cluster import Cluster


def status(node: ServerProcess) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/v1/status", timeout=5) as r:
        data: dict[str, object] = json.load(r)
        return data


def placement_map(node: ServerProcess) -> ShardMap:
    """The map ``node`` applied from the placement group."""
    raw = status(node)["shard_map"]
    assert isinstance(raw, str)
    return ShardMap.decode(raw.encode())


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_add_a_fourth_node_then_remove_an_original_one(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")  # one shard: member add works on one-shard clusters
    newcomer: ServerProcess | None = None
    try:
        cluster.start()
        leader = cluster.leader()
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[leader].port)
        for i in range(500):
            rc.set(f"k{i}", i)
        peer4 = free_port()
        members = ",".join(
            [f"{i}=127.0.0.1:{p}" for i, p in cluster.peer_ports.items()] + [f"4=127.0.0.1:{peer4}"]
        )
        newcomer = ServerProcess(
            tmp_path / "c" / "node-4",
            "--node-id",
            "4",
            "--peer-port",
            str(peer4),
            "--initial-cluster",
            members,
            "--join-existing",
        ).start()
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in cluster.nodes.values())
        added = subprocess.run(
            [
                sys.executable,
                "-m",
                "shardkv",
                "member",
                "add",
                "--id",
                "4",
                "--peer-address",
                f"127.0.0.1:{peer4}",
                "--admin",
                admins,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        st = status(cluster.nodes[leader])
        assert st["voters"] == [1, 2, 3, 4]
        deadline = time.monotonic() + 10
        while status(newcomer)["applied"] < st["commit"]:  # type: ignore[operator]
            assert time.monotonic() < deadline, "the new node did not catch up"
            time.sleep(0.05)

        # The placement group records the change (new epoch, registered addresses), and
        # the newcomer follows group 0 like every node: its copy of the map says so too.
        def newcomer_placed() -> bool:
            maps = [placement_map(n) for n in (*cluster.nodes.values(), newcomer)]
            m = maps[-1]
            return (
                all(x.encode() == m.encode() for x in maps)
                and m.shards[1].replicas[-1] == 4
                and m.shards[1].epoch == 2
                and m.nodes[4].client_address == f"127.0.0.1:{newcomer.port}"
                and m.nodes[4].admin_address == f"127.0.0.1:{newcomer.admin_port}"
            )

        eventually(newcomer_placed, "the map did not record node 4 on every node")
        eventually(
            lambda: 4 in status(newcomer)["placement"]["voters"],  # type: ignore[index]
            "node 4 did not become a voter of the placement group",
        )

        victim = next(i for i in cluster.nodes if i != leader)
        removed = subprocess.run(
            [
                sys.executable,
                "-m",
                "shardkv",
                "member",
                "remove",
                "--id",
                str(victim),
                "--admin",
                admins,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert victim not in status(cluster.nodes[leader])["voters"]  # type: ignore[operator]
        eventually(
            lambda: placement_map(cluster.nodes[leader]).nodes[victim].state == NODE_REMOVED,
            "the removed node is not marked removed in the map",
        )
        nodes_text = rc.execute_command("CLUSTER NODES", target_nodes=RedisCluster.RANDOM)
        assert f":{cluster.nodes[victim].port}@" not in str(nodes_text)
        eventually(
            lambda: victim not in status(cluster.nodes[leader])["placement"]["voters"],  # type: ignore[index]
            "the removed node is still a voter of the placement group",
        )
        cluster.nodes[victim].stop()
        # Three voters remain (the newcomer among them): writes still commit.
        assert rc.set("after", "membership") and rc.get("after") == b"membership"
        assert rc.get("k499") == b"499"
    finally:
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()
