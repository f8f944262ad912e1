"""Deterministic simulation of a ShardKV Raft group (TigerBeetle VOPR style).

One seed drives every random choice; the unmodified Raft core runs against a simulated
network (`network`), crash-prone disks (`disk`) and simulated clients, while `invariants`
checks Raft's safety properties at every step and `linearizability` checks the client
history at the end. Entry points: `cluster.run_seed(seed)` and ``python -m shardkv.sim``.

Modules: ``cluster`` (nodes, faults, clients, the two phases), ``network``, ``disk``,
``invariants``, ``state_machine`` (the replicated key-value store), ``linearizability``
and ``history_formats`` (the checker and the history readers).
"""
