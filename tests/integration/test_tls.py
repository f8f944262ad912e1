"""TLS on the client port: redis-cli --tls works; plaintext clients are turned away cleanly."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.integration.harness import ServerProcess, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    make_certs(d, "ca", ["server", "client"])
    return d


def _tls_args(certs: Path, client_certs: bool) -> list[str]:
    args = ["--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key")]
    if client_certs:
        args += ["--tls-ca", str(certs / "ca.crt")]
    return args


def _wait_tls(srv: ServerProcess, certs: Path) -> None:
    srv.start(wait=False)
    deadline = time.monotonic() + 30
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", srv.port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(10) == b"+PONG\r\n":
                    return
        except OSError:
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.05)


def test_redis_cli_over_tls_and_plaintext_client_is_disconnected(
    tmp_path: Path, certs: Path, redis_cli: str
) -> None:
    srv = ServerProcess(tmp_path / "data", *_tls_args(certs, client_certs=False))
    try:
        _wait_tls(srv, certs)
        out = subprocess.run(
            [
                redis_cli,
                "--tls",
                "--cacert",
                str(certs / "ca.crt"),
                "-h",
                "127.0.0.1",
                "-p",
                str(srv.port),
                "set",
                "k",
                "over-tls",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == "OK", out.stderr
        r = redis.Redis(port=srv.port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"))
        assert r.get("k") == b"over-tls"

        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as plain:
            plain.sendall(b"PING\r\n")
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := plain.recv(100):  # until the server closes
                    received += chunk
            # At most a TLS alert record (content type 21), never a RESP reply.
            assert received == b"" or received[0] == 21, received
        deadline = time.monotonic() + 10
        while "tls_handshake_failed" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.05)
        log = srv.log()
        assert log.count("tls_handshake_failed") == 1
        assert "Traceback" not in log
        assert r.ping()
    finally:
        srv.stop()


def test_client_certificates_are_required_with_a_ca(tmp_path: Path, certs: Path) -> None:
    srv = ServerProcess(tmp_path / "data", *_tls_args(certs, client_certs=True))
    try:
        _wait_tls(srv, certs)
        without = redis.Redis(
            port=srv.port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"), socket_timeout=5
        )
        with pytest.raises(redis.ConnectionError):
            without.ping()
        with_cert = redis.Redis(
            port=srv.port,
            ssl=True,
            ssl_ca_certs=str(certs / "ca.crt"),
            ssl_certfile=str(certs / "client.crt"),
            ssl_keyfile=str(certs / "client.key"),
        )
        assert with_cert.set("a", "b")
        # TLS 1.1 and older are refused.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1  # deprecated, and refused
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            ctx.wrap_socket(raw).sendall(b"PING\r\n")
    finally:
        srv.stop()
