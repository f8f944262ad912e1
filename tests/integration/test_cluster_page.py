"""The live cluster page (``GET /`` on a node's admin port) in headless Chromium, against a
real 3-node cluster: every node and shard appears with live data, a killed node is shown
down within 5 seconds, and a screenshot is saved (with SHARDKV_UPDATE_SCREENSHOT=1, into
docs/images/ for docs/operations.md). Chromium is driven over its DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.debian import debian_program
from tests.integration.test_cluster import Cluster
from tests.integration.test_rebalance import cluster_client

SHARDS = 4
DOWN_WITHIN_S = 5.0
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "cluster-page.png"


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=30)
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"page never showed: {expression}"
            await asyncio.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", 3, shards=SHARDS)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    profile = tmp_path / "chromium-profile"
    chromium = debian_program("chromium", "chromium")
    process = subprocess.Popen(
        [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--remote-debugging-port=0", f"--user-data-dir={profile}",
            "--window-size=1280,900", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = json.loads(await resp.text())
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Browser(ws)
    finally:
        process.kill()
        process.wait()


def write_for(cluster: Cluster, seconds: float) -> None:
    client = cluster_client(cluster.nodes[2].port)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            n += 1
            pipe.set(f"page:{n}", n)
        pipe.execute()
    client.close()


NODE_ROWS = "[...document.querySelectorAll('#nodes tbody tr')].map(r => r.textContent)"
SHARD_ROWS = "document.querySelectorAll('#shards tbody tr').length"


async def test_the_page_shows_every_node_and_shard_live_and_a_killed_node_down_quickly(
    cluster: Cluster, browser: Browser, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{cluster.nodes[1].admin_port}/"
    await browser.call("Page.navigate", url=url)
    await browser.wait_for(f"{SHARD_ROWS} === {SHARDS}", 15)
    rows = await browser.wait_for(
        f"(() => {{ const r = {NODE_ROWS}; return r.length === 3 && r.every(t => t.includes('up'))"
        " && r; })()",
        15,
    )
    for node in cluster.nodes.values():
        assert any(f"127.0.0.1:{node.port}" in row for row in rows), rows
    # Live data: every shard has a leader, and the charts have a rate after two polls.
    await browser.wait_for(
        "[...document.querySelectorAll('#shards tbody tr')]"
        ".every(r => r.children[3].textContent !== 'none')",
        15,
    )
    await browser.wait_for("document.getElementById('ops-now').textContent !== '-'", 10)
    # Some load, so the charts have something to show.
    await asyncio.get_running_loop().run_in_executor(None, write_for, cluster, 3.0)
    await browser.wait_for("Number(document.getElementById('ops-now').textContent) >= 0", 5)
    # Read-only without the admin token.
    assert await browser.evaluate("document.getElementById('pause').disabled") is True

    cluster.nodes[3].stop(signal.SIGKILL)
    killed_at = time.monotonic()
    port3 = f"127.0.0.1:{cluster.nodes[3].port}"
    await browser.wait_for(
        f"{NODE_ROWS}.some(t => t.includes('{port3}') && t.includes('down'))", DOWN_WITHIN_S
    )
    shown_down_s = time.monotonic() - killed_at
    print(f"\nnode 3 shown down {shown_down_s:.2f} s after SIGKILL")
    assert shown_down_s <= DOWN_WITHIN_S

    shot = await browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    (tmp_path / "cluster-page.png").write_bytes(png)
    if os.environ.get("SHARDKV_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
