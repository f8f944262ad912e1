"""Every third-party import is declared in pyproject.toml, in the list that installs it.

A clean machine installs only what ``dependencies`` (for ``src/``) and the ``test`` extra
(for ``tests/`` and ``bench/``) name. A package that happens to be on the developer's
machine but is declared nowhere makes CI green here and red on a new clone; this test
names such an import before that happens.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = frozenset({"shardkv", "tests"})


@dataclass(frozen=True)
class Finding:
    """One import that a clean install would not satisfy."""

    path: str
    line: int
    module: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module!r}: {self.reason}"


def canonical(dist: str) -> str:
    """PEP 503 name: 'grpcio_tools' and 'GrpcIO-Tools' are one distribution."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def declared_distributions(pyproject: Path) -> tuple[set[str], set[str]]:
    """(runtime dependencies, test extra), as canonical distribution names."""
    project = tomllib.loads(pyproject.read_text())["project"]

    def names(specs: Iterable[str]) -> set[str]:
        out = set()
        for spec in specs:
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
            assert match is not None, f"unreadable requirement {spec!r}"
            out.add(canonical(match.group(0)))
        return out

    return names(project["dependencies"]), names(project["optional-dependencies"]["test"])


def top_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def undeclared_imports(
    root: Path,
    runtime: set[str],
    test: set[str],
    module_dists: Mapping[str, list[str]],
) -> list[Finding]:
    """Check ``root/src`` against ``runtime`` and ``root/tests``, ``root/bench`` against
    ``runtime | test``. ``module_dists`` maps an importable top-level module to the
    distributions that provide it (``importlib.metadata.packages_distributions()``); a module
    missing from it is installed by nothing, so it cannot be declared."""
    findings = []
    for folder, allowed in (("src", runtime), ("tests", runtime | test), ("bench", runtime | test)):
        for path in sorted((root / folder).rglob("*.py")):
            siblings = {p.stem for p in path.parent.iterdir()}
            for line, module in top_level_imports(path):
                if (
                    module in sys.stdlib_module_names
                    or module in PROJECT_PACKAGES
                    or module in siblings
                ):
                    continue
                rel = str(path.relative_to(root))
                dists = {canonical(d) for d in module_dists.get(module, [])}
                if not dists:
                    findings.append(
                        Finding(
                            rel,
                            line,
                            module,
                            "no installed distribution provides it; declare it in pyproject.toml",
                        )
                    )
                elif not dists & allowed:
                    where = "dependencies" if folder == "src" else "the 'test' extra"
                    findings.append(
                        Finding(rel, line, module, f"provided by {sorted(dists)}, not in {where}")
                    )
    return findings


def test_every_third_party_import_is_declared_in_the_right_list() -> None:
    runtime, test = declared_distributions(ROOT / "pyproject.toml")
    findings = undeclared_imports(ROOT, runtime, test, packages_distributions())
    assert not findings, "undeclared imports:\n" + "\n".join(map(str, findings))


def test_the_check_names_an_undeclared_import_and_a_test_only_package_used_by_src(
    tmp_path: Path,
) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "src" / "pkg" / "a.py").write_text("import json\nimport yaml\nfrom . import b\n")
    (tmp_path / "src" / "pkg" / "b.py").write_text("import pytest\n")
    (tmp_path / "tests" / "t.py").write_text(
        "import pytest\nimport helper\nfrom shardkv import core\n\n"
        "def f():\n    import notdeclared\n"
    )
    (tmp_path / "tests" / "helper.py").write_text("")
    module_dists = {"yaml": ["PyYAML"], "pytest": ["pytest"]}
    findings = undeclared_imports(tmp_path, {"pyyaml"}, {"pytest"}, module_dists)
    assert [(f.path, f.line, f.module) for f in findings] == [
        ("src/pkg/b.py", 1, "pytest"),
        ("tests/t.py", 6, "notdeclared"),
    ]
    assert "not in dependencies" in findings[0].reason
