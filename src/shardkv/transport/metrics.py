"""Prometheus view of a `PeerTransport`'s counters, read only when ``/metrics`` is scraped.

The transport keeps plain ints on its hot path (`PeerStats`, `TransportStats`); this
collector turns them into metric families at scrape time. Register it once per transport::

    registry.register(TransportCollector(transport))
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shardkv.transport.transport import PeerTransport

_DROP_REASONS = ("overflow", "blocked", "in_flight", "too_large", "unencodable")


class TransportCollector(Collector):
    """Per-peer gauges and counters (label ``peer``: the node id) and transport-wide
    inbound counters, all named ``shardkv_peer_*`` / ``shardkv_transport_*``."""

    def __init__(self, transport: PeerTransport) -> None:
        self._transport = transport

    def collect(self) -> Iterator[Metric]:
        peers = self._transport.peer_stats()
        connected = GaugeMetricFamily(
            "shardkv_peer_connected", "1 if the stream to the peer is open.", labels=["peer"]
        )
        queued = GaugeMetricFamily(
            "shardkv_peer_queue_messages", "Raft messages queued for the peer.", labels=["peer"]
        )
        queued_bytes = GaugeMetricFamily(
            "shardkv_peer_queue_bytes",
            "Estimated bytes of Raft messages queued for the peer.",
            labels=["peer"],
        )
        sent = CounterMetricFamily(
            "shardkv_peer_sent_messages", "Raft messages written to the peer.", labels=["peer"]
        )
        batches = CounterMetricFamily(
            "shardkv_peer_sent_batches",
            "Stream messages (batches of Raft messages) written to the peer.",
            labels=["peer"],
        )
        dropped = CounterMetricFamily(
            "shardkv_peer_dropped_messages",
            "Raft messages to the peer that were dropped, by reason.",
            labels=["peer", "reason"],
        )
        connects = CounterMetricFamily(
            "shardkv_peer_connects",
            "Connection attempts to the peer, by outcome.",
            labels=["peer", "outcome"],
        )
        snapshots = CounterMetricFamily(
            "shardkv_peer_snapshots_sent",
            "Snapshots sent to the peer, by outcome.",
            labels=["peer", "outcome"],
        )
        for node_id, s in sorted(peers.items()):
            peer = str(node_id)
            connected.add_metric([peer], 1.0 if s.connected else 0.0)
            queued.add_metric([peer], s.queued_messages)
            queued_bytes.add_metric([peer], s.queued_bytes)
            sent.add_metric([peer], s.sent_messages)
            batches.add_metric([peer], s.sent_batches)
            for reason in _DROP_REASONS:
                dropped.add_metric([peer, reason], getattr(s, f"dropped_{reason}"))
            connects.add_metric([peer, "ok"], s.connects)
            connects.add_metric([peer, "failed"], s.connect_failures)
            snapshots.add_metric([peer, "ok"], s.snapshots_sent)
            snapshots.add_metric([peer, "failed"], s.snapshots_failed)
        yield from (connected, queued, queued_bytes, sent, batches, dropped, connects, snapshots)

        t = self._transport.stats()
        received = CounterMetricFamily(
            "shardkv_transport_received_messages", "Raft messages delivered to this node."
        )
        received.add_metric([], t.received_messages)
        received_batches = CounterMetricFamily(
            "shardkv_transport_received_batches", "Stream messages received by this node."
        )
        received_batches.add_metric([], t.received_batches)
        dropped_in = CounterMetricFamily(
            "shardkv_transport_dropped_messages",
            "Raft messages dropped by this node's transport outside any peer queue, by reason.",
            labels=["reason"],
        )
        dropped_in.add_metric(["inbound_blocked"], t.dropped_inbound_blocked)
        dropped_in.add_metric(["misrouted"], t.dropped_misrouted)
        dropped_in.add_metric(["undecodable"], t.dropped_undecodable)
        dropped_in.add_metric(["unknown_peer"], t.dropped_unknown_peer)
        dropped_in.add_metric(["snapshot_backlog"], t.dropped_snapshot_backlog)
        snapshots_in = CounterMetricFamily(
            "shardkv_transport_snapshots_received",
            "Snapshots received by this node, by outcome.",
            labels=["outcome"],
        )
        snapshots_in.add_metric(["ok"], t.snapshots_received)
        snapshots_in.add_metric(["refused"], t.snapshots_refused)
        refusals = CounterMetricFamily(
            "shardkv_peer_refusals",
            "Peer calls refused by the identity check (another cluster, a certificate of "
            "another node or of none), by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(t.peer_refusals.items()):
            refusals.add_metric([reason], count)
        yield from (received, received_batches, dropped_in, snapshots_in, refusals)
