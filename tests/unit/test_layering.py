"""The core stays pure: it imports no I/O, no clock, no global randomness, no shell package."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "src" / "shardkv" / "core"

FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "multiprocessing",
    "subprocess",
    "time",
    "datetime",
    "uuid",
    "os",
    "grpc",
    "rocksdict",
    "aiohttp",
    "uvloop",
    "secrets",
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    imports_random = False
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "random" and any(a.name != "Random" for a in node.names):
                found.append(f"{path.name}: imports global random functions")
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(f"{path.name}:{node.lineno} imports {name}")
            if name.startswith("shardkv.") and not name.startswith("shardkv.core"):
                found.append(f"{path.name}:{node.lineno} imports shell package {name}")
            if top == "random":
                imports_random = True
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            found.append(f"{path.name}:{node.lineno} uses the global random.{node.attr}")
    del imports_random
    return found


def test_core_imports_nothing_impure() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 5
    problems = [v for f in files for v in _violations(f)]
    assert problems == []


def test_the_checker_catches_a_planted_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\nimport random\nfrom shardkv.server import app\nx = random.random()\n"
    )
    assert len(_violations(bad)) == 3
