"""Prometheus metrics, all named ``shardkv_*``, in a registry owned by one server.

Per-command counters and latency histograms are on the hot path (tens of thousands of
commands a second), so they are kept as plain ints and lists here and turned into metric
families only when ``/metrics`` is scraped, instead of paying prometheus_client's locking
for every command.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Latency buckets in seconds: 50 us to 2.5 s.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class _CommandStats(Collector):
    """Counts of commands by name and outcome, and a latency histogram per command."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def record(self, command: str, outcome: str, latency_s: float) -> None:
        key = (command, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets = self._buckets.get(command)
        if buckets is None:
            buckets = self._buckets[command] = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self._sums[command] = 0.0
        buckets[bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        self._sums[command] += latency_s

    def totals(self) -> tuple[tuple[float, ...], list[int], int]:
        """(latency bucket bounds, per-bucket counts over every command (the last is
        above the last bound), commands counted): the cluster page's rates."""
        buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        for per_command in self._buckets.values():
            for i, n in enumerate(per_command):
                buckets[i] += n
        return LATENCY_BUCKETS_S, buckets, sum(self.counts.values())

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "shardkv_commands",
            "Commands processed, by command and outcome (ok or error).",
            labels=["command", "outcome"],
        )
        for (command, outcome), n in sorted(self.counts.items()):
            total.add_metric([command, outcome], n)
        yield total
        hist = HistogramMetricFamily(
            "shardkv_command_duration_seconds",
            "Time from reading a command to writing its reply, by command.",
            labels=["command"],
        )
        for command, buckets in sorted(self._buckets.items()):
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), buckets, strict=True):
                running += n
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            hist.add_metric([command], cumulative, self._sums[command])
        yield hist


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = _CommandStats()
        r.register(self.commands)
        self.connections_open = Gauge(
            "shardkv_connections_open", "Client connections open now.", registry=r
        )
        self.connections_accepted = Counter(
            "shardkv_connections_accepted", "Client connections accepted.", registry=r
        )
        self.connections_rejected = Counter(
            "shardkv_connections_rejected",
            "Client connections refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "shardkv_auth_failures",
            "AUTH and HELLO AUTH attempts refused (wrong password, unknown or disabled user).",
            registry=r,
        )
        self.permission_denials = Counter(
            "shardkv_acl_denials",
            "Commands refused by the ACL (-NOPERM) or before authentication (-NOAUTH).",
            registry=r,
        )
        self.disk_free_bytes = Gauge(
            "shardkv_disk_free_bytes", "Free bytes in the data directory's filesystem.", registry=r
        )
        self.disk_full = Gauge(
            "shardkv_disk_full",
            "1 while free space is below min_free_disk_bytes: writes here are refused.",
            registry=r,
        )
        self.admin_refusals = Counter(
            "shardkv_admin_refusals",
            "Admin HTTP calls refused for missing or wrong credentials, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.connections_dropped = Counter(
            "shardkv_connections_dropped",
            "Client connections closed by the server, by reason.",
            ["reason"],
            registry=r,
        )
        self.bytes_in = Counter("shardkv_net_input_bytes", "Bytes read from clients.", registry=r)
        self.bytes_out = Counter(
            "shardkv_net_output_bytes", "Bytes written to clients.", registry=r
        )
        self.protocol_errors = Counter(
            "shardkv_protocol_errors", "Connections closed for a RESP protocol error.", registry=r
        )
        self.storage_commit_seconds = Histogram(
            "shardkv_storage_commit_seconds",
            "Duration of one durable storage sync (group commit).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.storage_commit_commands = Histogram(
            "shardkv_storage_commit_commands",
            "Commands covered by one storage sync.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.keys = Gauge(
            "shardkv_keys", "Keys stored (including not yet swept expired keys).", registry=r
        )
        self.expired_keys = Counter(
            "shardkv_expired_keys", "Keys deleted by the expiry sweep.", registry=r
        )


def metric_names(registry: CollectorRegistry) -> Iterable[str]:
    for family in registry.collect():
        yield family.name
