"""Real ShardKV server processes for tests: free ports on 127.0.0.1, always stopped by pid."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

#: Ports tests hand to servers come from below the kernel's ephemeral range (32768+ on
#: Linux). A port from ``bind(0)`` is itself ephemeral: between the probe and the server's
#: bind, any outgoing connection (a gRPC channel of a running cluster) may take it, and the
#: server then dies with "address already in use". (``cluster up``'s test uses 10000-20203.)
TEST_PORT_RANGE = (21000, 32000)
_next_port_offset = itertools.count(os.getpid() * 97)


def free_port() -> int:
    """A 127.0.0.1 TCP port that nothing listens on, never handed out twice by this process."""
    low, high = TEST_PORT_RANGE
    for _ in range(high - low):
        port = low + next(_next_port_offset) % (high - low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {TEST_PORT_RANGE}")


def make_certs(directory: Path, ca: str, names: list[str]) -> None:
    """A CA ``<ca>.crt``/``<ca>.key`` in ``directory`` and, for each name, ``<name>.crt`` and
    ``<name>.key`` signed by it, valid for 127.0.0.1 and localhost (openssl)."""

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60
        )

    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={ca}",
        "-keyout",
        f"{ca}.key",
        "-out",
        f"{ca}.crt",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in names:
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.crt",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.crt",
        )


class ServerProcess:
    """One ``shardkv server`` subprocess. Use as a context manager or call ``stop()``."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.admin_port = free_port()
        self.extra = list(extra)
        self.env = dict(env or {})
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0, wait: bool = True) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "shardkv",
            "server",
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin_port),
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *self.extra,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        if wait:
            self.wait_ready(timeout_s)
        return self

    def again(self, env: dict[str, str] | None = None) -> ServerProcess:
        """A new process (not started) on the same disk, flags and ports; ``env`` replaces
        this one's extra environment when given."""
        node = ServerProcess(
            self.data_dir, *self.extra, port=self.port, env=self.env if env is None else env
        )
        node.admin_port = self.admin_port
        return node

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    # (-NOAUTH: it serves, but wants a password first.)
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer PING within {timeout_s}s:\n{self.log()}")

    def client(self, **kwargs: object) -> redis.Redis:
        """A redis-py client without redis-py's own retries (tests time what the server
        does, not the client's backoff)."""
        kwargs.setdefault("retry", None)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory now (``VmRSS``) or its peak so far (``VmHWM``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self.pid}/status")

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop(signal.SIGKILL if exc[0] is not None else signal.SIGTERM)
