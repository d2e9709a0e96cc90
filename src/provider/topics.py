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


class _Node:
    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.here: set[str] = set()  # sessions whose pattern ends at this node
        self.rest: set[str] = set()  # sessions whose pattern has '>' at this position


class TopicIndex:
    """Which sessions subscribed which patterns; answers "who gets subject S?".

    A tree keyed by token ('*' is a child like any other, '>' a set on the node), so matching
    costs about (tokens in S) x (wildcard branches on its path), not (number of patterns).
    """

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, pattern: str, session_id: str) -> None:
        """Subscribe `session_id` to `pattern` (idempotent)."""
        node = self._root
        for token in pattern.split("."):
            if token == ">":
                node.rest.add(session_id)
                return
            node = node.children.setdefault(token, _Node())
        node.here.add(session_id)

    def remove(self, pattern: str, session_id: str) -> None:
        """Unsubscribe (idempotent); prunes branches left empty."""
        path: list[tuple[_Node, str]] = []
        node = self._root
        for token in pattern.split("."):
            if token == ">":
                node.rest.discard(session_id)
                break
            child = node.children.get(token)
            if child is None:
                return
            path.append((node, token))
            node = child
        else:
            node.here.discard(session_id)
        for parent, token in reversed(path):
            child = parent.children[token]
            if child.here or child.rest or child.children:
                break
            del parent.children[token]

    def remove_all(self, session_id: str, patterns: Iterable[str]) -> None:
        """Drop every subscription of a session that is going away."""
        for pattern in list(patterns):
            self.remove(pattern, session_id)

    def match(self, subject: str) -> set[str]:
        """Session ids with at least one pattern matching `subject` (each once)."""
        tokens = subject.split(".")
        out: set[str] = set()
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == len(tokens):
                out |= node.here
                continue
            out |= node.rest  # '>' needs at least one more token, and there is one
            exact = node.children.get(tokens[i])
            if exact is not None:
                stack.append((exact, i + 1))
            star = node.children.get("*")
            if star is not None and star is not exact:
                stack.append((star, i + 1))
        return out

    def empty(self) -> bool:
        """True when nothing is subscribed (tests use it to prove cleanup)."""
        root = self._root
        return not (root.children or root.here or root.rest)
