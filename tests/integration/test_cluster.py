"""A 3-node cluster of real processes: redirects, failover within seconds, catch-up."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.integration.harness import ServerProcess, free_port


def wait_healthy(node: ServerProcess, timeout_s: float = 30.0) -> None:
    """Until the node's /healthz says ok: it knows every shard's leader, so it routes."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{node.admin_port}/healthz"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if json.load(resp)["status"] == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"node on port {node.port} never became healthy"
        time.sleep(0.05)


class Cluster:
    """``size`` real server processes of one new cluster. ``shards`` defaults to 1: most
    tests here exercise one group's mechanics (failover, catch-up, seams); sharding has
    its own tests."""

    def __init__(self, root: Path, size: int = 3, *extra: str, shards: int = 1) -> None:
        self.peer_ports = {i: free_port() for i in range(1, size + 1)}
        members = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.peer_ports.items())
        self.nodes: dict[int, ServerProcess] = {}
        for i, peer in self.peer_ports.items():
            self.nodes[i] = ServerProcess(
                root / f"node-{i}",
                "--node-id",
                str(i),
                "--peer-port",
                str(peer),
                "--initial-cluster",
                members,
                "--shards",
                str(shards),
                *extra,
            )

    def start(self) -> None:
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready()
        for node in self.nodes.values():
            wait_healthy(node)

    def restart(self, i: int, env: dict[str, str] | None = None, wait: bool = True) -> None:
        """Start node i again on its disk and ports (``env``: see `ServerProcess.again`)."""
        self.nodes[i] = self.nodes[i].again(env).start(wait=wait)

    def restart_all(self) -> None:
        """Stop every node (SIGTERM), then start them all again on their disks and wait
        until each answers."""
        for i in self.nodes:
            self.nodes[i].stop()
        for i in self.nodes:
            self.restart(i, wait=False)
        for node in self.nodes.values():
            node.wait_ready()

    def leader(self, timeout_s: float = 10.0) -> int:
        """The node that reports leading shard 1 (the only shard unless --shards says)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, node in self.nodes.items():
                if node.proc is None or node.proc.poll() is not None:
                    continue
                url = f"http://127.0.0.1:{node.admin_port}/v1/status"
                try:
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        status = json.load(resp)
                except (urllib.error.URLError, OSError, ValueError):
                    continue
                shards = status.get("shards") or []
                if any(s["shard"] == 1 and s["role"] == "leader" for s in shards):
                    return i
            time.sleep(0.05)
        raise AssertionError("no leader")

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop(signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_any_node_redirects_to_the_leader_for_cluster_clients(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    plain = cluster.nodes[follower].client()
    deadline = time.monotonic() + 10
    while not plain.execute_command("CLUSTER", "SLOTS"):  # it learns the leader's address
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(
        redis.exceptions.MovedError, match=f"15495 127.0.0.1:{cluster.nodes[leader].port}"
    ):
        plain.set("a", "b")
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[follower].port)
    assert rc.set("a", "b") is True
    assert rc.get("a") == b"b"
    cli = subprocess.run(
        ["redis-cli", "-c", "-p", str(cluster.nodes[follower].port), "get", "a"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert cli.stdout.strip() == "b"


def test_writes_resume_within_3s_after_the_leader_is_killed_and_it_catches_up(
    cluster: Cluster,
) -> None:
    leader = cluster.leader()
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[leader].port)
    for i in range(200):
        rc.set(f"before-{i}", i)
    cluster.nodes[leader].stop(signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        new_leader = cluster.leader(timeout_s=5)
        if new_leader == leader:
            continue  # the survivors have not noticed yet
        try:
            cluster.nodes[new_leader].client(socket_timeout=1).set("after", "failover")
            break
        except redis.RedisError:
            assert time.monotonic() - killed_at < 3.0, "no write succeeded within 3 s"
    elapsed = time.monotonic() - killed_at
    assert elapsed < 3.0, f"first write after failover took {elapsed:.2f}s"
    # The killed node restarts from its disk, rejoins and catches up.
    cluster.restart(leader)
    back = cluster.nodes[leader].client()
    deadline = time.monotonic() + 10
    while True:  # it knows a leader: its slot map names one as the master
        slots = back.execute_command("CLUSTER", "SLOTS")
        if slots and int(slots[0][2][1]) in {n.port for n in cluster.nodes.values()}:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    new = cluster.nodes[cluster.leader()].client()
    assert new.get("after") == b"failover"
    assert all(new.get(f"before-{i}") == str(i).encode() for i in range(200))


def test_cluster_up_runs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # Below the kernel's ephemeral range (32768+), so no client socket can hold these ports.
    base = random.randrange(10000, 20000)
    for offset in (1, 2, 3, 101, 102, 103, 201, 202, 203):
        with socket.socket() as s:
            s.bind(("127.0.0.1", base + offset))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shardkv",
            "cluster",
            "up",
            "--nodes",
            "3",
            "--base-port",
            str(base),
            "--data-dir",
            str(tmp_path / "c"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                rc = RedisCluster(host="127.0.0.1", port=base + 1, socket_timeout=2)
                assert rc.set("k", "v")
                assert rc.get("k") == b"v"
                break
            except (redis.RedisError, redis.exceptions.RedisClusterException, IndexError):
                assert time.monotonic() < deadline, "the local cluster did not serve"
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "exit codes [0, 0, 0]" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_node_exports_raft_metrics(cluster: Cluster) -> None:
    import urllib.request

    leader = cluster.leader()
    cluster.nodes[leader].client().set("m", "1")
    for i, node in cluster.nodes.items():
        url = f"http://127.0.0.1:{node.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        role = "leader" if i == leader else "follower"
        assert f'shardkv_raft_role{{group="1",role="{role}"}} 1.0' in text
        for name in (
            "shardkv_raft_term",
            "shardkv_raft_commit_index",
            "shardkv_raft_applied_index",
            "shardkv_raft_leader_changes_total",
            "shardkv_raft_fsync_seconds_bucket",
            "shardkv_peer_queue_messages",
        ):
            assert name in text, name
    url = f"http://127.0.0.1:{cluster.nodes[leader].admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert "shardkv_raft_proposal_seconds_count" in resp.read().decode()


def test_readonly_connections_read_from_a_follower(cluster: Cluster) -> None:
    leader = cluster.leader()
    cluster.nodes[leader].client().set("r", "1")
    follower = next(i for i in cluster.nodes if i != leader)
    c = cluster.nodes[follower].client(single_connection_client=True)
    with pytest.raises(redis.exceptions.MovedError):
        c.get("r")
    assert c.execute_command("READONLY") in (b"OK", "OK", True)
    deadline = time.monotonic() + 5
    while c.get("r") != b"1":  # possibly stale, but it catches up
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(redis.exceptions.MovedError):
        c.set("r", "2")  # writes still go to the leader


def test_sigterm_on_the_leader_hands_leadership_over_without_an_election_gap(
    cluster: Cluster,
) -> None:
    leader = cluster.leader()
    stopped_at = time.monotonic()
    assert cluster.nodes[leader].stop(signal.SIGTERM) == 0
    new = cluster.leader(timeout_s=5)
    assert new != leader
    cluster.nodes[new].client().set("after-handover", "1")
    assert time.monotonic() - stopped_at < 5
    # Leadership moved by transfer before the process exited, not by an election timeout.
    events = [
        json.loads(line)
        for line in cluster.nodes[leader].log().splitlines()
        if line.startswith("{")
    ]
    moved = [e for e in events if e["event"] == "leadership_transferred"]
    assert moved and moved[0]["new_leader"] == new, events[-5:]


def test_a_standalone_node_grows_into_a_cluster_with_its_data(tmp_path: Path) -> None:
    data = tmp_path / "node-1"
    with ServerProcess(data) as standalone:
        standalone.client().mset({f"k{i}": i for i in range(100)})
        port = standalone.port
    peer = free_port()
    grown = ServerProcess(
        data,
        "--node-id",
        "1",
        "--peer-port",
        str(peer),
        "--initial-cluster",
        f"1=127.0.0.1:{peer}",
        port=port,
    )
    with grown:
        c = grown.client()
        wait_healthy(grown)
        assert c.get("k99") == b"99" and c.dbsize() == 100
        assert c.set("new", "1")


def test_a_cluster_node_bounds_pending_commands_like_a_standalone_one(tmp_path: Path) -> None:
    """One write path, one bound: past max_pending_commands a cluster member answers
    -TRYAGAIN (nothing executed), exactly as the standalone committer does."""
    peer = free_port()
    node = ServerProcess(
        tmp_path / "node-1",
        "--node-id",
        "1",
        "--peer-port",
        str(peer),
        "--initial-cluster",
        f"1=127.0.0.1:{peer}",
        "--shards",
        "1",
        env={"SHARDKV_MAX_PENDING_COMMANDS": "1"},
    )
    with node:
        wait_healthy(node)
        assert node.client().set("alone", "1")
        with socket.create_connection(("127.0.0.1", node.port)) as s:
            s.settimeout(10)
            # Two commands in one segment: one group of two, over the bound of one.
            s.sendall(
                b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n"
            )
            reply = b""
            while reply.count(b"\r\n") < 2:
                reply += s.recv(4096)
        busy = b"-TRYAGAIN server is overloaded (too many pending commands); retry later\r\n"
        assert reply == busy * 2
        assert node.client().exists("a") == 0 and node.client().exists("b") == 0
