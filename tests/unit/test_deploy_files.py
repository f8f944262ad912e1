"""The deploy files (deploy/docker, deploy/kubernetes) stay runnable: this machine cannot
build images (no registry but the package ones), so their contract is checked here. The
image runs a command the package installs, as a non-root user, with its data on a volume;
every SHARDKV_* setting they use is a real setting and the resulting configuration
loads; the StatefulSet's start script gives each pod the right node id and founds or
joins the cluster as it should; probes, services and the disruption budget fit together."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import yaml

from shardkv.cli.main import main as cli
from shardkv.server.config import ServerConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker" / "compose.yaml"
KUBERNETES = ROOT / "deploy" / "kubernetes" / "shardkv.yaml"
SETTINGS = {f.name for f in ServerConfig.__dataclass_fields__.values()}
DEFAULTS = ServerConfig()


def _settings_named(text: str) -> set[str]:
    return {m.lower() for m in re.findall(r"\bSHARDKV_([A-Z_]+?)\b(?!=)", text)}


def test_every_shardkv_variable_in_the_deploy_files_is_a_setting() -> None:
    ignored = {"password"}  # compose's own variable, not read by the server
    for path in (DOCKERFILE, COMPOSE, KUBERNETES):
        unknown = _settings_named(path.read_text()) - SETTINGS - ignored
        assert not unknown, f"{path.name} sets unknown settings: {unknown}"


def test_the_image_runs_the_packaged_server_as_a_non_root_user_on_a_volume() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    user = re.search(r"^USER (\S+)$", text, re.MULTILINE)
    assert user is not None and user.group(1).split(":")[0] not in ("0", "root")
    assert '"/data"' in re.search(r"^VOLUME (.+)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    entrypoint = re.search(r"^ENTRYPOINT \[(.+)\]$", text, re.MULTILINE)
    assert entrypoint is not None
    program, subcommand = (part.strip().strip('"') for part in entrypoint.group(1).split(","))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts, f"{program} is not a console script of the package"
    assert isinstance(cli, click.Group) and subcommand in cli.commands
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", text, re.MULTILINE).group(1).split()}  # type: ignore[union-attr]
    assert exposed == {DEFAULTS.port, DEFAULTS.peer_port, DEFAULTS.admin_port}
    assert f"127.0.0.1:{DEFAULTS.admin_port}/healthz" in text
    for copied in re.findall(r"^COPY (.+) /src", text, re.MULTILINE):
        for part in copied.split():
            assert (ROOT / part).exists(), f"COPY {part}: no such path in the repository"


def test_the_compose_file_starts_three_nodes_that_agree_on_the_cluster() -> None:
    doc = yaml.safe_load(COMPOSE.read_text().replace("${SHARDKV_PASSWORD:?", "${X:-"))
    services = doc["services"]
    assert set(services) == {"node1", "node2", "node3"}
    for name, service in services.items():
        env = service["environment"]
        assert (ROOT / "deploy" / "docker" / service["build"]["context"]).resolve() == ROOT
        assert (ROOT / service["build"]["dockerfile"]).exists()
        assert any(v.endswith(":/data") for v in service["volumes"])
        config = load_config(environ={k: str(v) for k, v in env.items()})
        assert config.initial_cluster is not None
        members = dict(m.split("=") for m in config.initial_cluster.split(","))
        assert members[str(config.node_id)] == f"{name}:{DEFAULTS.peer_port}"
        assert config.advertise_host == name


def _kubernetes() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(KUBERNETES.read_text()):
        assert doc["apiVersion"] and doc["metadata"]["name"]
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def test_the_statefulset_probes_readiness_and_the_budget_keeps_a_majority() -> None:
    kinds = _kubernetes()
    (statefulset,) = kinds["StatefulSet"]
    (budget,) = kinds["PodDisruptionBudget"]
    spec = statefulset["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] <= (DEFAULTS.replicas - 1) // 2
    headless = [s for s in kinds["Service"] if s["metadata"]["name"] == spec["serviceName"]]
    assert headless and headless[0]["spec"]["clusterIP"] == "None"
    (container,) = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "client": DEFAULTS.port,
        "peer": DEFAULTS.peer_port,
        "admin": DEFAULTS.admin_port,
    }
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] == "admin"
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["SHARDKV_DATA_DIR"]


def test_the_start_script_founds_the_cluster_on_pods_0_to_2_and_joins_on_later_ones() -> None:
    (statefulset,) = _kubernetes()["StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    script = container["command"][2].replace("exec shardkv server", "env")
    for ordinal in (0, 2, 3, 7):
        hostname = f"shardkv-{ordinal}"
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            env={"HOSTNAME": hostname, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        env |= {e["name"]: e["value"] for e in container["env"] if "value" in e}
        config = load_config(environ=env)
        assert config.node_id == ordinal + 1
        assert config.advertise_host == f"{hostname}.shardkv-peers"
        if ordinal < 3:
            assert config.initial_cluster is not None and config.join is None
            members = dict(m.split("=") for m in config.initial_cluster.split(","))
            assert members[str(ordinal + 1)] == f"{hostname}.shardkv-peers:{DEFAULTS.peer_port}"
        else:
            assert config.initial_cluster is None
            assert config.join == f"shardkv-peers:{DEFAULTS.peer_port}"
