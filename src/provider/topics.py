"""NATS-style subject patterns for topic subscriptions. Sans-I/O.

A pattern is dot-separated tokens; `*` matches exactly one token, `>` (last token only)
matches one or more. Tokens are non-empty and contain no whitespace.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import PatternError

MAX_PATTERN_LEN = 256
#: Each token of a pattern is a node of the index: 16 tokens is far more than topic names
#: use, and bounds what one subscription can make us build.
MAX_PATTERN_TOKENS = 16
#: Nodes in one provider's index (every session's patterns; shared prefixes share nodes).
#: ~300 bytes each (measured with tracemalloc): at most ~150 MB, whatever clients send.
DEFAULT_MAX_NODES = 500_000


def validate_pattern(pattern: str) -> None:
    """Raise `PatternError` (naming the problem) unless `pattern` is valid."""
    if not pattern:
        raise PatternError("subject pattern is empty")
    if len(pattern) > MAX_PATTERN_LEN:
        raise PatternError(f"subject pattern longer than {MAX_PATTERN_LEN} characters")
    tokens = pattern.split(".")
    if len(tokens) > MAX_PATTERN_TOKENS:
        raise PatternError(f"subject pattern has more than {MAX_PATTERN_TOKENS} tokens")
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


class IndexFull(Exception):
    """The index holds `max_nodes` nodes: a new pattern would need more."""


class _Node:
    # Containers are made when first needed: most nodes are on one path only, and an empty
    # dict or set costs more than the node itself.
    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.here: set[str] | None = None  # sessions whose pattern ends at this node
        self.rest: set[str] | None = None  # sessions whose pattern has '>' at this position

    def empty(self) -> bool:
        return not (self.children or self.here or self.rest)


class TopicIndex:
    """Which sessions subscribed which patterns; answers "who gets subject S?".

    A tree keyed by token ('*' is a child like any other, '>' a set on the node), so matching
    costs about (tokens in S) x (wildcard branches on its path), not (number of patterns).
    Its size is bounded: `add` raises `IndexFull` rather than grow past `max_nodes`.
    """

    def __init__(self, max_nodes: int = DEFAULT_MAX_NODES) -> None:
        self._root = _Node()
        self.max_nodes = max_nodes
        self.nodes = 0

    def add(self, pattern: str, session_id: str) -> None:
        """Subscribe `session_id` to `pattern` (idempotent); raises `IndexFull` (changing
        nothing) when the pattern needs nodes the index may not make."""
        tokens = pattern.split(".")
        path = tokens[:-1] if tokens[-1] == ">" else tokens
        node: _Node | None = self._root
        missing = len(path)
        for token in path:
            node = node.children.get(token) if node is not None and node.children else None
            if node is None:
                break
            missing -= 1
        if missing and self.nodes + missing > self.max_nodes:
            raise IndexFull(f"the topic index is full ({self.max_nodes} nodes)")
        node = self._root
        for token in path:
            if node.children is None:
                node.children = {}
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _Node()
                self.nodes += 1
            node = child
        if tokens[-1] == ">":
            if node.rest is None:
                node.rest = set()
            node.rest.add(session_id)
        else:
            if node.here is None:
                node.here = set()
            node.here.add(session_id)

    def remove(self, pattern: str, session_id: str) -> None:
        """Unsubscribe (idempotent); prunes branches left empty."""
        path: list[tuple[_Node, str]] = []
        node = self._root
        for token in pattern.split("."):
            if token == ">":
                if node.rest is not None:
                    node.rest.discard(session_id)
                    if not node.rest:
                        node.rest = None
                break
            child = node.children.get(token) if node.children else None
            if child is None:
                return
            path.append((node, token))
            node = child
        else:
            if node.here is not None:
                node.here.discard(session_id)
                if not node.here:
                    node.here = None
        for parent, token in reversed(path):
            assert parent.children is not None
            if not parent.children[token].empty():
                break
            del parent.children[token]
            self.nodes -= 1
            if not parent.children:
                parent.children = None

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
                if node.here:
                    out |= node.here
                continue
            if node.rest:
                out |= node.rest  # '>' needs at least one more token, and there is one
            children = node.children
            if not children:
                continue
            exact = children.get(tokens[i])
            if exact is not None:
                stack.append((exact, i + 1))
            star = children.get("*")
            if star is not None and star is not exact:
                stack.append((star, i + 1))
        return out

    def empty(self) -> bool:
        """True when nothing is subscribed (tests use it to prove cleanup)."""
        return self._root.empty()
