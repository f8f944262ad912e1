"""A cluster whose nodes talk over mutual TLS, with certificates made by ``shardkv certs``:
it works; a node with a certificate from another CA, or with a valid certificate of
another node, cannot join the conversation."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from tests.integration.test_cluster import Cluster


def shardkv_certs(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "shardkv", "certs", *args], check=True, timeout=60)


def make_node_certs(directory: Path, node_ids: list[int]) -> None:
    """A CA in ``directory`` and a certificate for each node, as an operator makes them."""
    shardkv_certs("init", str(directory))
    for node_id in node_ids:
        shardkv_certs("issue", str(directory), "--node-id", str(node_id), "--host", "127.0.0.1")


def peer_tls_flags(directory: Path, cert_of: int) -> list[str]:
    return [
        "--peer-tls-cert",
        str(directory / f"node-{cert_of}.crt"),
        "--peer-tls-key",
        str(directory / f"node-{cert_of}.key"),
        "--peer-tls-ca",
        str(directory / "ca.crt"),
    ]


def test_nodes_replicate_over_mutual_tls(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_node_certs(certs, [1, 2, 3])
    cluster = Cluster(tmp_path / "c")
    for i, node in cluster.nodes.items():
        node.extra += peer_tls_flags(certs, i)
    try:
        cluster.start()
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[cluster.leader()].port)
        assert rc.set("secure", "yes") and rc.get("secure") == b"yes"
        follower = next(i for i in cluster.nodes if i != cluster.leader())
        c = cluster.nodes[follower].client(single_connection_client=True)
        c.execute_command("READONLY")
        deadline = time.monotonic() + 5
        while c.get("secure") != b"yes":  # replicated to the follower over TLS
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        cluster.stop()


def test_a_node_with_a_foreign_certificate_gets_no_votes_and_no_data(tmp_path: Path) -> None:
    certs, other = tmp_path / "certs", tmp_path / "other"
    make_node_certs(certs, [1, 2])
    make_node_certs(other, [3])
    cluster = Cluster(tmp_path / "c")
    for i, node in cluster.nodes.items():
        node.extra += peer_tls_flags(certs if i < 3 else other, i)
    try:
        cluster.start()
        leader = cluster.leader()
        assert leader in (1, 2), "the node with a foreign certificate cannot lead"
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[leader].port)
        assert rc.set("k", "v")
        rogue = cluster.nodes[3].client(single_connection_client=True)
        rogue.execute_command("READONLY")
        time.sleep(1.0)  # what could have arrived by now has not
        assert rogue.get("k") is None
    finally:
        cluster.stop()


def test_a_node_presenting_another_nodes_certificate_is_refused(tmp_path: Path) -> None:
    """Node 3 holds a valid certificate of the cluster, but it names node 2: every call
    node 3 makes is refused, with a log line and a metric on the node it calls."""
    certs = tmp_path / "certs"
    make_node_certs(certs, [1, 2])
    cluster = Cluster(tmp_path / "c")
    for i, node in cluster.nodes.items():
        node.extra += peer_tls_flags(certs, min(i, 2))
    try:
        cluster.start()
        leader = cluster.leader()
        assert leader in (1, 2)
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[leader].port)
        assert rc.set("k", "v")
        deadline = time.monotonic() + 10
        while True:
            metrics = urllib.request.urlopen(
                f"http://127.0.0.1:{cluster.nodes[leader].admin_port}/metrics", timeout=5
            ).read()
            if b'shardkv_peer_refusals_total{reason="node_id_mismatch"}' in metrics:
                break
            assert time.monotonic() < deadline, "no refusal counted"
            time.sleep(0.1)
        assert "the caller claims node 3 but its certificate is node 2" in (
            cluster.nodes[leader].log()
        )
        # (Node 3 may still receive from the others: it trusts their certificates. What
        # it says as "node 3" is refused, so it never votes or acknowledges anything.)
    finally:
        cluster.stop()


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
