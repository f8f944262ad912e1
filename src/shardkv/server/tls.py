"""TLS contexts for the client port: TLS 1.2 at least; a CA file makes client certs required."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, cast


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


class TLSStream(asyncio.Protocol):
    """TLS done in memory (``ssl.MemoryBIO``) over a plain transport, for one client.

    asyncio's built-in TLS gives a server no word when a handshake fails (for example a
    plaintext client on the TLS port): the connection just vanishes. Driving the
    ``SSLObject`` ourselves lets us log one line and close cleanly, and hands the
    application protocol an ordinary transport once the handshake is done.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        on_handshake_failed: Callable[[str, str], None],
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._app = app
        self._on_failed = on_handshake_failed
        self._timeout_s = handshake_timeout_s
        self._raw: asyncio.Transport | None = None
        self._app_transport: _AppTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        self._peer = str(transport.get_extra_info("peername"))
        self._timer = asyncio.get_running_loop().call_later(
            self._timeout_s, self._fail, "handshake timed out"
        )

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._app_transport is None:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                self._flush()
                self._fail(getattr(exc, "reason", None) or str(exc) or type(exc).__name__)
                return
            if self._timer is not None:
                self._timer.cancel()
            self._flush()
            assert self._raw is not None
            self._app_transport = _AppTransport(self._raw, self._ssl, self._outgoing)
            self._app.connection_made(self._app_transport)
        self._read_app_data()

    def _read_app_data(self) -> None:
        while self._app_transport is not None and not self._app_transport.is_closing():
            try:
                chunk = self._ssl.read(256 * 1024)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._app.eof_received()
                break
            except (ssl.SSLError, OSError) as exc:
                assert self._raw is not None
                self._on_failed(self._peer, f"TLS error after handshake: {exc}")
                self._raw.abort()
                break
            if not chunk:
                break
            self._app.data_received(chunk)
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self._raw is not None and not self._raw.is_closing():
            self._raw.write(pending)

    def _fail(self, reason: str) -> None:
        if self._app_transport is not None or self._raw is None or self._raw.is_closing():
            return
        self._on_failed(self._peer, reason)
        self._raw.close()

    def eof_received(self) -> bool | None:
        if self._app_transport is not None:
            return self._app.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._app_transport is not None:
            self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app_transport is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_transport is not None:
            self._app.resume_writing()


class _AppTransport(asyncio.Transport):
    """What the application protocol writes to: encrypts, then writes to the socket."""

    def __init__(
        self, raw: asyncio.Transport, sslobj: ssl.SSLObject, outgoing: ssl.MemoryBIO
    ) -> None:
        super().__init__()
        self._raw = raw
        self._ssl = sslobj
        self._outgoing = outgoing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view.nbytes:
            written = self._ssl.write(view)
            view = view[written:]
        self._raw.write(self._outgoing.read())

    def close(self) -> None:
        if self._raw.is_closing():
            return
        with contextlib.suppress(ssl.SSLError, OSError):
            self._ssl.unwrap()  # close_notify
        pending = self._outgoing.read()
        if pending:
            self._raw.write(pending)
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        return self._raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        return False
