from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data") as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        subprocess.run(
            ["apt-get", "install", "-y", "redis-tools"],
            check=True,
            capture_output=True,
            timeout=600,
        )
        path = shutil.which("redis-cli")
    assert path is not None, "redis-cli is needed: apt-get install -y redis-tools"
    return path
