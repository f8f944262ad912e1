"""Random command streams over every Redis type ShardKV has, for the differential test
(``test_differential.py``): the same stream goes to a real redis-server and to ShardKV,
and the replies are compared one by one.

Everything is drawn from a seeded ``random.Random``: a failing seed replays exactly. All
keys share one hash tag, so multi-key commands (SINTERSTORE, SMOVE, LMOVE, ZUNIONSTORE,
RENAME, MULTI/EXEC blocks) are legal on a cluster too.

Replies are compared after `normalize`: members of unordered replies are sorted (Redis's
order there is its encoding's: SMEMBERS, HGETALL, SINTER, ...), and commands that pick at
random (SPOP, SRANDMEMBER, HRANDFIELD) are compared by shape only; after SPOP the two
servers hold different members, so the runner copies ShardKV's set into Redis
(`RESYNC_AFTER`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

TAG: Final = "{t}"
STRINGS: Final = [f"{TAG}k{i}" for i in range(3)]
HASHES: Final = [f"{TAG}h{i}" for i in range(3)]
SETS: Final = [f"{TAG}s{i}" for i in range(3)]
ZSETS: Final = [f"{TAG}z{i}" for i in range(3)]
LISTS: Final = [f"{TAG}l{i}" for i in range(3)]
ALL_KEYS: Final = STRINGS + HASHES + SETS + ZSETS + LISTS
MEMBERS: Final = ["a", "b", "c", "d", "e", "1", "2", "10", "-1", "x y", ""]
SCORES: Final = ["0", "1", "-1", "1.5", "2.5", "10", "-3", "inf", "-inf", "0.1", "1e3"]
BAD_NUMBERS: Final = ["x", "1.5.1", "", " 1", "nan"]
RANGE_BOUNDS: Final = ["0", "1", "-1", "2", "-2", "5", "-100", "100"]
SCORE_BOUNDS: Final = ["-inf", "+inf", "0", "1", "(1", "2.5", "(2.5", "-1", "bad"]
LEX_BOUNDS: Final = ["-", "+", "[a", "(a", "[c", "(d", "[", "bad"]

#: Commands whose reply members come in an unspecified order.
UNORDERED: Final = frozenset(
    {"smembers", "hgetall", "hkeys", "hvals", "sinter", "sunion", "sdiff", "keys"}
)
#: Commands that choose at random: compared by shape.
RANDOM: Final = frozenset({"spop", "srandmember", "hrandfield"})
#: After these, the key's members differ between the servers: copy ShardKV's into Redis.
RESYNC_AFTER: Final = frozenset({"spop"})


def _pick(rng: random.Random, items: list[str]) -> str:
    return rng.choice(items)


def _key(rng: random.Random, own: list[str]) -> str:
    # Mostly a key of the command's type, sometimes any key (WRONGTYPE paths).
    return _pick(rng, own) if rng.random() < 0.85 else _pick(rng, ALL_KEYS)


def _members(rng: random.Random, low: int = 1, high: int = 4) -> list[str]:
    return [_pick(rng, MEMBERS) for _ in range(rng.randint(low, high))]


def _number(rng: random.Random, good: list[str]) -> str:
    return _pick(rng, good) if rng.random() < 0.9 else _pick(rng, BAD_NUMBERS)


def _hash_command(rng: random.Random) -> list[str]:
    k = _key(rng, HASHES)
    f = _pick(rng, MEMBERS)
    choice = rng.randrange(16)
    if choice == 0:
        pairs = [
            x for _ in range(rng.randint(1, 3)) for x in (_pick(rng, MEMBERS), _number(rng, SCORES))
        ]
        return ["HSET", k, *pairs]
    if choice == 1:
        return ["HSETNX", k, f, _pick(rng, MEMBERS)]
    if choice == 2:
        return ["HGET", k, f]
    if choice == 3:
        return ["HMGET", k, *_members(rng)]
    if choice == 4:
        return ["HGETALL", k]
    if choice == 5:
        return ["HDEL", k, *_members(rng)]
    if choice == 6:
        return ["HLEN", k]
    if choice == 7:
        return ["HEXISTS", k, f]
    if choice == 8:
        return ["HKEYS", k]
    if choice == 9:
        return ["HVALS", k]
    if choice == 10:
        return ["HINCRBY", k, f, _number(rng, ["1", "-5", "100", "9223372036854775807"])]
    if choice == 11:
        return ["HINCRBYFLOAT", k, f, _number(rng, ["1.5", "-0.25", "10", "3e2"])]
    if choice == 12:
        return ["HSTRLEN", k, f]
    if choice == 13:
        return ["HSCAN", k, "0", *rng.choice([[], ["MATCH", "*a*"], ["COUNT", "5"]])]
    if choice == 14:
        return ["HRANDFIELD", k, *rng.choice([[], ["2"], ["-3"], ["2", "WITHVALUES"]])]
    return ["HMSET", k, f, _pick(rng, MEMBERS)]


def _set_command(rng: random.Random) -> list[str]:
    k = _key(rng, SETS)
    choice = rng.randrange(16)
    if choice in (0, 1):
        return ["SADD", k, *_members(rng)]
    if choice == 2:
        return ["SREM", k, *_members(rng)]
    if choice == 3:
        return ["SISMEMBER", k, _pick(rng, MEMBERS)]
    if choice == 4:
        return ["SMISMEMBER", k, *_members(rng)]
    if choice == 5:
        return ["SMEMBERS", k]
    if choice == 6:
        return ["SCARD", k]
    if choice == 7:
        return ["SPOP", k, *rng.choice([[], ["2"], ["0"], ["-1"]])]
    if choice == 8:
        return ["SRANDMEMBER", k, *rng.choice([[], ["2"], ["-3"], ["0"]])]
    if choice in (9, 10, 11):
        name = rng.choice(["SINTER", "SUNION", "SDIFF"])
        return [name, *(_key(rng, SETS) for _ in range(rng.randint(1, 3)))]
    if choice in (12, 13):
        name = rng.choice(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])
        return [name, _key(rng, SETS), *(_key(rng, SETS) for _ in range(rng.randint(1, 3)))]
    if choice == 14:
        return ["SMOVE", k, _key(rng, SETS), _pick(rng, MEMBERS)]
    return ["SSCAN", k, "0", *rng.choice([[], ["MATCH", "[a-c]"], ["COUNT", "3"]])]


def _zset_command(rng: random.Random) -> list[str]:
    k = _key(rng, ZSETS)
    m = _pick(rng, MEMBERS)
    choice = rng.randrange(20)
    if choice in (0, 1):
        flags = rng.choice(
            [
                [],
                [],
                ["NX"],
                ["XX"],
                ["GT"],
                ["LT"],
                ["CH"],
                ["XX", "CH"],
                ["NX", "XX"],
                ["GT", "LT"],
            ]
        )
        if rng.random() < 0.15:
            return ["ZADD", k, *flags, "INCR", _number(rng, SCORES), m]
        pairs = [
            x for _ in range(rng.randint(1, 3)) for x in (_number(rng, SCORES), _pick(rng, MEMBERS))
        ]
        return ["ZADD", k, *flags, *pairs]
    if choice == 2:
        return ["ZREM", k, *_members(rng)]
    if choice == 3:
        return ["ZSCORE", k, m]
    if choice == 4:
        return ["ZMSCORE", k, *_members(rng)]
    if choice == 5:
        return ["ZINCRBY", k, _number(rng, SCORES), m]
    if choice == 6:
        return ["ZCARD", k]
    if choice == 7:
        return ["ZCOUNT", k, _pick(rng, SCORE_BOUNDS), _pick(rng, SCORE_BOUNDS)]
    if choice == 8:
        return [rng.choice(["ZRANK", "ZREVRANK"]), k, m]
    if choice in (9, 10):
        mode = rng.choice(["rank", "score", "lex"])
        opts: list[str] = []
        if mode == "rank":
            bounds = [_pick(rng, RANGE_BOUNDS), _pick(rng, RANGE_BOUNDS)]
        elif mode == "score":
            bounds = [_pick(rng, SCORE_BOUNDS), _pick(rng, SCORE_BOUNDS)]
            opts.append("BYSCORE")
        else:
            bounds = [_pick(rng, LEX_BOUNDS), _pick(rng, LEX_BOUNDS)]
            opts.append("BYLEX")
        if rng.random() < 0.3:
            opts.append("REV")
        if mode != "rank" and rng.random() < 0.3:
            opts += ["LIMIT", rng.choice(["0", "1", "-1"]), rng.choice(["1", "2", "-1", "0"])]
        if mode != "lex" and rng.random() < 0.4:
            opts.append("WITHSCORES")
        return ["ZRANGE", k, *bounds, *opts]
    if choice == 11:
        return [
            "ZRANGESTORE",
            _key(rng, ZSETS),
            k,
            _pick(rng, RANGE_BOUNDS),
            _pick(rng, RANGE_BOUNDS),
        ]
    if choice == 12:
        name = rng.choice(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"])
        opts = rng.choice(
            [[], ["WITHSCORES"], ["LIMIT", "0", "2"], ["WITHSCORES", "LIMIT", "1", "1"]]
        )
        return [name, k, _pick(rng, SCORE_BOUNDS), _pick(rng, SCORE_BOUNDS), *opts]
    if choice == 13:
        return ["ZRANGEBYLEX", k, _pick(rng, LEX_BOUNDS), _pick(rng, LEX_BOUNDS)]
    if choice == 14:
        return [
            "ZREVRANGE",
            k,
            _pick(rng, RANGE_BOUNDS),
            _pick(rng, RANGE_BOUNDS),
            *rng.choice([[], ["WITHSCORES"]]),
        ]
    if choice == 15:
        return [rng.choice(["ZPOPMIN", "ZPOPMAX"]), k, *rng.choice([[], ["2"], ["0"], ["-1"]])]
    if choice == 16:
        return ["ZREMRANGEBYSCORE", k, _pick(rng, SCORE_BOUNDS), _pick(rng, SCORE_BOUNDS)]
    if choice == 17:
        return ["ZREMRANGEBYRANK", k, _pick(rng, RANGE_BOUNDS), _pick(rng, RANGE_BOUNDS)]
    if choice == 18:
        return ["ZSCAN", k, "0"]
    sources = [rng.choice(ZSETS + SETS) for _ in range(rng.randint(1, 3))]
    opts = rng.choice(
        [[], ["AGGREGATE", "MIN"], ["AGGREGATE", "MAX"], ["WEIGHTS", *(["2"] * len(sources))]]
    )
    return [
        rng.choice(["ZUNIONSTORE", "ZINTERSTORE"]),
        _key(rng, ZSETS),
        str(len(sources)),
        *sources,
        *opts,
    ]


def _list_command(rng: random.Random) -> list[str]:
    k = _key(rng, LISTS)
    choice = rng.randrange(16)
    if choice in (0, 1, 2):
        return [rng.choice(["LPUSH", "RPUSH"]), k, *_members(rng)]
    if choice == 3:
        return [rng.choice(["LPUSHX", "RPUSHX"]), k, *_members(rng)]
    if choice in (4, 5):
        return [rng.choice(["LPOP", "RPOP"]), k, *rng.choice([[], [], ["2"], ["0"], ["-1"]])]
    if choice == 6:
        return ["LLEN", k]
    if choice in (7, 8):
        return ["LRANGE", k, _number(rng, RANGE_BOUNDS), _pick(rng, RANGE_BOUNDS)]
    if choice == 9:
        return ["LINDEX", k, _number(rng, RANGE_BOUNDS)]
    if choice == 10:
        return ["LSET", k, _number(rng, RANGE_BOUNDS), _pick(rng, MEMBERS)]
    if choice == 11:
        return ["LREM", k, rng.choice(["0", "1", "-1", "2"]), _pick(rng, MEMBERS)]
    if choice == 12:
        return ["LTRIM", k, _pick(rng, RANGE_BOUNDS), _pick(rng, RANGE_BOUNDS)]
    if choice == 13:
        return [
            "LINSERT",
            k,
            rng.choice(["BEFORE", "AFTER", "NEAR"]),
            _pick(rng, MEMBERS),
            _pick(rng, MEMBERS),
        ]
    if choice == 14:
        opts = rng.choice(
            [
                [],
                ["RANK", "-1"],
                ["COUNT", "0"],
                ["RANK", "2", "COUNT", "2"],
                ["MAXLEN", "2"],
                ["RANK", "0"],
            ]
        )
        return ["LPOS", k, _pick(rng, MEMBERS), *opts]
    if rng.random() < 0.5:
        return ["RPOPLPUSH", k, _key(rng, LISTS)]
    return [
        "LMOVE",
        k,
        _key(rng, LISTS),
        rng.choice(["LEFT", "RIGHT"]),
        rng.choice(["LEFT", "RIGHT", "UP"]),
    ]


def _key_command(rng: random.Random) -> list[str]:
    k = _pick(rng, ALL_KEYS)
    choice = rng.randrange(15)
    if choice == 14:
        return ["OBJECT", "ENCODING", k]
    if choice == 0:
        return ["TYPE", k]
    if choice == 1:
        return ["DEL", k, *rng.choice([[], [_pick(rng, ALL_KEYS)]])]
    if choice == 2:
        return ["EXISTS", k, _pick(rng, ALL_KEYS)]
    if choice == 3:
        return ["EXPIRE", k, rng.choice(["100", "1000", "-1"]), *rng.choice([[], ["NX"], ["GT"]])]
    if choice == 4:
        return ["TTL", k]
    if choice == 5:
        return ["PERSIST", k]
    if choice == 6:
        return ["RENAME", k, _pick(rng, ALL_KEYS)]
    if choice == 7:
        return ["RENAMENX", k, _pick(rng, ALL_KEYS)]
    if choice == 8:
        return ["COPY", k, _pick(rng, ALL_KEYS), *rng.choice([[], ["REPLACE"]])]
    if choice == 9:
        return ["SET", _pick(rng, STRINGS), _pick(rng, MEMBERS)]
    if choice == 10:
        return ["GET", k]
    if choice == 11:
        return ["INCR", _pick(rng, STRINGS)]
    if choice == 12:
        return [
            "SCAN",
            "0",
            "TYPE",
            rng.choice(["hash", "set", "zset", "list", "string"]),
            "COUNT",
            "1000",
        ]
    return ["KEYS", f"{TAG}*"]


def _bulk_command(rng: random.Random) -> list[str]:
    """A command that makes a collection big (past Redis's compact encodings and past
    ShardKV's small-delete threshold), so big-key paths are compared too."""
    members = [f"m{rng.randrange(400)}" for _ in range(150)]
    kind = rng.randrange(4)
    if kind == 0:
        return ["SADD", _pick(rng, SETS), *members]
    if kind == 1:
        return ["HSET", _pick(rng, HASHES), *(x for m in members for x in (m, m[::-1]))]
    if kind == 2:
        return ["ZADD", _pick(rng, ZSETS), *(x for m in members for x in (str(len(m)), m))]
    return ["RPUSH", _pick(rng, LISTS), *members]


GENERATORS: Final[list[tuple[Callable[[random.Random], list[str]], int]]] = [
    (_hash_command, 5),
    (_set_command, 5),
    (_zset_command, 6),
    (_list_command, 5),
    (_key_command, 3),
    (_bulk_command, 1),
]


def _plain_command(
    rng: random.Random, makers: list[Callable[[random.Random], list[str]]]
) -> list[str]:
    """A command whose reply is deterministic and ordered (fit for a MULTI block)."""
    while True:
        command = rng.choice(makers)(rng)
        name = command[0].lower()
        if name not in RANDOM and name not in UNORDERED and not name.endswith("scan"):
            return command


def _transaction(
    rng: random.Random, makers: list[Callable[[random.Random], list[str]]]
) -> list[list[str]]:
    """A MULTI block: sometimes WATCH first (and sometimes a write to the watched key
    before MULTI, which makes EXEC answer nil), sometimes a bad command inside (EXEC then
    answers EXECABORT), sometimes DISCARD instead of EXEC."""
    block: list[list[str]] = []
    if rng.random() < 0.4:
        watched = _pick(rng, ALL_KEYS)
        block.append(["WATCH", watched])
        if rng.random() < 0.5:
            block.append(["DEL", watched])
    block.append(["MULTI"])
    for _ in range(rng.randint(1, 4)):
        block.append(_plain_command(rng, makers))
    if rng.random() < 0.1:
        block.append(["HSET", _pick(rng, HASHES)])  # wrong arity: queued as an error
    block.append(["DISCARD"] if rng.random() < 0.1 else ["EXEC"])
    return block


def command_stream(seed: int, count: int) -> list[list[str]]:
    """At least ``count`` commands drawn from ``seed`` (MULTI blocks are whole)."""
    rng = random.Random(seed)
    makers = [maker for maker, weight in GENERATORS for _ in range(weight)]
    commands: list[list[str]] = []
    while len(commands) < count:
        if rng.random() < 0.05:
            commands.extend(_transaction(rng, makers))
        else:
            commands.append(rng.choice(makers)(rng))
    return commands


def normalize(command: list[str], reply: Any) -> Any:
    """The comparable form of ``reply`` to ``command`` (see the module docstring)."""
    name = command[0].lower()
    if isinstance(reply, Exception):
        return ("error", str(reply))
    if name in RANDOM:
        return ("random", _shape(reply))
    if name in UNORDERED:
        return _sorted(name, reply)
    if (
        name.endswith("scan")
        and isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[1], list)
    ):
        items = reply[1]
        if name in ("hscan", "zscan"):
            pairs = sorted(zip(items[::2], items[1::2], strict=False))
            return [reply[0], pairs]
        return [reply[0], sorted(items)]
    return _freeze(reply)


def _shape(reply: Any) -> Any:
    if isinstance(reply, list | set | tuple):
        return ("collection", len(reply))
    if isinstance(reply, dict):
        return ("map", len(reply))
    return ("scalar", reply is None)


def _sorted(name: str, reply: Any) -> Any:
    if isinstance(reply, dict):
        return sorted(reply.items())
    if isinstance(reply, set):
        return sorted(reply)
    if isinstance(reply, list):
        if name == "hgetall":
            return sorted(zip(reply[::2], reply[1::2], strict=False))
        return sorted(reply, key=repr)
    return reply


def _freeze(reply: Any) -> Any:
    if isinstance(reply, Exception):
        return ("error", str(reply))
    if isinstance(reply, list | tuple):
        return [_freeze(x) for x in reply]
    if isinstance(reply, set):
        return sorted(reply, key=repr)
    if isinstance(reply, dict):
        return sorted(reply.items(), key=repr)
    return reply
