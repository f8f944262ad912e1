"""Bounds on what a RESP peer may make us hold in memory.

This module owns the limits only; the parsers enforce them. Every default mirrors the Redis
setting named beside it, so a client that works against Redis works against us.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["RespLimits"]


@dataclass(frozen=True, slots=True)
class RespLimits:
    """Limits applied to one connection's input.

    All values must be positive integers; ``ValueError`` otherwise. ``max_bulk_bytes`` may be
    larger than ``max_unparsed_bytes`` (as in Redis): then the buffer bound is the one that
    fires first.

    Attributes:
        max_bulk_bytes: longest bulk string accepted (Redis ``proto-max-bulk-len``). A longer
            announced length is refused before any of it is read.
        max_args: most elements in one array: a command's arguments (the multibulk count),
            or one array reply on the client side.
        max_inline_bytes: longest line without its terminator: an inline command, a
            ``*``/``$`` header, or a reply line (Redis ``PROTO_INLINE_MAX_SIZE``).
        max_unparsed_bytes: most bytes held that do not yet belong to a returned command or
            reply, including the already-parsed arguments of an incomplete command (Redis
            ``client-query-buffer-limit``).
        max_nesting_depth: deepest nesting of arrays in a reply (client side only; commands
            are flat). Bounds the parser's stack and the recursion of whoever walks a reply.
    """

    max_bulk_bytes: int = 512 * 1024 * 1024
    max_args: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_unparsed_bytes: int = 1024 * 1024 * 1024
    max_nesting_depth: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; RespLimits(max_args=True) is a bug, not a limit of 1.
            if type(value) is not int:
                raise ValueError(f"{f.name} must be an int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{f.name} must be positive, got {value}")
