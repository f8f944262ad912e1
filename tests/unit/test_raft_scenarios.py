"""Scripted Raft interaction scenarios with checked-in output (tests/unit/raft_scenarios).

Each ``*.txt`` file is run by ``raft_scenarios/harness.py`` and its output compared with
the expected text written under each command. After a deliberate behaviour change, review
the diff produced by::

    SHARDKV_REWRITE=1 pytest tests/unit/test_raft_scenarios.py
    git diff tests/unit/raft_scenarios/
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCENARIO_DIR = Path(__file__).parent / "raft_scenarios"


def _load_harness() -> ModuleType:
    # Loaded by path so the test does not depend on how pytest sets up sys.path.
    name = "shardkv_raft_scenario_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCENARIO_DIR / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
SCENARIOS = sorted(SCENARIO_DIR.glob("*.txt"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    if os.environ.get("SHARDKV_REWRITE") == "1":
        harness.rewrite_file(path)
    expected, actual = harness.run_file(path)
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)",
                tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(f"scenario output differs (SHARDKV_REWRITE=1 to accept):\n{diff}")


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 10
