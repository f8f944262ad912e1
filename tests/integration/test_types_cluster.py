"""Hashes, sets, sorted sets, lists and transactions on a sharded cluster of real processes,
through redis-py's RedisCluster: keys spread over every shard, MULTI/EXEC blocks and WATCH
routed to the shard of their hash tag, and everything still there after every node
restarted from its disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.integration.test_cluster import Cluster, wait_healthy
from tests.integration.test_rebalance import cluster_client

KEYS = 300


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3, shards=8)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _write_types(rc: RedisCluster) -> None:
    pipe = rc.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.hset(f"h:{i}", mapping={"n": i, "name": f"user{i}"})
        pipe.sadd(f"s:{i}", "a", "b", str(i))
        pipe.zadd(f"z:{i}", {"low": 1, "mid": i, "high": 10_000})
        pipe.rpush(f"l:{i}", "first", str(i), "last")
    pipe.execute()


def _assert_types(rc: RedisCluster) -> None:
    for i in range(KEYS):
        assert rc.hgetall(f"h:{i}") == {b"n": str(i).encode(), b"name": f"user{i}".encode()}
        assert rc.smembers(f"s:{i}") == {b"a", b"b", str(i).encode()}
        assert rc.zrange(f"z:{i}", -1, -1, withscores=True) == [(b"high", 10_000.0)]
        assert rc.lrange(f"l:{i}", 0, -1) == [b"first", str(i).encode(), b"last"]


def _transfer(rc: RedisCluster, amount: int) -> None:
    """Move ``amount`` from one account to the other with WATCH and a MULTI/EXEC block
    (redis-py's transaction helper retries when a watched key changed)."""

    def body(pipe: redis.client.Pipeline) -> None:
        balance = int(pipe.hget("{bank}:alice", "balance") or 0)
        pipe.multi()
        pipe.hset("{bank}:alice", "balance", balance - amount)
        pipe.hincrby("{bank}:bob", "balance", amount)

    rc.transaction(body, "{bank}:alice", "{bank}:bob")


def test_types_and_transactions_through_redis_cluster_survive_a_full_restart(
    cluster: Cluster,
) -> None:
    rc = cluster_client(cluster.nodes[2].port)
    _write_types(rc)
    _assert_types(rc)
    slots = {rc.keyslot(f"h:{i}") for i in range(KEYS)}
    shards = {rc.get_node_from_key(f"h:{i}").port for i in range(KEYS)}
    assert len(slots) > 250 and len(shards) == 3, "keys should spread over every node"

    rc.hset("{bank}:alice", "balance", 100)
    rc.hset("{bank}:bob", "balance", 0)
    for _ in range(10):
        _transfer(rc, 7)
    assert rc.hget("{bank}:alice", "balance") == b"30"
    assert rc.hget("{bank}:bob", "balance") == b"70"

    with rc.pipeline(transaction=True) as pipe:
        pipe.sadd("{bank}:log", "t1").rpush("{bank}:list", "t1").zincrby("{bank}:z", 2.5, "t1")
        assert pipe.execute() == [1, 1, 2.5]
    # A block whose keys span slots is refused whole, as on Redis Cluster.
    with pytest.raises(redis.RedisClusterException), rc.pipeline(transaction=True) as pipe:
        pipe.set("{a}x", 1).set("{b}y", 2)
        pipe.execute()
    assert rc.exists("{a}x", "{b}y") == 0
    rc.close()

    cluster.restart_all()
    for node in cluster.nodes.values():
        wait_healthy(node)
    rc = cluster_client(cluster.nodes[1].port)
    _assert_types(rc)
    assert rc.hget("{bank}:bob", "balance") == b"70"
    assert rc.zscore("{bank}:z", "t1") == 2.5
    rc.close()
