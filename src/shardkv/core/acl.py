"""Users and their permissions: Redis 7's ACL model for the commands ShardKV has. Pure.

A user (`AclUser`) is a name, on/off, passwords (SHA-256 hex digests, never the text;
or ``nopass``), the key patterns it may touch, the channel patterns (kept for
compatibility: ShardKV has no pub/sub) and an ordered list of command rules
(``+@all``, ``-flushall``, ``+client|id``...). The allowed command set is derived from
the rules by replaying them over the command table, as Redis does with its bitmap.

`apply_rules` is ``ACL SETUSER``: every rule is checked before any applies, so a bad rule
changes nothing (the error names it, in Redis's words). `permission_error` is the check
made before every command. `describe` and `getuser_reply` are ``ACL LIST`` and ``ACL
GETUSER``. Users travel as JSON (`encode_user` / `decode_user`): the placement group
stores them in the cluster map, so one ``ACL SETUSER`` holds on every node.

Not supported (refused with a syntax error, as an unknown rule): selectors (``(...)``)
and read/write key permissions (``%R~``, ``%W~``), which Redis 7 added.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from shardkv.core import commands as table
from shardkv.core.kv.glob import glob_match
from shardkv.core.resp import ErrorReply, MapReply, Reply

_T = TypeVar("_T")

DEFAULT_USER: Final = "default"

#: Redis 7's ACL categories (``ACL CAT``), whether or not a command of ours is in them.
CATEGORIES: Final = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
    "dangerous", "connection", "transaction", "scripting",
)  # fmt: skip

_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")

#: Commands a client may run before it authenticates (Redis's ``no-auth`` flag).
NO_AUTH_COMMANDS: Final = frozenset({"auth", "hello", "quit"})


class AclRuleError(ValueError):
    """A rule ``ACL SETUSER`` cannot apply; ``str()`` is Redis's reply text."""


@dataclass(frozen=True, slots=True)
class AclUser:
    """One user. A new user is off, has no password, no keys and no commands."""

    name: str
    enabled: bool = False
    nopass: bool = False
    passwords: tuple[str, ...] = ()
    """SHA-256 hex digests, in the order they were added."""
    key_patterns: tuple[bytes, ...] = ()
    """Glob patterns; ``(b"*",)`` is ``allkeys``."""
    channel_patterns: tuple[bytes, ...] = ()
    command_rules: tuple[str, ...] = ("-@all",)
    """Normalised rules (lower case), replayed in order over the command table."""

    @property
    def all_keys(self) -> bool:
        return b"*" in self.key_patterns

    @property
    def unrestricted(self) -> bool:
        """May run every command on every key: the check before each command is skipped."""
        return self.all_keys and self.command_rules == ("+@all",)

    def allowed_commands(self) -> frozenset[str]:
        return _allowed(self.command_rules)


def default_user(password: str | None) -> AclUser:
    """The ``default`` user of a node that no ``ACL SETUSER default`` changed: every
    command and key; no password unless ``requirepass`` is set."""
    return AclUser(
        DEFAULT_USER,
        enabled=True,
        nopass=password is None,
        passwords=() if password is None else (hash_password(password),),
        key_patterns=(b"*",),
        channel_patterns=(b"*",),
        command_rules=("+@all",),
    )


def hash_password(password: str | bytes) -> str:
    data = password.encode() if isinstance(password, str) else password
    return hashlib.sha256(data).hexdigest()


def check_password(user: AclUser, password: bytes) -> bool:
    """Whether ``password`` lets a client log in as ``user`` (an off user never does)."""
    if not user.enabled:
        return False
    return user.nopass or hash_password(password) in user.passwords


# -- ACL SETUSER --------------------------------------------------------------------------


def apply_rules(user: AclUser, rules: list[bytes], *, known_commands_only: bool = True) -> AclUser:
    """The user after ``rules``, applied left to right; raises `AclRuleError` (and
    nothing applies) at the first rule that is unknown or cannot apply.

    ``known_commands_only=False`` accepts ``+cmd`` / ``-cmd`` rules naming commands this
    version does not have (they allow nothing here): the placement group's replicas
    apply rules that way, so nodes of two versions (a rolling upgrade) keep identical
    maps. The node that takes ``ACL SETUSER`` checks the rules strictly first."""
    for raw in rules:
        user = _apply_rule(user, raw, known_commands_only)
    return user


