"""RESP codec: bytes in -> commands out; replies -> bytes. Sans-I/O.

Owns the Redis wire protocol (RESP2) and nothing else: no sockets, no asyncio, no command
semantics. The server feeds received bytes to a :class:`CommandParser` and writes replies
with :func:`write_reply`; the client encodes commands with :func:`encode_command` and reads
replies with a :class:`ReplyParser`. Every buffer is bounded by :class:`RespLimits`; input
that breaks the protocol or a limit raises :class:`RespProtocolError`, which the server
answers with ``-ERR Protocol error: <message>`` before closing the connection.
"""

from .errors import RespProtocolError
from .limits import RespLimits
from .parser import CommandParser
from .replies import (
    EMPTY_ARRAY,
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    BytesLike,
    DoubleReply,
    ErrorReply,
    MapReply,
    NullArray,
    PairsReply,
    Reply,
    SetReply,
    SimpleString,
    encode_command,
    encode_reply,
    write_reply,
    write_reply_resp3,
)
from .reply_parser import NEED_DATA, NeedData, ReplyParser

__all__ = [
    "EMPTY_ARRAY",
    "NEED_DATA",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BytesLike",
    "CommandParser",
    "DoubleReply",
    "ErrorReply",
    "MapReply",
    "NeedData",
    "NullArray",
    "PairsReply",
    "Reply",
    "ReplyParser",
    "RespLimits",
    "RespProtocolError",
    "SetReply",
    "SimpleString",
    "encode_command",
    "encode_reply",
    "write_reply",
    "write_reply_resp3",
]
