"""A cluster whose nodes talk over mutual TLS: it works with certificates, and a node with a
certificate from another CA cannot join the conversation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from tests.integration.harness import make_certs
from tests.integration.test_cluster import Cluster


def test_nodes_replicate_over_mutual_tls(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs, "ca", ["n1", "n2", "n3"])
    cluster = Cluster(tmp_path / "c")
    for i, node in cluster.nodes.items():
        node.extra += [
            "--peer-tls-cert",
            str(certs / f"n{i}.crt"),
            "--peer-tls-key",
            str(certs / f"n{i}.key"),
            "--peer-tls-ca",
            str(certs / "ca.crt"),
        ]
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
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs, "ca", ["n1", "n2"])
    other = tmp_path / "other"
    other.mkdir()
    make_certs(other, "rogue", ["n3"])
    cluster = Cluster(tmp_path / "c")
    for i, node in cluster.nodes.items():
        d = certs if i < 3 else other
        ca = "ca.crt" if i < 3 else "rogue.crt"
        node.extra += [
            "--peer-tls-cert",
            str(d / f"n{i}.crt"),
            "--peer-tls-key",
            str(d / f"n{i}.key"),
            "--peer-tls-ca",
            str(d / ca),
        ]
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


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