def _rule_error(raw: bytes, why: str) -> AclRuleError:
    text = raw.decode(errors="replace")
    return AclRuleError(f"ERR Error in ACL SETUSER modifier '{text}': {why}")


def _apply_rule(user: AclUser, raw: bytes, known_commands_only: bool) -> AclUser:
    rule = raw.decode(errors="replace")
    word = rule.lower()
    if word == "on":
        return replace(user, enabled=True)
    if word == "off":
        return replace(user, enabled=False)
    if word == "nopass":
        return replace(user, nopass=True, passwords=())
    if word == "resetpass":
        return replace(user, nopass=False, passwords=())
    if word == "allkeys" or rule == "~*":
        return replace(user, key_patterns=(b"*",))
    if word == "resetkeys":
        return replace(user, key_patterns=())
    if word == "allchannels" or rule == "&*":
        return replace(user, channel_patterns=(b"*",))
    if word == "resetchannels":
        return replace(user, channel_patterns=())
    if word in ("allcommands", "+@all"):
        return replace(user, command_rules=("+@all",))
    if word in ("nocommands", "-@all"):
        return replace(user, command_rules=("-@all",))
    if word == "reset":
        return AclUser(user.name)
    if rule.startswith(">"):
        digest = hash_password(raw[1:])
        return replace(user, nopass=False, passwords=_add(user.passwords, digest))
    if rule.startswith("#"):
        digest = rule[1:]
        if not _HASH_RE.fullmatch(digest):
            raise _rule_error(
                raw,
                "The password hash must be exactly 64 characters and contain only lowercase "
                "hexadecimal characters",
            )
        return replace(user, nopass=False, passwords=_add(user.passwords, digest))
    if rule.startswith(("<", "!")):
        digest = hash_password(raw[1:]) if rule.startswith("<") else rule[1:]
        if digest not in user.passwords:
            raise _rule_error(
                raw, "The password you are trying to remove from the user does not exist"
            )
        return replace(user, passwords=tuple(p for p in user.passwords if p != digest))
    if rule.startswith("~"):
        return replace(user, key_patterns=_add_pattern(raw, user.key_patterns, "keys"))
    if rule.startswith("&"):
        patterns = _add_pattern(raw, user.channel_patterns, "channels")
        return replace(user, channel_patterns=patterns)
    if rule[:1] in ("+", "-") and len(rule) > 1:
        if known_commands_only:
            _check_command_rule(raw, word)
        return replace(user, command_rules=(*user.command_rules, word))
    raise _rule_error(raw, "Syntax error")


def _add_pattern(raw: bytes, patterns: tuple[bytes, ...], kind: str) -> tuple[bytes, ...]:
    """``~pattern`` (``kind`` "keys") or ``&pattern`` ("channels") added to ``patterns``;
    Redis refuses one after ``*``, which already matches everything."""
    if b"*" in patterns:
        raise _rule_error(
            raw,
            f"Adding a pattern after the * pattern (or the 'all{kind}' flag) is not valid and "
            f"does not have any effect. Try 'reset{kind}' to start with an empty list of "
            f"{'patterns' if kind == 'keys' else 'channels'}",
        )
    return _add(patterns, raw[1:])


def _add(items: tuple[_T, ...], item: _T) -> tuple[_T, ...]:
    return items if item in items else (*items, item)


def _check_command_rule(raw: bytes, word: str) -> None:
    target = word[1:]
    if target.startswith("@"):
        if target[1:] not in CATEGORIES and target != "@all":
            raise _rule_error(raw, "Unknown command or category name in ACL")
        return
    name, _, sub = target.partition("|")
    spec = table.lookup(name.encode())
    if spec is None or (sub and spec.subcommand(sub.encode()) is None):
        raise _rule_error(raw, "Unknown command or category name in ACL")


def _every_spec() -> list[table.CommandSpec]:
    out = []
    for spec in table.COMMANDS:
        out.append(spec)
        out.extend(spec.subcommands)
    return out


def _categories_of(spec: table.CommandSpec) -> set[str]:
    return {c.lstrip("@") for c in spec.acl_categories}


