"""Subject patterns and the topic index."""

from __future__ import annotations

import string
import tracemalloc

import pytest

from provider.topics import PatternError, TopicIndex, matches, validate_pattern


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "x.b", True),
        (">", "anything.at.all", True),
        ("a.*.c", "a.x.c", True),
        ("a.*.c", "a.x.d", False),
        ("a", "a.b", False),
    ],
)
def test_matches(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", ".a", "a.>.b", "a*", "a.b>", "a b", "x" * 300])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(PatternError):
        validate_pattern(pattern)


def test_index_matches_each_session_once() -> None:
    index = TopicIndex()
    index.add("news.*", "s1")
    index.add("news.>", "s1")
    index.add("news.tech", "s2")
    index.add(">", "s3")
    assert index.match("news.tech") == {"s1", "s2", "s3"}
    assert index.match("other") == {"s3"}
    index.remove("news.*", "s1")
    assert index.match("news.tech") == {"s1", "s2", "s3"}
    index.remove_all("s1", ["news.>"])
    index.remove("never", "s9")  # idempotent
    assert index.match("news.tech") == {"s2", "s3"}


def test_index_agrees_with_matches_and_prunes() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    tokens = st.sampled_from(["a", "b", "*"])
    patterns = st.lists(tokens, min_size=1, max_size=3).map(".".join) | st.lists(
        tokens, min_size=0, max_size=2
    ).map(lambda t: ".".join([*t, ">"]))
    subjects = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join)

    @settings(max_examples=300)
    @given(st.lists(patterns, max_size=6), subjects)
    def check(pats: list[str], subject: str) -> None:
        index = TopicIndex()
        for n, pattern in enumerate(pats):
            index.add(pattern, f"s{n}")
        expected = {f"s{n}" for n, p in enumerate(pats) if matches(p, subject)}
        assert index.match(subject) == expected
        for n, pattern in enumerate(pats):
            index.remove(pattern, f"s{n}")
        assert index.empty()

    check()


def test_many_wildcard_patterns() -> None:
    index = TopicIndex()
    for n in range(20_000):
        index.add(f"t{n}.*.x", f"s{n}")
    # An unrelated subject touches none of the 20k branches.
    assert index.match("other.y.x") == set()
    assert index.match("t5.q.x") == {"s5"}


def index_bytes(patterns: list[str]) -> tuple[int, int]:
    """Bytes the index allocates for one session's `patterns`, and the nodes it made."""
    index = TopicIndex()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for pattern in patterns:
            index.add(pattern, "ws_" + "s" * 22)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return used, index.nodes


def test_index_cost_is_proportional_to_the_patterns() -> None:
    """100 patterns of 256 characters cost 6-8.7 MB per session (~300 bytes of index per
    character sent) when every node made its containers up front. Now a node costs ~230
    bytes, and a character sent at most ~120 (one-character tokens, each a new node)."""
    alphabet = string.ascii_letters + string.digits
    tiny_tokens = [".".join([first] + ["a"] * 15) for first in alphabet]
    used, nodes = index_bytes(tiny_tokens)
    assert used / nodes < 300
    assert used / sum(map(len, tiny_tokens)) < 150
    long_tokens = [".".join(f"{n}x{i}" + "y" * 10 for i in range(16))[:256] for n in range(17)]
    used, _ = index_bytes(long_tokens)
    assert used / sum(map(len, long_tokens)) < 30
