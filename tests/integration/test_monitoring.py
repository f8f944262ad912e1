"""The Prometheus alert rules and the Grafana dashboard in deploy/ are valid and name only
metrics that a real cluster exports (so a renamed metric cannot silently blind an alert)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debian import debian_program
from tests.integration.test_cluster import Cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "shardkv-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "shardkv-dashboard.json"
METRIC_NAME = re.compile(r"\bshardkv_[a-z0-9_]+")


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_program("promtool", "prometheus")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name the nodes of a running 3-node cluster expose on /metrics."""
    cluster = Cluster(tmp_path_factory.mktemp("monitoring"), 3, shards=2)
    try:
        cluster.start()
        names: set[str] = set()
        for node in cluster.nodes.values():
            url = f"http://127.0.0.1:{node.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
        yield names
    finally:
        cluster.stop()


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_rules_and_dashboard_name_only_exported_metrics(exported: set[str]) -> None:
    named = set(METRIC_NAME.findall(RULES.read_text())) | set(
        METRIC_NAME.findall(DASHBOARD.read_text())
    )
    assert len(named) >= 10
    missing = sorted(named - exported)
    assert not missing, f"deploy/ names metrics the server does not export: {missing}"
