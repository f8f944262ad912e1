"""``shardkv node remove``, ``shardkv shard split`` and ``shardkv rebalance``: requests
to the placement group's leader, found through any node's admin address."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import click

from shardkv.cli.admin_http import open_admin
from shardkv.cli.local_cluster import discover_admins, fetch_status
from shardkv.core.cluster.shardmap import NODE_REMOVED, ShardMap

#: How often the drain's progress is read.
POLL_INTERVAL_S = 1.0


class PlacementRequestError(click.ClickException):
    """The request cannot be done now; the message says why and what to do (the CLI
    prints it and exits with status 1)."""


def remove_node(
    admins: list[str],
    node_id: int,
    *,
    wait: bool,
    timeout_s: float,
    echo: Callable[[str], None],
) -> None:
    """Ask the placement group's leader (found through any of ``admins``) to drain
    ``node_id``; with ``wait``, report the replicas left until it is removed."""
    every = discover_admins(admins)
    leader = placement_leader_admin(every)
    if leader is None:
        raise PlacementRequestError(
            f"no placement group leader found through {', '.join(every)}: is the cluster up?"
        )
    call("POST", f"http://{leader}/v1/nodes/{node_id}/remove")
    echo(f"node {node_id} is draining")
    if not wait:
        return
    deadline = time.monotonic() + timeout_s
    last = -1
    while time.monotonic() < deadline:
        shard_map = _map(every)
        if shard_map is not None:
            info = shard_map.nodes.get(node_id)
            if info is None or info.state == NODE_REMOVED:
                echo(f"node {node_id} is removed; stop its process")
                return
            left = sum(1 for s in shard_map.shards.values() if node_id in s.placed)
            if left != last:
                echo(f"node {node_id}: {left} replica{'' if left == 1 else 's'} left")
                last = left
        time.sleep(POLL_INTERVAL_S)
    raise PlacementRequestError(
        f"node {node_id} still holds replicas after {timeout_s:.0f} s; it keeps draining "
        "(see `shardkv node list`)"
    )


def placement_leader_admin(admins: list[str], wait_s: float = 30.0) -> str | None:
    """The admin address of the node that leads the placement group, waiting up to
    ``wait_s`` for one (an election, a cluster just started)."""
    deadline = time.monotonic() + wait_s
    while True:
        for admin in admins:
            st = fetch_status(admin)
            placement = st.get("placement") if st else None
            if isinstance(placement, dict) and placement.get("role") == "leader":
                return admin
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL_S)


def _map(admins: list[str]) -> ShardMap | None:
    for admin in admins:
        st = fetch_status(admin)
        raw = st.get("shard_map") if st else None
        if raw:
            return ShardMap.decode(str(raw).encode())
    return None


def set_rebalance(admins: list[str], paused: bool) -> None:
    """Pause or resume the scheduler's balance and leader moves."""
    leader = _leader_or_fail(admins)
    call("POST", f"http://{leader}/v1/rebalance", {"paused": paused})


def split_shard(admins: list[str], shard_id: int, slot: int | None) -> int:
    """Order a split of ``shard_id`` (before ``slot``; None halves it); the new shard's id."""
    body = {} if slot is None else {"slot": slot}
    out = call("POST", f"http://{_leader_or_fail(admins)}/v1/shards/{shard_id}/split", body)
    return int(out["child"])


def rebalance_status(admins: list[str]) -> dict[str, Any]:
    """The placement group leader's view: ``paused`` and ``operators`` (moves under way)."""
    return call("GET", f"http://{_leader_or_fail(admins)}/v1/rebalance")


def _leader_or_fail(admins: list[str]) -> str:
    every = discover_admins(admins)
    leader = placement_leader_admin(every)
    if leader is None:
        raise PlacementRequestError(
            f"no placement group leader found through {', '.join(every)}: is the cluster up?"
        )
    return leader


def call(
    method: str, url: str, body: dict[str, Any] | None = None, timeout_s: float = 60.0
) -> dict[str, Any]:
    """A JSON admin HTTP request; raises `PlacementRequestError` with the server's error."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    try:
        with open_admin(method, url, data, headers, timeout_s) as resp:
            result: dict[str, Any] = json.load(resp)
            return result
    except urllib.error.HTTPError as err:
        raise PlacementRequestError(json.load(err).get("error", str(err))) from err
    except (urllib.error.URLError, OSError) as err:
        raise PlacementRequestError(f"cannot reach {url}: {err}") from err
