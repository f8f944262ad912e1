"""A sharded cluster of real processes: 16 Raft groups over 3 nodes, leaders spread, every
slot served by its shard's leader and redirected to it from anywhere, with real Redis
cluster clients (redis-cli -c, redis-py RedisCluster, redis-benchmark --cluster)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from redis.cluster import RedisCluster

from shardkv.core.cluster.shardmap import ShardMap
from shardkv.core.cluster.slots import key_slot
from shardkv.transport.identity import DEFAULT_CLUSTER_ID, identity_metadata
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc
from tests.integration.test_cluster import Cluster, wait_healthy

SHARDS = 16


def cluster_shards(node_port: int) -> list[dict[str, object]]:
    """CLUSTER SHARDS as dicts (redis-py parses the RESP2 flat maps for us)."""
    r = redis.Redis(port=node_port, socket_timeout=2)
    try:
        raw = r.execute_command("CLUSTER", "SHARDS")
    finally:
        r.close()

    def as_dict(item: object) -> dict[bytes, object]:
        if isinstance(item, dict):
            return {k.encode() if isinstance(k, str) else k: v for k, v in item.items()}
        assert isinstance(item, list)
        return dict(zip(item[::2], item[1::2], strict=True))

    shards = []
    for entry in raw:
        shard = as_dict(entry)
        nodes = [as_dict(n) for n in shard[b"nodes"]]  # type: ignore[attr-defined]
        shards.append({"slots": shard[b"slots"], "nodes": nodes})
    return shards


def wait_spread(cluster: Cluster, timeout_s: float = 30.0) -> list[dict[str, object]]:
    """Wait until every node's CLUSTER SHARDS lists 16 shards, each with a master, and
    the masters are spread 5 or 6 per node; return the last view."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        views = []
        try:
            for node in cluster.nodes.values():
                views.append(cluster_shards(node.port))
        except redis.RedisError as exc:
            last = exc
            time.sleep(0.1)
            continue
        masters = [
            [n[b"port"] for n in s["nodes"] if n[b"role"] == b"master"]  # type: ignore[attr-defined]
            for s in views[0]
        ]
        per_node = Counter(m[0] for m in masters if len(m) == 1)
        last = per_node
        if (
            all(len(v) == SHARDS for v in views)
            and all(len(m) == 1 for m in masters)
            and sorted(per_node.values()) in ([5, 5, 6], [5, 6, 5], [6, 5, 5])
            and views[0] == views[1] == views[2]
        ):
            return views[0]
        time.sleep(0.1)
    raise AssertionError(f"leaders did not spread: {last}")


@pytest.fixture
def sharded(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3, shards=SHARDS)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_sixteen_shards_cover_every_slot_once_with_leaders_spread(sharded: Cluster) -> None:
    shards = wait_spread(sharded)
    covered: list[int] = []
    for shard in shards:
        slots = shard["slots"]
        assert isinstance(slots, list)
        for first, last in zip(slots[::2], slots[1::2], strict=True):
            covered.extend(range(int(first), int(last) + 1))
        assert len(shard["nodes"]) == 3  # type: ignore[arg-type]
    assert sorted(covered) == list(range(16384))


def _replies(redis_cli_output: str) -> list[str]:
    """redis-cli -c output without its "-> Redirected to slot ..." notes."""
    return [line for line in redis_cli_output.splitlines() if not line.startswith("-> ")]


