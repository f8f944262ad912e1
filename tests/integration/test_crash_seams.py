"""Crash at every seam of the write path: no acknowledged write is lost, and the crashed
node comes back and converges.

Each case arms one test-only crash point (``SHARDKV_CRASH_POINT``, see
``shardkv.node.crashpoints``) on one node of a 3-node cluster under write load, lets the
process die there (``os._exit``, as abrupt as SIGKILL), restarts it without the crash point,
and checks every acknowledged write and the convergence of all three nodes.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.integration.harness import ServerProcess
from tests.integration.test_cluster import Cluster

SMALL_LOG = {"SHARDKV_SNAPSHOT_INTERVAL_ENTRIES": "150", "SHARDKV_COMPACTION_MARGIN_ENTRIES": "20"}


def applied(node: ServerProcess) -> int:
    """The node's applied index (-1 while its admin port is not up yet)."""
    url = f"http://127.0.0.1:{node.admin_port}/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(json.load(resp)["applied"])
    except OSError:
        return -1


def write_until(ports: list[int], stop: threading.Event, acked: set[str], prefix: str) -> None:
    rc: RedisCluster | None = None
    i = 0
    while not stop.is_set():
        key = f"{prefix}-{i}"
        try:
            if rc is None:
                port = ports[i % len(ports)]
                rc = RedisCluster(host="127.0.0.1", port=port, socket_timeout=2)
            if rc.set(key, key):
                acked.add(key)
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            rc = None  # unknown outcome: not counted; reconnect through any node
            time.sleep(0.05)
        i += 1


def restart_plain(cluster: Cluster, i: int) -> None:
    """Start node i again, same disk and ports, without any crash point."""
    cluster.restart(i, env=SMALL_LOG)


def wait_dead(node: ServerProcess, timeout_s: float) -> None:
    assert node.proc is not None
    deadline = time.monotonic() + timeout_s
    while node.proc.poll() is None:
        assert time.monotonic() < deadline, "the crash point was never reached"
        time.sleep(0.05)
    assert node.proc.returncode == 137, node.log()


@pytest.mark.parametrize(
    ("seam", "on_leader"),
    [
        ("after_write_before_sync:40", True),
        ("after_sync_before_reply:40", True),
        ("compaction:1", True),
        ("snapshot_install:1", False),
    ],
)
def test_a_crash_at_a_seam_loses_no_acknowledged_write(
    tmp_path: Path, seam: str, on_leader: bool
) -> None:
    cluster = Cluster(tmp_path / "c")
    for node in cluster.nodes.values():
        node.env = dict(SMALL_LOG)
    acked: set[str] = set()
    stop = threading.Event()
    writers: list[threading.Thread] = []
    try:
        cluster.start()
        leader = cluster.leader()
        victim = leader if on_leader else next(i for i in cluster.nodes if i != leader)
        ports = [n.port for n in cluster.nodes.values()]
        if on_leader:
            # Restart the leader with the crash point armed, then load it until it dies.
            cluster.nodes[victim].stop(signal.SIGKILL)
            cluster.restart(victim, env={**SMALL_LOG, "SHARDKV_CRASH_POINT": seam})
        else:
            # A follower that misses enough of the log to need a snapshot crashes installing it.
            cluster.nodes[victim].stop(signal.SIGKILL)
            rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[leader].port)
            for i in range(400):
                rc.set(f"while-down-{i}", f"while-down-{i}")
                acked.add(f"while-down-{i}")
            cluster.restart(victim, env={**SMALL_LOG, "SHARDKV_CRASH_POINT": seam}, wait=False)
        for t in range(4):
            th = threading.Thread(
                target=write_until, args=(ports, stop, acked, f"w{t}"), daemon=True
            )
            th.start()
            writers.append(th)
        if on_leader:
            # Until the armed node leads and crashes, move leadership onto it by stopping
            # whichever other node leads (it comes back at once).
            deadline = time.monotonic() + 60
            while cluster.nodes[victim].proc.poll() is None:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the crash point was never reached"
                current = cluster.leader(timeout_s=10)
                if current != victim:
                    cluster.nodes[current].stop(signal.SIGTERM)
                    restart_plain(cluster, current)
                time.sleep(0.2)
        wait_dead(cluster.nodes[victim], 60)
        time.sleep(0.5)  # some load while the crashed node is down
        restart_plain(cluster, victim)
        time.sleep(2.0)  # load on the healed cluster too
        stop.set()
        for th in writers:
            th.join(15)
        # Every node converges on the same applied state.
        deadline = time.monotonic() + 30
        while len({applied(n) for n in cluster.nodes.values()}) != 1:
            assert time.monotonic() < deadline, "the nodes did not converge"
            time.sleep(0.1)
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[cluster.leader()].port)
        keys = sorted(acked)
        assert len(keys) > 50
        values = [rc.get(k) for k in keys]
        lost = [k for k, v in zip(keys, values, strict=True) if v != k.encode()]
        assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
        sizes = set()
        for node in cluster.nodes.values():
            c = node.client(single_connection_client=True)
            c.execute_command("READONLY")
            sizes.add(c.dbsize())
        assert len(sizes) == 1, f"replicas differ: DBSIZE {sizes}"
    finally:
        stop.set()
        cluster.stop()
