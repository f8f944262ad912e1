"""``shardkv node remove``: decommission a node through the placement group's leader."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from shardkv.cli.local_cluster import discover_admins, fetch_status
from shardkv.core.cluster.shardmap import NODE_REMOVED, ShardMap

#: How often the drain's progress is read.
POLL_INTERVAL_S = 1.0


class NodeRemoveError(Exception):
    """The node cannot be removed now; the message says why and what to do."""


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
    leader = _placement_leader_admin(every)
    if leader is None:
        raise NodeRemoveError(
            f"no placement group leader found through {', '.join(every)}: is the cluster up?"
        )
    request = urllib.request.Request(f"http://{leader}/v1/nodes/{node_id}/remove", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            json.load(resp)
    except urllib.error.HTTPError as err:
        raise NodeRemoveError(json.load(err).get("error", str(err))) from err
    except (urllib.error.URLError, OSError) as err:
        raise NodeRemoveError(f"cannot reach {leader}: {err}") from err
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
    raise NodeRemoveError(
        f"node {node_id} still holds replicas after {timeout_s:.0f} s; it keeps draining "
        "(see `shardkv node list`)"
    )


def _placement_leader_admin(admins: list[str], wait_s: float = 30.0) -> str | None:
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
