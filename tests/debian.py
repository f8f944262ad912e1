"""The Debian programs tests use (redis-cli, redis-server, chromium, promtool): found on
PATH, or installed with apt-get first, so a clean machine runs every test instead of
skipping one."""

from __future__ import annotations

import shutil
import subprocess

INSTALL_TIMEOUT_S = 900


def debian_program(program: str, package: str) -> str:
    """The path of ``program``, installing Debian's ``package`` if it is missing. Raises
    ``CalledProcessError`` if apt-get fails, ``AssertionError`` if the package did not
    bring the program."""
    path = shutil.which(program)
    if path is None:
        subprocess.run(
            ["apt-get", "install", "-y", package],
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        path = shutil.which(program)
    assert path is not None, f"{program} is needed: apt-get install -y {package}"
    return path
