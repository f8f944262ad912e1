"""Unchanged Redis tools and clients work against ShardKV."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from tests.integration.harness import ServerProcess


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_works_with_resp2_and_resp3(server: ServerProcess, protocol: int) -> None:
    r = redis.Redis(port=server.port, protocol=protocol)
    assert r.ping() is True
    assert r.set("k", "v", ex=100) is True
    assert r.get("k") == b"v"
    assert r.get("missing") is None
    assert r.mget("k", "missing") == [b"v", None]
    assert 0 < r.ttl("k") <= 100
    assert r.incrbyfloat("f", 1.5) == 1.5
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.client_setname("me") is True
    assert r.client_getname() in ("me", b"me")
    assert sorted(r.scan_iter(match="*")) == [b"f", b"k"]
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
    pipe.get("p99")
    assert pipe.execute()[-1] == b"99"


def test_redis_benchmark_runs_without_errors(server: ServerProcess, redis_cli: str) -> None:
    bench = shutil.which("redis-benchmark")
    assert bench is not None, "redis-benchmark comes with redis-tools"
    out = subprocess.run(
        [
            bench,
            "-p",
            str(server.port),
            "-t",
            "set,get,incr,mset",
            "-n",
            "2000",
            "-c",
            "10",
            "-d",
            "100",
            "-r",
            "1000",
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split(",")[0].strip('"') for line in out.stdout.splitlines()[1:]}
    assert {"SET", "GET", "INCR", "MSET (10 keys)"} <= rows, out.stdout
    assert "ERR" not in out.stdout + out.stderr


def test_redis_cli_scan_and_pipe_mode(server: ServerProcess, redis_cli: str) -> None:
    commands = "".join(f"SET key:{i} {i}\r\n" for i in range(500))
    piped = subprocess.run(
        [redis_cli, "-p", str(server.port), "--pipe"],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "errors: 0, replies: 500" in piped.stdout, piped.stdout + piped.stderr
    scanned = subprocess.run(
        [redis_cli, "-p", str(server.port), "--scan", "--pattern", "key:1*"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    keys = set(scanned.stdout.split())
    assert keys == {f"key:{i}" for i in range(500) if str(i).startswith("1")}
