"""NATS-style subject patterns for topic subscriptions. Sans-I/O.

A pattern is dot-separated tokens; `*` matches exactly one token, `>` (last token only)
matches one or more. Tokens are non-empty and contain no whitespace.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_PATTERN_LEN = 256


class PatternError(ValueError):
    """A subscription pattern that is not a valid subject pattern."""


def validate_pattern(pattern: str) -> None:
    """Raise `PatternError` (naming the problem) unless `pattern` is valid."""
    if not pattern:
        raise PatternError("subject pattern is empty")
    if len(pattern) > MAX_PATTERN_LEN:
        raise PatternError(f"subject pattern longer than {MAX_PATTERN_LEN} characters")
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if not token:
            raise PatternError(f"subject pattern {pattern!r} has an empty token")
        if any(c.isspace() for c in token):
            raise PatternError(f"subject pattern {pattern!r} contains whitespace")
        if token == ">" and i != len(tokens) - 1:
            raise PatternError(f"'>' must be the last token in {pattern!r}")
        if len(token) > 1 and ("*" in token or ">" in token):
            raise PatternError(f"wildcards must be whole tokens in {pattern!r}")


def matches(pattern: str, subject: str) -> bool:
    """Does `subject` match `pattern`?"""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens):
            return False
        if p != "*" and p != s_tokens[i]:
            return False
    return len(p_tokens) == len(s_tokens)


class TopicIndex:
    """Which sessions subscribed which patterns; answers "who gets subject S?".

    Exact-subject patterns are a dict lookup; wildcard patterns are checked one by one
    (there are usually few distinct ones).
    """

    def __init__(self) -> None:
        self._exact: dict[str, set[str]] = {}
        self._wild: dict[str, set[str]] = {}

    def add(self, pattern: str, session_id: str) -> None:
        """Subscribe `session_id` to `pattern` (idempotent)."""
        table = self._wild if ("*" in pattern.split(".") or pattern.endswith(">")) else self._exact
        table.setdefault(pattern, set()).add(session_id)

    def remove(self, pattern: str, session_id: str) -> None:
        """Unsubscribe (idempotent)."""
        for table in (self._exact, self._wild):
            ids = table.get(pattern)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del table[pattern]

    def remove_all(self, session_id: str, patterns: Iterable[str]) -> None:
        """Drop every subscription of a session that is going away."""
        for pattern in list(patterns):
            self.remove(pattern, session_id)

    def match(self, subject: str) -> set[str]:
        """Session ids with at least one pattern matching `subject` (each once)."""
        out = set(self._exact.get(subject, ()))
        for pattern, ids in self._wild.items():
            if matches(pattern, subject):
                out |= ids
        return out
