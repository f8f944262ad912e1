"""Membership: a new node joins as a learner, is promoted once caught up; a node leaves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from redis.cluster import RedisCluster

from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_cluster import Cluster


def status(node: ServerProcess) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/v1/status", timeout=5) as r:
        data: dict[str, object] = json.load(r)
        return data


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
            "--join",
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
        cluster.nodes[victim].stop()
        # Three voters remain (the newcomer among them): writes still commit.
        assert rc.set("after", "membership") and rc.get("after") == b"membership"
        assert rc.get("k499") == b"499"
    finally:
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()
