"""TLS contexts for the client port: TLS 1.2 at least; a CA file makes client certs required."""

from __future__ import annotations

import ssl


class TLSConfigError(ValueError):
    """A certificate, key or CA file cannot be loaded; the message names the file."""


def server_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load TLS CA file {ca}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
