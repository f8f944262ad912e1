"""Errors raised by the RESP codec.

The split follows h11 (``LocalProtocolError`` vs ``RemoteProtocolError``):

* :class:`RespProtocolError`: the *peer* sent bytes we will not accept. The server answers
  ``-ERR Protocol error: <str(e)>`` and closes the connection after flushing that reply;
  the client drops the connection. Never a traceback.
* Misuse of the API by *our* code (encoding a ``str`` or ``bool`` as a reply, a limit of
  zero, ``drain(0)``) raises the ordinary ``TypeError``/``ValueError``: that is a bug to fix,
  not something a peer can trigger.
"""

from __future__ import annotations

__all__ = ["RespProtocolError"]


class RespProtocolError(Exception):
    """The peer violated the protocol or one of our :class:`RespLimits`.

    ``str(e)`` is exactly the text Redis 7 puts after ``"Protocol error: "`` for the same
    input (``"invalid multibulk length"``, ``"invalid bulk length"``,
    ``"expected '$', got 'x'"``, ``"too big inline request"``,
    ``"too big mbulk count string"``, ``"too big bulk count string"``,
    ``"unbalanced quotes in request"``), or a text of ours for conditions Redis handles
    without a reply (the buffer bound) and for reply-side errors.

    A parser that raised this is poisoned: every later call raises the same error. The
    connection cannot be resynchronised, so it must be closed.
    """
