"""The live cluster page on every node's admin port: ``GET /`` (HTML and JavaScript, no
build step, nothing fetched from the internet) and the JSON it polls, ``GET /v1/cluster``.

``/v1/cluster`` is this node's view of the whole cluster: the map it follows (nodes,
shards, slot ranges, epochs, replicas, moves under way) joined with every node's own
``/v1/status``, fetched by this node at each call (``PEER_STATUS_TIMEOUT_S`` each, all at
once), so the page needs no cross-origin calls. A node that does not answer in time is
shown down. The page is read-only; with the admin token typed in, it can pause and resume
balancing (``POST /v1/rebalance``, checked by the admin guard like any other call).
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from shardkv.server.app import Server

#: How long the page's data call waits for another node's status (a busy node can take a
#: moment; a dead one is still shown down within a poll or two).
PEER_STATUS_TIMEOUT_S: Final = 2.0

_PAGE_HTML: Final = resources.files("shardkv.server").joinpath("cluster_page.html")


def add_routes(app: web.Application, server: Server) -> None:
    """Serve the page at ``/`` and its data at ``/v1/cluster`` on the admin app."""
    page = _PAGE_HTML.read_bytes()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def cluster(request: web.Request) -> web.Response:
        return web.json_response(await cluster_view(server))

    app.router.add_get("/", index)
    app.router.add_get("/v1/cluster", cluster)


async def cluster_view(server: Server) -> dict[str, Any]:
    """Nodes, shards and moves as this node sees them now (see the module docstring)."""
    own = server.status_body()
    shard_map = json.loads(own["shard_map"]) if own.get("shard_map") else None
    if shard_map is None:
        node = {"id": own["node_id"], "state": "up", "reachable": True, **_live(own)}
        return {"node_id": own["node_id"], "nodes": [node], "shards": [], "rebalance": None}
    nodes = {
        row[0]: {
            "id": row[0],
            "peer": row[1],
            "client": row[2],
            "admin": row[3],
            "state": row[4],
            "labels": row[5] if len(row) > 5 else {},
        }
        for row in shard_map["nodes"]
    }
    statuses = await _statuses(server, own, nodes)
    for node_id, node in nodes.items():
        status = statuses.get(node_id)
        node["reachable"] = status is not None
        if status is not None:
            node.update(_live(status))
    shards = _shards(shard_map, statuses)
    rebalance = None
    if server.cluster is not None:
        rebalance = server.cluster.runtime.driver.rebalance_status()
    return {
        "node_id": own["node_id"],
        "generated_ms": int(time.time() * 1000),
        "nodes": [nodes[i] for i in sorted(nodes)],
        "shards": shards,
        "rebalance": rebalance,
    }


async def _statuses(
    server: Server, own: dict[str, Any], nodes: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    statuses: dict[int, dict[str, Any]] = {own["node_id"]: own}
    others = [
        (i, n["admin"])
        for i, n in nodes.items()
        if i != own["node_id"] and n["admin"] and n["state"] != "removed"
    ]
    scheme = "https" if server.config.admin_tls_cert else "http"
    timeout = aiohttp.ClientTimeout(total=PEER_STATUS_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(node_id: int, address: str) -> None:
            try:
                async with session.get(f"{scheme}://{address}/v1/status") as resp:
                    if resp.status == 200:
                        statuses[node_id] = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass  # not answering: shown down

        await asyncio.gather(*(fetch(i, a) for i, a in others))
    return statuses


def _live(status: dict[str, Any]) -> dict[str, Any]:
    """The per-node figures the page shows and charts."""
    shards = status.get("shards") or []
    live = status.get("live") or {}
    return {
        "shards_hosted": len(shards),
        "shards_led": sum(1 for s in shards if s["role"] == "leader"),
        "disk_free_bytes": (status.get("disk") or {}).get("free_bytes"),
        "disk_full": (status.get("disk") or {}).get("full", False),
        "rss_bytes": live.get("rss_bytes"),
        "commands": live.get("commands", 0),
        "latency_bucket_bounds_s": live.get("latency_bucket_bounds_s", []),
        "latency_buckets": live.get("latency_buckets", []),
        "leader_changes": live.get("leader_changes", 0),
        "ready": status.get("ready", True),
    }


def _shards(shard_map: dict[str, Any], statuses: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every shard of the map, with the figures its leader reports (keys, bytes, lag)."""
    reports: dict[int, dict[str, Any]] = {}
    for status in statuses.values():
        for s in status.get("shards") or []:
            if s["role"] == "leader" or s["shard"] not in reports:
                reports[s["shard"]] = s
    out = []
    for row in shard_map["shards"]:
        shard_id, slots, replicas, epoch = row[0], row[1], row[2], row[3]
        target = row[4] if len(row) > 4 else []
        report = reports.get(shard_id, {})
        leader = report.get("leader", 0) if report.get("role") == "leader" else 0
        out.append(
            {
                "id": shard_id,
                "slots": slots,
                "epoch": epoch,
                "replicas": replicas,
                "target": target,
                "leader": leader,
                "keys": report.get("keys"),
                "bytes": report.get("data_bytes"),
                "lag": report.get("lag"),
                "applied": report.get("applied"),
                "state": report.get("state", ""),
            }
        )
    return out
