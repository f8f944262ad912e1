"""Many idle clients, slow writers (slowloris) and slow readers cost bounded memory, and
the server keeps serving everyone else meanwhile.

Stated bounds (checked here, recorded in docs/benchmarks.md):

- 10,000 idle connections add less than `IDLE_BOUND_BYTES` to the server's RSS;
- 300 clients that trickle a large command a few bytes at a time, plus 30 clients that
  pipeline large replies and never read, add less than `SLOW_BOUND_BYTES`: a connection
  holds at most its unparsed input and ``output_high_water_bytes`` of replies before it
  stops being read (and is dropped past ``max_output_buffer_bytes``).
"""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

from tests.integration.harness import ServerProcess

IDLE_CONNECTIONS = 10_000
IDLE_BOUND_BYTES = 160 << 20
SLOW_BOUND_BYTES = 256 << 20


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_ten_thousand_idle_connections_and_slow_clients_hold_memory_bounded(
    tmp_path: Path,
) -> None:
    _raise_fd_limit(IDLE_CONNECTIONS + 1000)
    with ServerProcess(
        tmp_path / "data", "--max-connections", str(IDLE_CONNECTIONS + 500)
    ).start() as node:
        client = node.client()
        client.set("big", b"v" * 100_000)
        baseline = node.rss_bytes()

        idle = []
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", node.port), timeout=10))
        deadline = time.monotonic() + 30
        while int(client.info("clients")["connected_clients"]) < IDLE_CONNECTIONS:
            assert time.monotonic() < deadline, "the server did not accept every connection"
            time.sleep(0.1)
        assert client.ping() and client.get("big") is not None  # everyone else is served
        with_idle = node.rss_bytes()
        assert with_idle - baseline < IDLE_BOUND_BYTES, (
            f"{IDLE_CONNECTIONS} idle connections took {(with_idle - baseline) >> 20} MiB"
        )
        for s in idle:
            s.close()

        # Slowloris: a large SET announced, its bytes trickled.
        slow_writers = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$1000000\r\n" + b"x" * 1000)
            slow_writers.append(s)
        # Slow readers: 200 GETs of a 100 kB value pipelined, never read.
        slow_readers = []
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET big\r\n" * 200)
            slow_readers.append(s)
        for _ in range(10):
            for s in slow_writers:
                s.sendall(b"x" * 100)
            time.sleep(0.1)
        assert client.ping() and client.get("big") is not None
        with_slow = node.rss_bytes()
        assert with_slow - baseline < SLOW_BOUND_BYTES, (
            f"slow clients took {(with_slow - baseline) >> 20} MiB"
        )
        print(
            f"\nRSS: baseline {baseline >> 20} MiB, with {IDLE_CONNECTIONS} idle "
            f"{with_idle >> 20} MiB, with slow clients {with_slow >> 20} MiB"
        )
        for s in slow_writers + slow_readers:
            s.close()
