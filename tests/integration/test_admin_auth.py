"""The admin HTTP port: reading health is open, changing state or reading data needs a
bearer token or an ACL admin's credentials; served over HTTPS when asked."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.harness import ServerProcess, make_certs

TOKEN = "t0ken-for-tests"


def status_of(
    url: str,
    method: str = "GET",
    auth: str | None = None,
    data: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> int:
    headers = {"Authorization": auth} if auth else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_mutating_and_data_calls_need_the_token_or_an_admin_user(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    node = ServerProcess(tmp_path / "data", "--admin-token-file", str(token_file)).start()
    with node:
        base = f"http://127.0.0.1:{node.admin_port}"
        for path in ("/metrics", "/healthz", "/v1/status"):
            assert status_of(base + path) == 200, path
        kv = base + "/v1/kv/greeting"
        # Without credentials, with a wrong token: refused, and nothing was written.
        assert status_of(kv, "PUT", data=b"hello") == 401
        assert status_of(kv, "PUT", auth="Bearer wrong", data=b"hello") == 401
        assert status_of(base + "/v1/backup", "POST") == 401
        assert node.client().get("greeting") is None
        # The token lets the same calls through.
        assert status_of(kv, "PUT", auth=f"Bearer {TOKEN}", data=b"hello") == 200
        assert status_of(kv, auth=f"Bearer {TOKEN}") == 200
        # So do an ACL user's credentials, if that user may run @admin commands.
        admin = node.client()
        admin.execute_command("ACL", "SETUSER", "ops", "on", ">opspw", "allkeys", "+@all")
        admin.execute_command("ACL", "SETUSER", "app", "on", ">apppw", "allkeys", "+@read")
        assert status_of(kv, auth=basic("ops", "opspw")) == 200
        assert status_of(kv, auth=basic("ops", "wrong")) == 401
        assert status_of(kv, auth=basic("app", "apppw")) == 403
        # A user without a password proves nothing (here: the default user).
        assert status_of(kv, auth=basic("default", "anything")) == 401
        # The CLI passes the token from --admin-token-file.
        cli = [sys.executable, "-m", "shardkv"]
        backup = [*cli, "backup", "create", str(tmp_path / "bk"), "--admin", base[7:]]
        refused = subprocess.run(backup, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        made = subprocess.run(
            [*cli, "--admin-token-file", str(token_file), *backup[3:]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        assert json.loads((tmp_path / "bk" / "manifest.json").read_text())["groups"]
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert 'shardkv_admin_refusals_total{status="401"}' in metrics


def test_the_admin_port_serves_https_with_its_own_certificate(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_certs(certs, "ca", ["admin"])
    node = ServerProcess(
        tmp_path / "data",
        "--admin-tls-cert",
        str(certs / "admin.crt"),
        "--admin-tls-key",
        str(certs / "admin.key"),
    ).start()
    with node:
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        url = f"https://127.0.0.1:{node.admin_port}/healthz"
        assert status_of(url, context=context) == 200
