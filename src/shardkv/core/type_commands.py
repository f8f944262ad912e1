# ruff: noqa: E501
"""Command table rows of the hash, set, sorted-set and list commands (Redis 7.0's name,
arity, flags, first/last/step keys, ACL categories, group, version and summary).

Pure data: ``shardkv.core.commands`` turns each row into a ``CommandSpec`` of kind DATA.
Their ``COMMAND DOCS`` carry no argument documentation (redis-cli then shows no hints for
them; it needs none to work).
"""

from __future__ import annotations

from typing import Final

TypeRow = tuple[str, int, str, tuple[int, int, int], str, str, str, str]

_H: Final = "hash"
_S: Final = "set"
_Z: Final = "sorted-set"
_L: Final = "list"
_G: Final = "generic"

# fmt: off
TYPE_COMMAND_ROWS: Final[tuple[TypeRow, ...]] = (
    ("hset", -4, "write denyoom fast", (1, 1, 1), "@write @hash @fast", _H, "2.0.0", "Set the string value of a hash field"),
    ("hmset", -4, "write denyoom fast", (1, 1, 1), "@write @hash @fast", _H, "2.0.0", "Set multiple hash fields to multiple values"),
    ("hsetnx", 4, "write denyoom fast", (1, 1, 1), "@write @hash @fast", _H, "2.0.0", "Set the value of a hash field, only if the field does not exist"),
    ("hget", 3, "readonly fast", (1, 1, 1), "@read @hash @fast", _H, "2.0.0", "Get the value of a hash field"),
    ("hmget", -3, "readonly fast", (1, 1, 1), "@read @hash @fast", _H, "2.0.0", "Get the values of all the given hash fields"),
    ("hgetall", 2, "readonly", (1, 1, 1), "@read @hash @slow", _H, "2.0.0", "Get all the fields and values in a hash"),
    ("hdel", -3, "write fast", (1, 1, 1), "@write @hash @fast", _H, "2.0.0", "Delete one or more hash fields"),
    ("hlen", 2, "readonly fast", (1, 1, 1), "@read @hash @fast", _H, "2.0.0", "Get the number of fields in a hash"),
    ("hexists", 3, "readonly fast", (1, 1, 1), "@read @hash @fast", _H, "2.0.0", "Determine if a hash field exists"),
    ("hkeys", 2, "readonly", (1, 1, 1), "@read @hash @slow", _H, "2.0.0", "Get all the fields in a hash"),
    ("hvals", 2, "readonly", (1, 1, 1), "@read @hash @slow", _H, "2.0.0", "Get all the values in a hash"),
    ("hincrby", 4, "write denyoom fast", (1, 1, 1), "@write @hash @fast", _H, "2.0.0", "Increment the integer value of a hash field by the given number"),
    ("hincrbyfloat", 4, "write denyoom fast", (1, 1, 1), "@write @hash @fast", _H, "2.6.0", "Increment the float value of a hash field by the given amount"),
    ("hstrlen", 3, "readonly fast", (1, 1, 1), "@read @hash @fast", _H, "3.2.0", "Get the length of the value of a hash field"),
    ("hscan", -3, "readonly", (1, 1, 1), "@read @hash @slow", _H, "2.8.0", "Incrementally iterate hash fields and associated values"),
    ("hrandfield", -2, "readonly", (1, 1, 1), "@read @hash @slow", _H, "6.2.0", "Get one or multiple random fields from a hash"),
    ("sadd", -3, "write denyoom fast", (1, 1, 1), "@write @set @fast", _S, "1.0.0", "Add one or more members to a set"),
    ("srem", -3, "write fast", (1, 1, 1), "@write @set @fast", _S, "1.0.0", "Remove one or more members from a set"),
    ("sismember", 3, "readonly fast", (1, 1, 1), "@read @set @fast", _S, "1.0.0", "Determine if a given value is a member of a set"),
    ("smismember", -3, "readonly fast", (1, 1, 1), "@read @set @fast", _S, "6.2.0", "Returns the membership associated with the given elements for a set"),
    ("smembers", 2, "readonly", (1, 1, 1), "@read @set @slow", _S, "1.0.0", "Get all the members in a set"),
    ("scard", 2, "readonly fast", (1, 1, 1), "@read @set @fast", _S, "1.0.0", "Get the number of members in a set"),
    ("spop", -2, "write fast", (1, 1, 1), "@write @set @fast", _S, "1.0.0", "Remove and return one or multiple random members from a set"),
    ("srandmember", -2, "readonly", (1, 1, 1), "@read @set @slow", _S, "1.0.0", "Get one or multiple random members from a set"),
    ("sinter", -2, "readonly", (1, -1, 1), "@read @set @slow", _S, "1.0.0", "Intersect multiple sets"),
    ("sunion", -2, "readonly", (1, -1, 1), "@read @set @slow", _S, "1.0.0", "Add multiple sets"),
    ("sdiff", -2, "readonly", (1, -1, 1), "@read @set @slow", _S, "1.0.0", "Subtract multiple sets"),
    ("sinterstore", -3, "write denyoom", (1, -1, 1), "@write @set @slow", _S, "1.0.0", "Intersect multiple sets and store the resulting set in a key"),
    ("sunionstore", -3, "write denyoom", (1, -1, 1), "@write @set @slow", _S, "1.0.0", "Add multiple sets and store the resulting set in a key"),
    ("sdiffstore", -3, "write denyoom", (1, -1, 1), "@write @set @slow", _S, "1.0.0", "Subtract multiple sets and store the resulting set in a key"),
    ("smove", 4, "write fast", (1, 2, 1), "@write @set @fast", _S, "1.0.0", "Move a member from one set to another"),
    ("sscan", -3, "readonly", (1, 1, 1), "@read @set @slow", _S, "2.8.0", "Incrementally iterate Set elements"),
    ("zadd", -4, "write denyoom fast", (1, 1, 1), "@write @sortedset @fast", _Z, "1.2.0", "Add one or more members to a sorted set, or update its score if it already exists"),
    ("zrem", -3, "write fast", (1, 1, 1), "@write @sortedset @fast", _Z, "1.2.0", "Remove one or more members from a sorted set"),
    ("zscore", 3, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "1.2.0", "Get the score associated with the given member in a sorted set"),
    ("zmscore", -3, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "6.2.0", "Get the score associated with the given members in a sorted set"),
    ("zincrby", 4, "write denyoom fast", (1, 1, 1), "@write @sortedset @fast", _Z, "1.2.0", "Increment the score of a member in a sorted set"),
    ("zcard", 2, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "1.2.0", "Get the number of members in a sorted set"),
    ("zcount", 4, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "2.0.0", "Count the members in a sorted set with scores within the given values"),
    ("zrank", 3, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "2.0.0", "Determine the index of a member in a sorted set"),
    ("zrevrank", 3, "readonly fast", (1, 1, 1), "@read @sortedset @fast", _Z, "2.0.0", "Determine the index of a member in a sorted set, with scores ordered from high to low"),
    ("zrange", -4, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "1.2.0", "Return a range of members in a sorted set"),
    ("zrangestore", -5, "write denyoom", (1, 2, 1), "@write @sortedset @slow", _Z, "6.2.0", "Store a range of members from sorted set into another key"),
    ("zrangebyscore", -4, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "1.0.5", "Return a range of members in a sorted set, by score"),
    ("zrevrangebyscore", -4, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "2.2.0", "Return a range of members in a sorted set, by score, with scores ordered from high to low"),
    ("zrangebylex", -4, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "2.8.9", "Return a range of members in a sorted set, by lexicographical range"),
    ("zrevrange", -4, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "1.2.0", "Return a range of members in a sorted set, by index, with scores ordered from high to low"),
    ("zpopmin", -2, "write fast", (1, 1, 1), "@write @sortedset @fast", _Z, "5.0.0", "Remove and return members with the lowest scores in a sorted set"),
    ("zpopmax", -2, "write fast", (1, 1, 1), "@write @sortedset @fast", _Z, "5.0.0", "Remove and return members with the highest scores in a sorted set"),
    ("zremrangebyscore", 4, "write", (1, 1, 1), "@write @sortedset @slow", _Z, "1.2.0", "Remove all members in a sorted set within the given scores"),
    ("zremrangebyrank", 4, "write", (1, 1, 1), "@write @sortedset @slow", _Z, "2.0.0", "Remove all members in a sorted set within the given indexes"),
    ("zscan", -3, "readonly", (1, 1, 1), "@read @sortedset @slow", _Z, "2.8.0", "Incrementally iterate sorted sets elements and associated scores"),
    ("zunionstore", -4, "write denyoom movablekeys", (1, 1, 1), "@write @sortedset @slow", _Z, "2.0.0", "Add multiple sorted sets and store the resulting sorted set in a new key"),
    ("zinterstore", -4, "write denyoom movablekeys", (1, 1, 1), "@write @sortedset @slow", _Z, "2.0.0", "Intersect multiple sorted sets and store the resulting sorted set in a new key"),
    ("lpush", -3, "write denyoom fast", (1, 1, 1), "@write @list @fast", _L, "1.0.0", "Prepend one or multiple elements to a list"),
    ("rpush", -3, "write denyoom fast", (1, 1, 1), "@write @list @fast", _L, "1.0.0", "Append one or multiple elements to a list"),
    ("lpushx", -3, "write denyoom fast", (1, 1, 1), "@write @list @fast", _L, "2.2.0", "Prepend an element to a list, only if the list exists"),
    ("rpushx", -3, "write denyoom fast", (1, 1, 1), "@write @list @fast", _L, "2.2.0", "Append an element to a list, only if the list exists"),
    ("lpop", -2, "write fast", (1, 1, 1), "@write @list @fast", _L, "1.0.0", "Remove and get the first elements in a list"),
    ("rpop", -2, "write fast", (1, 1, 1), "@write @list @fast", _L, "1.0.0", "Remove and get the last elements in a list"),
    ("llen", 2, "readonly fast", (1, 1, 1), "@read @list @fast", _L, "1.0.0", "Get the length of a list"),
    ("lrange", 4, "readonly", (1, 1, 1), "@read @list @slow", _L, "1.0.0", "Get a range of elements from a list"),
    ("lindex", 3, "readonly", (1, 1, 1), "@read @list @slow", _L, "1.0.0", "Get an element from a list by its index"),
    ("lset", 4, "write denyoom", (1, 1, 1), "@write @list @slow", _L, "1.0.0", "Set the value of an element in a list by its index"),
    ("lrem", 4, "write", (1, 1, 1), "@write @list @slow", _L, "1.0.0", "Remove elements from a list"),
    ("ltrim", 4, "write", (1, 1, 1), "@write @list @slow", _L, "1.0.0", "Trim a list to the specified range"),
    ("linsert", 5, "write denyoom", (1, 1, 1), "@write @list @slow", _L, "2.2.0", "Insert an element before or after another element in a list"),
    ("lpos", -3, "readonly", (1, 1, 1), "@read @list @slow", _L, "6.0.6", "Return the index of matching elements on a list"),
    ("lmove", 5, "write denyoom", (1, 2, 1), "@write @list @slow", _L, "6.2.0", "Pop an element from a list, push it to another list and return it"),
    ("rpoplpush", 3, "write denyoom", (1, 2, 1), "@write @list @slow", _L, "1.2.0", "Remove the last element in a list, prepend it to another list and return it"),
    ("rename", 3, "write", (1, 2, 1), "@keyspace @write @slow", _G, "1.0.0", "Rename a key"),
    ("renamenx", 3, "write fast", (1, 2, 1), "@keyspace @write @fast", _G, "1.0.0", "Rename a key, only if the new key does not exist"),
    ("watch", -2, "noscript loading stale fast allow_busy", (1, -1, 1), "@fast @transaction", "transactions", "2.2.0", "Watch the given keys to determine execution of the MULTI/EXEC block"),
    ("copy", -3, "write denyoom", (1, 2, 1), "@keyspace @write @slow", _G, "6.2.0", "Copy a key"),
)
# fmt: on
