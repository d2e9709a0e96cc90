"""The session table's bookkeeping without sockets: per-address counts, the detached bound,
the memory of ended session ids."""

from __future__ import annotations

from provider.session_counts import (
    ENDED_MAX,
    ENDED_MEMORY,
    AddressCounts,
    address_of,
    beyond_bound,
    first_detached_of,
    remember_ended,
)


def test_address_of_a_peer_name() -> None:
    assert address_of("10.0.0.1:5000") == "10.0.0.1"
    assert address_of("[::1]:5000") == "::1"
    assert address_of("") == ""


def test_each_session_counts_once_under_its_address() -> None:
    counts = AddressCounts()
    counts.count("a", "10.0.0.1")
    counts.count("a", "10.0.0.1")  # counted already: no change
    counts.count("b", "10.0.0.1")
    counts.count("c", "10.0.0.2")
    counts.count("d", "")  # unknown address: not counted
    assert counts.per_ip == {"10.0.0.1": 2, "10.0.0.2": 1}
    assert (counts.of("10.0.0.1"), counts.of("10.9.9.9")) == (2, 0)
    assert counts.ip_of("b") == "10.0.0.1" and counts.ip_of("d") is None


def test_uncounting_drops_an_address_with_no_sessions_left() -> None:
    counts = AddressCounts()
    counts.count("a", "10.0.0.1")
    counts.count("b", "10.0.0.1")
    counts.uncount("a")
    counts.uncount("a")  # twice (evicted, then ended): counted down once
    assert counts.per_ip == {"10.0.0.1": 1}
    counts.uncount("b")
    counts.uncount("never")
    assert counts.per_ip == {}


def test_beyond_bound_takes_the_oldest_out() -> None:
    detached = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert beyond_bound(detached, 2) == [1, 2]
    assert list(detached) == ["c", "d"]
    assert beyond_bound(detached, 2) == []
    assert beyond_bound(detached, 0) == [3, 4] and detached == {}


def test_first_detached_of_an_address_skips_sessions_not_waiting() -> None:
    detached = {"a": "moving", "b": "waiting", "c": "waiting"}
    ip_of = {"a": "1.1.1.1", "b": "2.2.2.2", "c": "1.1.1.1"}.get
    waiting = "waiting".__eq__
    assert first_detached_of(detached, "1.1.1.1", ip_of, waiting) == "waiting"
    assert first_detached_of({"a": "moving"}, "1.1.1.1", ip_of, waiting) is None
    assert first_detached_of(detached, "3.3.3.3", ip_of, waiting) is None


def test_ended_ids_are_forgotten_by_age_and_by_count() -> None:
    ended: dict[str, float] = {}
    remember_ended(ended, "old", 0.0)
    remember_ended(ended, "new", ENDED_MEMORY - 1)
    assert list(ended) == ["old", "new"]
    remember_ended(ended, "newer", ENDED_MEMORY + 1)  # "old" is past the memory
    assert list(ended) == ["new", "newer"]
    full = {f"s{i}": 100.0 for i in range(ENDED_MAX)}
    remember_ended(full, "last", 100.0)
    assert len(full) == ENDED_MAX and "s0" not in full and "last" in full