@functools.lru_cache(maxsize=256)
def _allowed(rules: tuple[str, ...]) -> frozenset[str]:
    """The command names (``get``, ``client|id``) the rules allow, by replaying them."""
    allowed: set[str] = set()
    specs = _every_spec()
    for rule in rules:
        add = rule[0] == "+"
        target = rule[1:]
        if target.startswith("@"):
            category = target[1:]
            names = {s.name for s in specs if category == "all" or category in _categories_of(s)}
        else:
            spec = table.lookup(target.partition("|")[0].encode())
            if spec is None:
                continue
            whole = {spec.name, *(s.name for s in spec.subcommands)}
            names = {target} if "|" in target else whole
        if add:
            allowed |= names
        else:
            allowed -= names
    return frozenset(allowed)


# -- the check before every command -------------------------------------------------------


def permission_error(
    user: AclUser, spec: table.CommandSpec, args: list[bytes]
) -> ErrorReply | None:
    """None if ``user`` may run this call (``spec`` resolved from ``args``), else Redis
    7.0's ``-NOPERM`` reply: for the command first, then for its keys."""
    if user.unrestricted:
        return None
    if spec.name not in user.allowed_commands():
        return ErrorReply(f"NOPERM this user has no permissions to run the '{spec.name}' command")
    if user.all_keys:
        return None
    for key in table.command_keys(spec, args):
        if not any(glob_match(pattern, key) for pattern in user.key_patterns):
            return ErrorReply(
                "NOPERM this user has no permissions to access one of the keys used as arguments"
            )
    return None


def may_administer(user: AclUser) -> bool:
    """Whether ``user`` may run every ``@admin`` command (the admin HTTP API asks this)."""
    admin = {s.name for s in _every_spec() if "admin" in _categories_of(s)}
    return user.enabled and user.all_keys and admin <= user.allowed_commands()


# -- ACL LIST / GETUSER / CAT ---------------------------------------------------------------


def describe(user: AclUser) -> str:
    """The user as ``ACL LIST`` shows it (rules that would rebuild it)."""
    parts = ["user", user.name, "on" if user.enabled else "off"]
    if user.nopass:
        parts.append("nopass")
    parts += ["#" + digest for digest in user.passwords]
    parts += ["~" + p.decode(errors="replace") for p in user.key_patterns]
    if user.channel_patterns:
        parts += ["&" + p.decode(errors="replace") for p in user.channel_patterns]
    else:
        parts.append("resetchannels")
    parts += list(user.command_rules)
    return " ".join(parts)


def getuser_reply(user: AclUser) -> Reply:
    """``ACL GETUSER``'s map, with Redis 7.0's fields."""
    flags: list[Reply] = [b"on" if user.enabled else b"off"]
    if user.nopass:
        flags.append(b"nopass")
    return MapReply(
        (
            (b"flags", flags),
            (b"passwords", [d.encode() for d in user.passwords]),
            (b"commands", " ".join(user.command_rules).encode()),
            (b"keys", b" ".join(b"~" + p for p in user.key_patterns)),
            (b"channels", b" ".join(b"&" + p for p in user.channel_patterns)),
            (b"selectors", []),
        )
    )


def category_commands(category: str) -> list[str] | None:
    """``ACL CAT <category>``: the command names in it (None: no such category)."""
    if category not in CATEGORIES:
        return None
    return sorted(s.name.replace("|", " ") for s in _every_spec() if category in _categories_of(s))


# -- storage form ---------------------------------------------------------------------------


def encode_user(user: AclUser) -> bytes:
    return json.dumps(
        {
            "name": user.name,
            "on": user.enabled,
            "nopass": user.nopass,
            "passwords": list(user.passwords),
            "keys": [p.decode("latin-1") for p in user.key_patterns],
            "channels": [p.decode("latin-1") for p in user.channel_patterns],
            "commands": list(user.command_rules),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_user(data: bytes) -> AclUser:
    """Raises ValueError on bytes `encode_user` did not produce."""
    try:
        fields = json.loads(data)
        return AclUser(
            str(fields["name"]),
            enabled=bool(fields["on"]),
            nopass=bool(fields["nopass"]),
            passwords=tuple(str(p) for p in fields["passwords"]),
            key_patterns=tuple(str(p).encode("latin-1") for p in fields["keys"]),
            channel_patterns=tuple(str(p).encode("latin-1") for p in fields["channels"]),
            command_rules=tuple(str(r) for r in fields["commands"]),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable ACL user {data[:80]!r}: {exc}") from exc


def validate_username(name: bytes) -> str:
    """The user name as text; raises `AclRuleError` for names Redis refuses."""
    if not name or any(c <= 32 or c > 126 for c in name):
        raise AclRuleError("ERR Usernames can't contain spaces or null characters")
    return name.decode()
