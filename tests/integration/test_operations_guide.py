"""docs/operations.md is runnable: every ``sh`` block of the guide, in the order the guide
gives them, in one bash session (``set -euo pipefail``), on free ports and a temporary
directory. The processes the guide starts are stopped by their pid files afterwards,
whatever happened."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: Ports the guide uses, relative to BASE: node N's client, peer and admin ports, and the
#: restored cluster's (BASE+10+N, BASE+110+N, BASE+210+N).
PORT_OFFSETS = [base + n for base in (0, 100, 200) for n in (1, 2, 3, 4)] + [
    base + 10 + n for base in (0, 100, 200) for n in (1, 2, 3)
]
GUIDE_TIMEOUT_S = 600


def guide_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)


def free_base() -> int:
    """A BASE whose every guide port is free on 127.0.0.1."""
    for base in range(21_000 + os.getpid() % 500 * 20, 60_000, 997):
        try:
            for offset in PORT_OFFSETS:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports for the guide")


def test_the_operations_guide_runs_from_start_to_end(tmp_path: Path) -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 8, "the guide lost its runnable blocks"
    work = tmp_path / "ops"
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '### guide block {i + 1}'\n{block}" for i, block in enumerate(blocks)
    )
    env = {
        **os.environ,
        "BASE": str(free_base()),
        "WORK": str(work),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=GUIDE_TIMEOUT_S,
        )
    finally:
        for pid_file in work.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in work.glob("*.log"))
    assert result.returncode == 0, (
        f"the guide failed (exit {result.returncode}):\n{result.stdout[-4000:]}\n"
        f"{result.stderr[-4000:]}\n{logs}"
    )
    assert f"### guide block {len(blocks)}" in result.stdout
