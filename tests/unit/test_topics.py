"""Subject patterns and the topic index."""

from __future__ import annotations

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
