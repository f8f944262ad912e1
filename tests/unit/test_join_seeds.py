"""The seed list of ``--join``: every address a name resolves to is a seed (a Kubernetes
headless service), and a malformed entry is refused with its text."""

from __future__ import annotations

import socket

import pytest

from shardkv.node.join import expand_seeds


def test_each_address_of_a_name_is_a_seed_and_literal_addresses_stay_as_given() -> None:
    seeds = expand_seeds("localhost:7380, 10.1.2.3:7390")
    assert "127.0.0.1:7380" in seeds
    assert seeds[-1] == "10.1.2.3:7390"
    assert all(s.endswith(":7380") for s in seeds[:-1])


def test_a_name_that_does_not_resolve_is_kept_for_a_later_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unresolvable(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)  # no DNS lookup in a unit test
    assert expand_seeds("seed-0.shardkv:7380") == ["seed-0.shardkv:7380"]


@pytest.mark.parametrize(("seeds", "message"), [("h", "is not HOST:PORT"), (" , ", "no seed")])
def test_bad_seed_lists_are_refused(seeds: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_seeds(seeds)
