"""Who may call which admin HTTP endpoint.

Reading the node's health, metrics and status is open (``GET /metrics``, ``/healthz``,
``/v1/status``, ``/v1/rebalance``, the cluster page ``/`` and its ``/v1/cluster``):
Prometheus and load balancers need no secret. Every other endpoint changes state or reads
data (backup, members, node removal, splits, rebalance, ``/v1/kv``, debugging, fault
injection) and is served only to a caller that shows one of:

- ``Authorization: Bearer TOKEN``, the token in ``--admin-token-file``;
- ``Authorization: Basic`` credentials of an enabled ACL user with a password, every key
  and every ``@admin`` command (as ``ACL SETUSER ops on >pw allkeys +@all``).

Without a token file, and while the ``default`` user needs no password, a loopback caller
is let through without credentials (as protected mode lets loopback clients in): a fresh
single-machine cluster stays one command away; anything listening beyond loopback is not.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shardkv.core import acl
from shardkv.server.acl import AclRegistry
from shardkv.server.config import ConfigError

#: (method, path) pairs anyone may call.
OPEN_ENDPOINTS: Final = frozenset(
    {
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/v1/status"),
        ("GET", "/v1/rebalance"),
        ("GET", "/"),
        ("GET", "/v1/cluster"),
    }
)


def read_token(path: str | None) -> str | None:
    """The admin token in ``path`` (surrounding whitespace dropped); raises `ConfigError`
    for a file that cannot be read or holds no token."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"admin_token_file {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"admin_token_file {path} is empty")
    return token


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str


class AdminGuard:
    """Decides each admin HTTP request (see the module docstring)."""

    def __init__(self, token: str | None, users: AclRegistry) -> None:
        self._token = token
        self._users = users

    def check(
        self, method: str, path: str, authorization: str | None, from_loopback: bool
    ) -> Refusal | None:
        """None if the request may proceed, else the answer to give (401 or 403)."""
        if (method, path) in OPEN_ENDPOINTS or (
            method == "HEAD" and ("GET", path) in OPEN_ENDPOINTS
        ):
            return None
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and self._token is not None:
                if hmac.compare_digest(credentials.strip().encode(), self._token.encode()):
                    return None
                return Refusal(401, "wrong admin token")
            if scheme.lower() == "basic":
                return self._check_basic(credentials.strip())
        if self._token is None and self._users.default_open() and from_loopback:
            return None
        return Refusal(
            401,
            "this admin call changes state or reads data: send Authorization: Bearer <the "
            "token in --admin-token-file> or Basic credentials of an ACL user with @admin",
        )

    def _check_basic(self, credentials: str) -> Refusal | None:
        try:
            name, sep, password = base64.b64decode(credentials, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return Refusal(401, "unreadable Basic credentials")
        user = self._users.user(name.decode(errors="replace")) if sep else None
        if user is None or user.nopass or not acl.check_password(user, password):
            # (A user without a password proves nothing: it cannot open the admin API.)
            return Refusal(401, "invalid username-password pair or user is disabled")
        if not acl.may_administer(user):
            return Refusal(403, f"user {user.name} may not run @admin commands")
        return None
