"""Abuse of every port of a real 3-node cluster: property-based fuzzing (hypothesis, fixed
seed and budget) of the client port (RESP), the peer port (gRPC, and raw bytes) and the
admin port (HTTP). After each port's run every node still answers, no acknowledged data
is lost, and each node's memory stays under `RSS_BOUND_BYTES`.

What the fuzzers send:

- client: commands from the command table (and unknown ones) with random binary
  arguments, RESP framing truncated or corrupted, inline commands, absurd lengths. Only
  the commands that destroy data by design (FLUSHALL, FLUSHDB) and ACL (which can lock
  everyone out by design) are left out;
- peer: raw bytes on the port; Raft streams from a node that is not a member (id 77)
  with malformed messages, unknown groups, stale terms, forged senders and misrouted
  messages; snapshot transfers with broken chunk sequences, wrong checksums, absurd
  sizes and a chunk larger than the receive limit. (Raft trusts an authenticated member:
  messages at the current term from a cluster certificate are not fuzzed);
- admin: random methods, paths, headers and bodies, with and without the admin token
  (mutating calls with the token only where they cannot remove a node or split a shard).
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

from shardkv.core import commands as table
from shardkv.transport.identity import DEFAULT_CLUSTER_ID, identity_metadata
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc
from tests.integration.test_cluster import Cluster

TOKEN = "fuzz-admin-token"
#: Each node's resident memory after the fuzzers (a fresh node uses about 100 MiB).
RSS_BOUND_BYTES = 512 << 20
SENTINELS = {f"{{sentinel}}:{i}": f"value-{i}" for i in range(50)}
FUZZ = settings(
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
INPUTS: dict[str, int] = {"client": 0, "peer": 0, "admin": 0}
NOT_FUZZED = {"flushall", "flushdb", "acl"}
NAMES = sorted(
    {spec.name.split("|")[0] for spec in table.COMMANDS} - NOT_FUZZED
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("fuzz")
    token = root / "token"
    token.write_text(TOKEN)
    c = Cluster(root, 3, "--admin-token-file", str(token), shards=3)
    try:
        c.start()
        rc = RedisCluster(host="127.0.0.1", port=c.nodes[1].port)
        for key, value in SENTINELS.items():
            assert rc.set(key, value)
        rc.close()
        yield c
    finally:
        c.stop()


def assert_healthy(cluster: Cluster) -> None:
    """Every node answers, the sentinels read back, memory is bounded."""
    for node in cluster.nodes.values():
        assert node.proc is not None and node.proc.poll() is None, node.log()[-3000:]
        assert node.client().ping()
        assert node.rss_bytes() < RSS_BOUND_BYTES, f"node RSS {node.rss_bytes() >> 20} MiB"
        log = node.log()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[2].port)
    assert rc.mget_nonatomic(list(SENTINELS)) == [v.encode() for v in SENTINELS.values()]
    rc.close()


# -- client port ---------------------------------------------------------------------------

binary = st.binary(min_size=0, max_size=64)
keys = st.text("abcxyz:{}", min_size=1, max_size=8).map(str.encode)


def resp_array(args: list[bytes]) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


numbers = st.integers(-(2**70), 2**70).map(lambda i: b"%d" % i)
command = st.tuples(
    st.one_of(st.sampled_from(NAMES).map(str.encode), binary),
    st.lists(st.one_of(keys, binary, numbers), max_size=6),
).map(lambda t: [t[0], *t[1]])

wire = st.one_of(
    st.lists(command, min_size=1, max_size=8).map(lambda cs: b"".join(resp_array(c) for c in cs)),
    st.tuples(command, st.integers(0, 200)).map(lambda t: resp_array(t[0])[: t[1]]),  # cut
    st.tuples(command, st.integers(0, 100), binary).map(
        lambda t: resp_array(t[0])[: t[1]] + t[2] + resp_array(t[0])[t[1] :]
    ),  # bytes inserted
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(
        lambda ns: (" ".join(ns) + "\r\n").encode()
    ),  # inline
    st.sampled_from(
        [
            b"*-5\r\n",
            b"*99999999999\r\n",
            b"$-2\r\n",
            b"*1\r\n$999999999999\r\n",
            b"*1\r\n$4\r\nPI",
            b"\r\n\r\n\r\n",
            b"*1\r\n*1\r\n$1\r\na\r\n",
            b"*0\r\n",
            b"*3\r\n$3\r\nSET\r\n",
        ]
    ),
    binary,
)


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(0.5)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except OSError:
            pass
        return got


@seed(20261204)
@FUZZ
@given(payload=wire, node=st.sampled_from([1, 2, 3]))
def test_client_port_survives_random_and_broken_resp(
    cluster: Cluster, payload: bytes, node: int
) -> None:
    INPUTS["client"] += 1
    reply = exchange(cluster.nodes[node].port, payload)
    # Whatever was sent, what comes back is RESP (or nothing), never a traceback.
    assert b"Traceback" not in reply
    assert not reply or reply[:1] in b"+-:$*_,#%~(=|>!"


def test_client_port_fuzz_left_the_cluster_whole(cluster: Cluster) -> None:
    assert_healthy(cluster)


# -- peer port -----------------------------------------------------------------------------

STRANGER = 77


def group_terms(cluster: Cluster) -> dict[int, int]:
    async def ask() -> dict[int, int]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.peer_ports[1]}") as ch:
            status = await pb_grpc.AdminStub(ch).Status(
                pb.StatusRequest(), metadata=identity_metadata(DEFAULT_CLUSTER_ID, STRANGER)
            )
            return {g.group_id: g.term for g in status.groups}

    return asyncio.run(ask())


@st.composite
def hostile_message(draw: Any, terms: dict[int, int]) -> pb.Message:
    stale = [g for g, t in terms.items() if t >= 2]
    group = draw(st.one_of(st.sampled_from(stale or [9999]), st.integers(1000, 2**63 - 1)))
    term = 1 if group in terms else draw(st.integers(0, 2**63 - 1))
    return pb.Message(
        type=draw(st.integers(0, 20)),
        group_id=group,
        to_node=draw(st.sampled_from([1, 1, 1, 2, 99])),
        from_node=draw(st.sampled_from([STRANGER, STRANGER, 2, 3])),  # 2, 3: forged
        term=term,
        log_term=draw(st.integers(0, 2**63 - 1)),
        index=draw(st.integers(0, 2**63 - 1)),
        commit=draw(st.integers(0, 2**63 - 1)),
        reject=draw(st.booleans()),
        entries=[
            pb.Entry(
                term=term,
                index=draw(st.integers(0, 2**32)),
                type=draw(st.integers(0, 5)),
                data=draw(st.binary(max_size=200)),
            )
            for _ in range(draw(st.integers(0, 3)))
        ],
    )


@st.composite
def snapshot_chunks(draw: Any, terms: dict[int, int]) -> list[pb.SnapshotChunk]:
    header = draw(hostile_message(terms))
    header.type = 9
    header.from_node = STRANGER
    chunks = []
    offset = 0
    for i in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=3000))
        crc = zlib.crc32(data) if draw(st.booleans()) else draw(st.integers(0, 2**32 - 1))
        chunk = pb.SnapshotChunk(
            offset=draw(st.sampled_from([offset, offset + 1, 0, 2**40])),
            data=data,
            crc32=crc,
            last=draw(st.booleans()),
        )
        if i == 0 and draw(st.booleans()):
            chunk.header.CopyFrom(header)
            chunk.total_bytes = draw(st.sampled_from([len(data), 10, 2**62]))
        offset += len(data)
        chunks.append(chunk)
    return chunks


peer_attack = st.data()


@seed(20261205)
@FUZZ
@given(data=peer_attack)
def test_peer_port_survives_hostile_and_malformed_traffic(cluster: Cluster, data: Any) -> None:
    INPUTS["peer"] += 1
    if not hasattr(test_peer_port_survives_hostile_and_malformed_traffic, "terms"):
        test_peer_port_survives_hostile_and_malformed_traffic.terms = group_terms(cluster)  # type: ignore[attr-defined]
    terms = test_peer_port_survives_hostile_and_malformed_traffic.terms  # type: ignore[attr-defined]
    target = f"127.0.0.1:{cluster.peer_ports[1]}"
    kind = data.draw(st.sampled_from(["raw", "stream", "snapshot"]))
    if kind == "raw":
        exchange(cluster.peer_ports[1], data.draw(st.binary(min_size=1, max_size=500)))
        return
    metadata = identity_metadata(DEFAULT_CLUSTER_ID, STRANGER)

    async def attack() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.RaftStub(channel)
            try:
                if kind == "stream":
                    batches = [
                        pb.MessageBatch(
                            from_node=data.draw(st.sampled_from([STRANGER, STRANGER, 3])),
                            messages=data.draw(st.lists(hostile_message(terms), max_size=5)),
                        )
                        for _ in range(data.draw(st.integers(1, 3)))
                    ]
                    call = stub.Stream(iter(batches), metadata=metadata, timeout=2)
                    async for _ in call:
                        pass
                else:
                    chunks = data.draw(snapshot_chunks(terms))
                    await stub.SendSnapshot(iter(chunks), metadata=metadata, timeout=2)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is not grpc.StatusCode.UNKNOWN, exc.details()

    asyncio.run(attack())


def test_peer_port_refuses_a_chunk_over_its_message_limit(cluster: Cluster) -> None:
    """One snapshot chunk larger than the transport's max_message_bytes (64 MiB)."""

    async def send() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.peer_ports[1]}") as ch:
            giant = pb.SnapshotChunk(data=b"x" * ((64 << 20) + 1))
            try:
                await pb_grpc.RaftStub(ch).SendSnapshot(
                    iter([giant]),
                    metadata=identity_metadata(DEFAULT_CLUSTER_ID, STRANGER),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    assert asyncio.run(send()) is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_peer_port_fuzz_left_the_cluster_whole(cluster: Cluster) -> None:
    assert_healthy(cluster)


# -- admin port ----------------------------------------------------------------------------

PATHS = ["/", "/metrics", "/healthz", "/v1/status", "/v1/rebalance", "/v1/members",
         "/v1/members/{n}", "/v1/nodes/{n}/remove", "/v1/shards/{n}/split", "/v1/kv/{k}",
         "/v1/backup", "/v1/debug/tracemalloc/top", "/v1/test/partition", "/{k}"]  # fmt: skip
#: Calls that may change the cluster for real when authorised: only made without a token.
GUARDED = ("/v1/members", "/v1/nodes/", "/v1/backup", "/v1/debug", "/v1/test")

admin_call = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        "path": st.sampled_from(PATHS),
        "n": st.one_of(st.integers(100, 2**70).map(str), st.text(max_size=10)),
        "k": st.text(max_size=20),
        "body": st.one_of(
            st.binary(max_size=300),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["slot", "paused", "node_id", "x"]), inner)
                ),
                max_leaves=8,
            ).map(lambda v: json.dumps(v).encode()),
        ),
        "auth": st.sampled_from([None, f"Bearer {TOKEN}", "Bearer nope", "Basic !!", "Basic"]),
    }
)


@seed(20261206)
@FUZZ
@given(call=admin_call, node=st.sampled_from([1, 2, 3]))
def test_admin_port_survives_random_requests(
    cluster: Cluster, call: dict[str, Any], node: int
) -> None:
    INPUTS["admin"] += 1
    path = call["path"].format(n=call["n"], k=call["k"])
    auth = call["auth"]
    if auth == f"Bearer {TOKEN}" and (
        path.startswith(GUARDED) or ("/split" in path and call["n"].isdigit())
    ):
        auth = None  # authorised, these would really remove nodes or split shards
    quoted = urllib.request.quote(path, safe="/")
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.nodes[node].admin_port}{quoted}",
        data=call["body"] if call["method"] in ("POST", "PUT", "PATCH") else None,
        method=call["method"],
        headers={"Authorization": auth} if auth else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, ValueError):
        return  # the client library refused the request itself
    assert status < 500 or status == 503, f"{call['method']} {path}: {status}"


def test_admin_port_fuzz_left_the_cluster_whole(cluster: Cluster) -> None:
    assert_healthy(cluster)
    print(f"\nfuzz inputs per port: {INPUTS}")


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