def test_redis_cli_follows_redirects_for_1000_keys_from_any_node(sharded: Cluster) -> None:
    wait_spread(sharded)
    ports = [n.port for n in sharded.nodes.values()]
    keys = [f"key:{i}" for i in range(1000)]
    assert len({key_slot(k.encode()) for k in keys}) > 900
    script = "".join(f"SET {k} v{i}\n" for i, k in enumerate(keys))
    out = subprocess.run(
        ["redis-cli", "-c", "-p", str(ports[0])],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert _replies(out.stdout) == ["OK"] * 1000, out.stdout[:500]
    assert out.stdout.count("-> Redirected") > 500  # most keys live on other nodes
    for port in ports:
        script = "".join(f"GET {k}\n" for k in keys)
        out = subprocess.run(
            ["redis-cli", "-c", "-p", str(port)],
            input=script,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert _replies(out.stdout) == [f"v{i}" for i in range(1000)]


def test_moved_crossslot_and_hash_tags_follow_redis_cluster_rules(sharded: Cluster) -> None:
    shards = wait_spread(sharded)
    slot = key_slot(b"somekey")
    owner = next(
        s
        for s in shards
        if any(
            int(a) <= slot <= int(b)
            for a, b in zip(s["slots"][::2], s["slots"][1::2], strict=True)  # type: ignore[index]
        )
    )
    leader_port = next(n[b"port"] for n in owner["nodes"] if n[b"role"] == b"master")  # type: ignore[attr-defined]
    other = next(n for n in sharded.nodes.values() if n.port != leader_port)
    plain = other.client()
    with pytest.raises(redis.exceptions.MovedError, match=f"{slot} 127.0.0.1:{leader_port}"):
        plain.set("somekey", "x")
    leader = redis.Redis(port=int(leader_port))
    assert leader.set("somekey", "x") is True
    assert key_slot(b"a") != key_slot(b"b")
    with pytest.raises(
        redis.exceptions.ClusterCrossSlotError, match="Keys in request don't hash to the same slot"
    ):
        leader.execute_command("MSET", "a", "1", "b", "2")
    rc = RedisCluster(host="127.0.0.1", port=other.port)
    assert rc.execute_command("MSET", "{user1}:name", "ann", "{user1}:mail", "a@x") is True
    assert rc.execute_command("MGET", "{user1}:name", "{user1}:mail") == [b"ann", b"a@x"]
    # DBSIZE on a node counts the shards it leads, as on a Redis Cluster master.
    total = sum(redis.Redis(port=n.port).dbsize() for n in sharded.nodes.values())
    assert total == 3


def test_redis_py_cluster_client_writes_and_reads_10000_keys(sharded: Cluster) -> None:
    wait_spread(sharded)
    rc = RedisCluster(host="127.0.0.1", port=sharded.nodes[2].port)
    pipe = rc.pipeline()
    for i in range(10_000):
        pipe.set(f"k{i}", i)
    assert all(pipe.execute())
    pipe = rc.pipeline()
    for i in range(10_000):
        pipe.get(f"k{i}")
    assert pipe.execute() == [str(i).encode() for i in range(10_000)]
    assert sum(redis.Redis(port=n.port).dbsize() for n in sharded.nodes.values()) == 10_000
    seen = set()
    for node in sharded.nodes.values():
        cursor = 0
        r = redis.Redis(port=node.port)
        while True:
            cursor, keys = r.scan(cursor, count=500)
            seen.update(keys)
            if cursor == 0:
                break
    assert len(seen) == 10_000


def test_redis_benchmark_cluster_runs_set_and_get_without_errors(sharded: Cluster) -> None:
    wait_spread(sharded)
    out = subprocess.run(
        [
            "redis-benchmark",
            "--cluster",
            "-p",
            str(sharded.nodes[1].port),
            "-t",
            "set,get",
            "-n",
            "20000",
            "-c",
            "16",
            "-d",
            "100",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "SET:" in text and "GET:" in text, text
    assert "error" not in text.lower(), text


def test_a_restarted_node_rejoins_every_shard_gets_its_leaders_back_and_routes_once_healthy(
    sharded: Cluster,
) -> None:
    wait_spread(sharded)
    rc = RedisCluster(host="127.0.0.1", port=sharded.nodes[1].port)
    for i in range(300):
        rc.set(f"r{i}", i)
    sharded.nodes[3].stop(signal.SIGTERM)
    sharded.restart(3, wait=False)
    node = sharded.nodes[3]
    node.wait_ready()
    wait_healthy(node, timeout_s=20)
    healthy_at = time.monotonic()
    fresh = RedisCluster(host="127.0.0.1", port=node.port)
    assert fresh.get("r7") == b"7"
    assert time.monotonic() - healthy_at < 0.5
    # Every key is readable and the preferred leaders take their shards back.
    wait_spread(sharded, timeout_s=30)
    rc = RedisCluster(host="127.0.0.1", port=node.port)
    assert [rc.get(f"r{i}") for i in range(300)] == [str(i).encode() for i in range(300)]


def test_the_placement_group_registers_every_node_and_the_grpc_admin_moves_a_leader(
    sharded: Cluster,
) -> None:
    wait_spread(sharded)

    def statuses() -> list[dict[str, object]]:
        out = []
        for node in sharded.nodes.values():
            url = f"http://127.0.0.1:{node.admin_port}/v1/status"
            with urllib.request.urlopen(url, timeout=5) as r:
                out.append(json.load(r))
        return out

    # Every node follows group 0 (three voters here) and applied the same map, in which
    # every node registered where clients, peers and operators reach it.
    deadline = time.monotonic() + 15
    while True:
        views = statuses()
        maps = [ShardMap.decode(str(v["shard_map"]).encode()) for v in views]
        registered = all(
            maps[0].nodes[i].client_address == f"127.0.0.1:{node.port}"
            and maps[0].nodes[i].admin_address == f"127.0.0.1:{node.admin_port}"
            and maps[0].nodes[i].peer_address == f"127.0.0.1:{sharded.peer_ports[i]}"
            for i, node in sharded.nodes.items()
        )
        if registered and all(m.encode() == maps[0].encode() for m in maps):
            break
        assert time.monotonic() < deadline, maps[0].nodes
        time.sleep(0.2)
    assert all(v["placement"]["voters"] == [1, 2, 3] for v in views)  # type: ignore[index]
    metrics = []
    for node in sharded.nodes.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/metrics") as r:
            metrics.append(r.read().decode())
    assert all('shardkv_cluster_nodes{state="up"} 3.0' in m for m in metrics)
    assert sum("shardkv_placement_leader 1.0" in m for m in metrics) == 1

    # The gRPC Admin service on the peer port is wired to the node's groups.
    async def admin_calls() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sharded.peer_ports[1]}") as channel:
            admin = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            me = identity_metadata(DEFAULT_CLUSTER_ID, 9)
            status = await admin.Status(pb.StatusRequest(), metadata=me)
            assert sorted(g.group_id for g in status.groups) == list(range(SHARDS + 1))
            led = next(g.group_id for g in status.groups if g.leader == 1 and g.group_id)
            await admin.TransferLeader(
                pb.TransferLeaderRequest(group_id=led, to_node=2), metadata=me
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.TransferLeader(
                    pb.TransferLeaderRequest(group_id=999, to_node=2), metadata=me
                )
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND
            return led

    led = asyncio.run(admin_calls())
    deadline = time.monotonic() + 10
    while True:
        shard = next(s for s in statuses()[1]["shards"] if s["shard"] == led)  # type: ignore[union-attr]
        if shard["role"] == "leader":
            break
        assert time.monotonic() < deadline, shard
        time.sleep(0.05)
