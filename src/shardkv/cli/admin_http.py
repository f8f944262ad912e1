"""Requests from the CLI to a node's admin HTTP port, with the operator's credentials.

The token comes from ``--admin-token-file`` (the ``shardkv`` group option, any
subcommand) or ``SHARDKV_ADMIN_TOKEN_FILE``, or the token itself from
``SHARDKV_ADMIN_TOKEN``. ``SHARDKV_ADMIN_CA`` (a PEM CA file) makes every call HTTPS,
verified against that CA, for nodes started with ``--admin-tls-cert``.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from pathlib import Path
from typing import IO, Any

TOKEN_FILE_ENV = "SHARDKV_ADMIN_TOKEN_FILE"
TOKEN_ENV = "SHARDKV_ADMIN_TOKEN"
CA_ENV = "SHARDKV_ADMIN_CA"


def admin_headers() -> dict[str, str]:
    """The Authorization header to send, if the operator gave a token."""
    token = os.environ.get(TOKEN_ENV, "")
    path = os.environ.get(TOKEN_FILE_ENV)
    if not token and path:
        token = Path(path).read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def open_admin(
    method: str, url: str, data: bytes | None, headers: dict[str, str], timeout_s: float
) -> IO[Any]:
    """``urlopen`` of an admin call (HTTPS when ``SHARDKV_ADMIN_CA`` is set); raises what
    ``urlopen`` raises."""
    context = None
    ca = os.environ.get(CA_ENV)
    if ca:
        context = ssl.create_default_context(cafile=ca)
        if url.startswith("http://"):
            url = "https://" + url[len("http://") :]
    request = urllib.request.Request(
        url, data=data, method=method, headers={**headers, **admin_headers()}
    )
    response: IO[Any] = urllib.request.urlopen(request, timeout=timeout_s, context=context)
    return response
