"""Prometheus view of a node's Raft groups, read at scrape time (never on the loop's
hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shardkv.core.cluster.shardmap import NODE_DRAINING, NODE_REMOVED, NODE_UP
from shardkv.core.raft import Role
from shardkv.node.runtime import NodeRuntime


class RaftCollector(Collector):
    """Raft state at scrape time: ``shardkv_raft_*`` gauges and counters per group."""

    def __init__(
        self,
        runtime: NodeRuntime,
        max_shard_series: int = 64,
        snapshot_send_wait_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._runtime = runtime
        self._max_shard_series = max_shard_series
        self._snapshot_send_wait_s = snapshot_send_wait_s

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime
        groups = rt.groups()
        led = sum(1 for _, replica in groups if replica.is_leader)
        leaderless = sum(1 for _, replica in groups if replica.leader_id == 0)
        for name, doc, value in (
            ("shardkv_shards_hosted", "Shards with a replica on this node.", len(groups)),
            ("shardkv_shards_led", "Shards this node leads.", led),
            ("shardkv_shards_without_leader", "Hosted shards that know no leader.", leaderless),
            (
                "shardkv_shards_hibernating",
                "Hosted shards idle enough to stop ticking (no heartbeats).",
                rt.driver.hibernating_groups(),
            ),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value))
            yield g
        # Per-shard series only while their number stays small: past the bound, only the
        # node-wide figures above (a 1000-shard node would export 13,000 series).
        per_shard = groups[: self._max_shard_series]
        role = GaugeMetricFamily(
            "shardkv_raft_role", "1 for this replica's current role.", labels=["group", "role"]
        )
        statuses = [
            (str(shard.shard_id), replica, replica.raw.status()) for shard, replica in per_shard
        ]
        for group, _, st in statuses:
            for r in Role:
                role.add_metric([group, r.name.lower()], 1.0 if st.role is r else 0.0)
        yield role
        for name, doc, pick in (
            ("shardkv_raft_term", "Current Raft term.", lambda r, st: st.term),
            ("shardkv_raft_commit_index", "Highest committed log index.", lambda r, st: st.commit),
            (
                "shardkv_raft_applied_index",
                "Highest applied log index.",
                lambda r, st: r.applied_index,
            ),
            (
                "shardkv_raft_first_index",
                "First log index still on disk.",
                lambda r, st: st.first_index,
            ),
            ("shardkv_raft_last_index", "Last log index on disk.", lambda r, st: st.last_index),
            (
                "shardkv_raft_leader",
                "Node id of the known leader (0: none).",
                lambda r, st: st.lead,
            ),
        ):
            g = GaugeMetricFamily(name, doc, labels=["group"])
            for group, replica, st in statuses:
                g.add_metric([group], float(pick(replica, st)))
            yield g
        placement, shard_map = rt.driver.placement_status()
        nodes = GaugeMetricFamily(
            "shardkv_cluster_nodes", "Nodes in this node's copy of the map.", labels=["state"]
        )
        for state in (NODE_UP, NODE_DRAINING, NODE_REMOVED):
            count = sum(
                1 for n in (shard_map.nodes.values() if shard_map else ()) if n.state == state
            )
            nodes.add_metric([state], float(count))
        yield nodes
        for name, doc, value in (
            (
                "shardkv_placement_leader",
                "1 if this node leads the placement group (group 0).",
                1 if placement.is_leader else 0,
            ),
            (
                "shardkv_placement_applied_index",
                "Placement group entries applied here (the map's version on this node).",
                placement.applied_index,
            ),
            (
                "shardkv_placement_moves_running",
                "Shards moving to a new set of replicas (a target in the map).",
                sum(1 for s in (shard_map.shards.values() if shard_map else ()) if s.target),
            ),
            (
                "shardkv_placement_shards_under_replicated",
                "Shards with fewer replicas on live nodes than the cluster can give them"
                " (reported by the placement group's leader; 0 on other nodes).",
                rt.driver.under_replicated_shards(),
            ),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value))
            yield g
        for name, doc, value in (
            ("shardkv_raft_leader_changes", "Role or leader changes seen.", rt.leader_changes),
            ("shardkv_raft_proposals", "Client write batches proposed.", rt.proposals),
            (
                "shardkv_raft_snapshots_taken",
                "Snapshots taken (log compaction).",
                rt.snapshots_taken,
            ),
            (
                "shardkv_raft_snapshots_installed",
                "Snapshots received and installed.",
                rt.snapshots_installed,
            ),
            (
                "shardkv_raft_snapshots_refused",
                "Snapshots dropped on arrival: slots this node's map does not let the replica "
                "take yet (a merge it has not seen), or an unreadable header.",
                rt.driver.snapshots_refused,
            ),
            (
                "shardkv_snapshot_bytes_installed",
                "Bytes of shard snapshots installed here (replicas moved or caught up).",
                rt.driver.snapshots.installed_bytes,
            ),
            (
                "shardkv_placement_moves_scheduled",
                "Moves this node proposed as the placement group's leader (repairs, "
                "balance, drains).",
                rt.driver.moves_scheduled,
            ),
            (
                "shardkv_placement_moves_finished",
                "Moves this node recorded as reached, as the placement group's leader.",
                rt.driver.moves_finished,
            ),
            (
                "shardkv_placement_moves_failed",
                "Moves this node re-aimed or cancelled as the placement group's leader (a "
                "node they involved died or started draining).",
                rt.driver.moves_failed,
            ),
            (
                "shardkv_replicas_destroyed",
                "Replicas deleted here after they moved away.",
                rt.driver.replicas_destroyed,
            ),
            (
                "shardkv_shard_splits_applied",
                "Split entries applied here (a new shard's replica started from the data on disk).",
                rt.driver.splits_applied,
            ),
            (
                "shardkv_placement_splits_recorded",
                "Splits this node recorded in the map, as the placement group's leader.",
                rt.driver.splits_recorded,
            ),
            (
                "shardkv_shard_merges_applied",
                "Absorb entries applied here (a survivor took a retired shard's slots).",
                rt.driver.merges_applied,
            ),
            (
                "shardkv_placement_merges_recorded",
                "Merges this node recorded in the map, as the placement group's leader.",
                rt.driver.merges_recorded,
            ),
            (
                "shardkv_snapshot_send_wait_seconds",
                "Seconds snapshot sends waited for the node's snapshot_send_bytes_per_s.",
                self._snapshot_send_wait_s(),
            ),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], float(value))
            yield c
