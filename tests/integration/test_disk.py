"""Disks that fill up or fail, on real filesystems: a size-limited tmpfs the test mounts
(CI runs as root), and an injected fsync failure (EIO).

What must hold: a full disk refuses writes with a clear error while reads go on, a node
whose disk fills hands its shards to healthy nodes, nothing acknowledged is lost, and
everything recovers by itself once space is freed. A failed fsync stops the process
without acknowledging the write it was syncing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.integration.harness import ServerProcess
from tests.integration.test_cluster import Cluster, wait_healthy

MIN_FREE = 8 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, unmounted afterwards (after the servers on it stopped)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Take all but ``leave_bytes`` of ``disk``'s free space with one file."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    subprocess.run(["fallocate", "-l", str(max(0, free - leave_bytes)), str(filler)], check=True)
    return filler


def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


def status(node: ServerProcess) -> dict[str, object]:
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/v1/status", timeout=5) as r:
        result: dict[str, object] = json.load(r)
        return result


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers_when_freed(
    small_disk: Path,
) -> None:
    env = {"SHARDKV_MIN_FREE_DISK_BYTES": str(MIN_FREE)}
    with ServerProcess(small_disk / "data", env=env).start() as node:
        client = node.client()
        assert client.set("before", "1")
        filler = fill(small_disk, MIN_FREE // 2)
        until(lambda: status(node)["disk"]["full"], "the node sees its disk full")  # type: ignore[index]
        with pytest.raises(redis.exceptions.ResponseError, match=r"^MISCONF disk full"):
            client.set("during", "2")
        assert client.get("before") == b"1"  # reads keep working
        filler.unlink()
        until(lambda: not status(node)["disk"]["full"], "space is back")  # type: ignore[index]
        assert client.set("after", "3")
        restarted = node.again()
    node.stop()
    with restarted.start():
        assert restarted.client().mget("before", "during", "after") == [b"1", None, b"3"]


def test_a_node_whose_disk_fills_hands_its_shards_over_and_catches_up(
    tmp_path: Path, small_disk: Path
) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=3)
    cluster.nodes[3].data_dir = small_disk / "node-3"
    cluster.nodes[3].env["SHARDKV_MIN_FREE_DISK_BYTES"] = str(MIN_FREE)
    try:
        cluster.start()
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[1].port)
        written = {f"k{i}": str(i) for i in range(300)}
        for key, value in written.items():
            assert rc.set(key, value)
        until(
            lambda: any(s["role"] == "leader" for s in status(cluster.nodes[3])["shards"]),  # type: ignore[attr-defined,index]
            "node 3 leads a shard before its disk fills",
        )
        filler = fill(small_disk, MIN_FREE // 2)
        until(
            lambda: not any(s["role"] == "leader" for s in status(cluster.nodes[3])["shards"]),  # type: ignore[attr-defined,index]
            "node 3 hands every leadership away",
        )
        # The cluster goes on writing without node 3's disk, and reads everything.
        for i in range(300, 600):
            written[f"k{i}"] = str(i)
            assert rc.set(f"k{i}", str(i))
        assert all(rc.get(k) == v.encode() for k, v in written.items())
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{cluster.nodes[3].admin_port}/metrics", timeout=5
        ).read()
        assert b"shardkv_disk_full 1.0" in metrics
        filler.unlink()
        until(lambda: not status(cluster.nodes[3])["disk"]["full"], "node 3 has space again")  # type: ignore[index]
        # Node 3 catches up: its replicas hold the writes made while it was full.
        follower = cluster.nodes[3].client(single_connection_client=True)
        follower.execute_command("READONLY")
        last = "k599"

        def caught_up() -> bool:
            try:
                return follower.get(last) == b"599"
            except redis.exceptions.MovedError:
                return True  # k599's shard is not on node 3 at all (3 shards, 3 replicas)

        until(caught_up, "node 3 catches up")
        wait_healthy(cluster.nodes[3])
        assert all(rc.get(k) == v.encode() for k, v in written.items())
    finally:
        cluster.stop()


def test_a_failed_fsync_stops_the_node_without_acknowledging_the_write(tmp_path: Path) -> None:
    node = ServerProcess(tmp_path / "data", env={"SHARDKV_FAIL_SYNC": "20"}).start()
    acknowledged: list[str] = []
    refused = None
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as conn:
        for i in range(100):
            try:
                conn.sendall(f"SET key{i} v{i}\r\n".encode())
                reply = conn.recv(200)
            except OSError:
                reply = b""
            if reply != b"+OK\r\n":
                refused = (i, reply)
                break
            acknowledged.append(f"key{i}")
    assert refused is not None, "the injected fsync failure never happened"
    assert refused[1] in (b"", b"-ERR storage failure: this node stopped serving\r\n") or (
        refused[1].startswith(b"-ERR")
    )
    assert node.wait(timeout_s=30) != 0, "the node stops (fail-stop), it does not retry"
    assert "injected fsync failure" in node.log()
    restarted = ServerProcess(node.data_dir, port=node.port)
    with restarted.start():
        client = restarted.client()
        for key in acknowledged:
            assert client.get(key) == f"v{key[3:]}".encode(), key
