from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debian import debian_program
from tests.integration.harness import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data") as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_cli() -> str:
    return debian_program("redis-cli", "redis-tools")
