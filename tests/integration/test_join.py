"""Joining through a seed: a node started with only ``--join`` (no id, no member list) is
given an id by the placement group, registered in the map on every node, follows the
placement group, redirects clients like any node, and restarts with its data dir alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from shardkv.core.cluster.shardmap import ShardMap
from tests.integration.harness import ServerProcess, free_port
from tests.integration.test_cluster import Cluster


def status(node: ServerProcess) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/v1/status", timeout=5) as r:
        data: dict[str, object] = json.load(r)
        return data


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_node_joins_through_a_follower_seed_and_restarts_with_its_data_dir_alone(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=4)
    newcomer: ServerProcess | None = None
    try:
        cluster.start()
        rc = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[1].port)
        for i in range(200):
            rc.set(f"k{i}", i)
        # The seed is a node that does not lead the placement group: it names the leader.
        placement_leader = status(cluster.nodes[1])["placement"]["leader"]  # type: ignore[index]
        seed = next(i for i in cluster.nodes if i != placement_leader)
        peer_port = free_port()
        newcomer = ServerProcess(
            tmp_path / "c" / "node-new",
            "--peer-port",
            str(peer_port),
            "--join",
            f"localhost:{cluster.peer_ports[seed]}",
        ).start(timeout_s=60)
        assert status(newcomer)["node_id"] == 4

        def registered_everywhere() -> bool:
            for node in (*cluster.nodes.values(), newcomer):
                m = ShardMap.decode(str(status(node)["shard_map"]).encode())
                info = m.nodes.get(4)
                if info is None or info.client_address != f"127.0.0.1:{newcomer.port}":
                    return False
                if info.peer_address != f"127.0.0.1:{peer_port}":
                    return False
            return True

        eventually(registered_everywhere, "node 4 is not in every node's map")
        eventually(
            lambda: 4 in status(cluster.nodes[1])["placement"]["voters"],  # type: ignore[index]
            "node 4 did not become a voter of the placement group",
        )
        # Whether or not the scheduler moved a replica of k7's shard here yet, a cluster
        # client that starts from the new node reads it (served, or redirected).
        via_newcomer = redis.RedisCluster(host="127.0.0.1", port=newcomer.port)
        assert via_newcomer.get("k7") == b"7"

        # `shardkv node list`, given one node, finds every node through the registry.
        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "shardkv",
                "node",
                "list",
                "--admin",
                f"127.0.0.1:{cluster.nodes[1].admin_port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr
        for node in (*cluster.nodes.values(), newcomer):
            assert f"127.0.0.1:{node.port}" in listed.stdout, listed.stdout
        assert "voters [1, 2, 3, 4]" in listed.stdout, listed.stdout

        # Restart with the data dir and ports only: same id, same map, no join again.
        newcomer.stop()
        newcomer = ServerProcess(
            newcomer.data_dir, "--peer-port", str(peer_port), port=newcomer.port
        ).start(timeout_s=60)
        assert status(newcomer)["node_id"] == 4
        eventually(
            lambda: (
                status(newcomer)["placement"]["applied"]  # type: ignore[index,operator]
                >= status(cluster.nodes[1])["placement"]["commit"]
            ),  # type: ignore[index]
            "the restarted node does not follow the placement group",
        )
        m = ShardMap.decode(str(status(newcomer)["shard_map"]).encode())
        assert sorted(m.nodes) == [1, 2, 3, 4]
    finally:
        cluster.stop()
        if newcomer is not None:
            newcomer.stop()


def test_join_refuses_a_data_dir_that_already_holds_data_and_changes_nothing(
    tmp_path: Path,
) -> None:
    standalone = ServerProcess(tmp_path / "node").start()
    try:
        redis.Redis(port=standalone.port).set("kept", "yes")
    finally:
        standalone.stop()
    joiner = ServerProcess(
        tmp_path / "node", "--peer-port", str(free_port()), "--join", "127.0.0.1:1"
    )
    joiner.start(wait=False)
    assert joiner.proc is not None
    assert joiner.proc.wait(timeout=60) == 1
    assert "already holds data" in joiner.log()
    joiner.stop()
    again = ServerProcess(tmp_path / "node").start()
    try:
        assert redis.Redis(port=again.port).get("kept") == b"yes"
    finally:
        again.stop()
