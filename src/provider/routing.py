"""Where a component's publish or request goes (README "Routing"). Sans-I/O.

One `RoutingTable` holds everything a subject can name on this instance: the server-mode
sessions (by id, and by topic), the endpoints they belong to (who may reach them, their
broadcast subject), the client-mode connections (one per link pair, with a session id), and
the ids of sessions that ended here. `RoutingTable.route` is the routing rules, in order,
with the isolation between components; it parses the subject once and returns one target.
`outbound.Outbound` and the provider only carry the target out (queue, store, forward, wait).

The rules, for a component `caller` publishing subject `S` over its link `link`:

1. `S` is a session id or `<session id>.R`: that session only (server or client mode, this
   rule first whatever the caller's mode), frame subject `S` (or `R`); a session the caller
   may not reach, or that is gone, does not exist for it (`Unreachable`); a session this
   instance does not hold may be held by another (`Elsewhere`).
2. the caller's own link is a client-mode connection: `S` goes to its server, as is.
3. otherwise every session of the endpoints the caller may reach whose `BROADCAST_SUBJECT` is
   `S`, and of the others every session subscribed to a pattern matching `S` (`FanOut`).

Isolation: a component reaches the sessions of its own endpoints and of endpoints whose
`ALLOWED_PUBLISHERS` lists it; a client-mode connection only from its own component.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from .ids import looks_like_session_id
from .topics import TopicIndex

PairKey = tuple[str, str]  # (component id, link name)


class RoutedSession(Protocol):
    """What routing reads of a server-mode session."""

    @property
    def id(self) -> str:
        """The session id (`ws_` + 22 characters)."""

    @property
    def component_id(self) -> str:
        """The component of the session's endpoint."""

    @property
    def link_name(self) -> str:
        """The link name of the session's endpoint."""


class EndpointRules(Protocol):
    """What routing reads of an endpoint's settings."""

    @property
    def broadcast_subject(self) -> str:
        """The subject that means "every session of this endpoint"."""

    @property
    def allowed_publishers(self) -> Container[str]:
        """Components other than the owner that may reach its sessions."""


class RoutedEndpoint(Protocol):
    """What routing reads of a server endpoint."""

    @property
    def key(self) -> PairKey:
        """Its (component id, link name)."""

    @property
    def settings(self) -> EndpointRules:
        """Its settings."""

    @property
    def sessions(self) -> Mapping[str, Any]:
        """Its sessions by id (connected or detached, tracked or not)."""


class RoutedClient(Protocol):
    """What routing reads of a client-mode connection."""

    @property
    def key(self) -> PairKey:
        """Its (component id, link name)."""

    @property
    def session_id(self) -> str | None:
        """Its session id (None with ENABLE_SESSION_TRACKING=false: not addressable)."""


S = TypeVar("S", bound=RoutedSession)
E = TypeVar("E", bound=RoutedEndpoint)
C = TypeVar("C", bound=RoutedClient)


def may_reach(caller: str, owner: str, allowed_publishers: Container[str]) -> bool:
    """Isolation: may component `caller` reach the sessions of an endpoint of `owner`?"""
    return caller == owner or caller in allowed_publishers


@dataclass(frozen=True, slots=True)
class Unreachable:
    """Rule 1, but there is no such session for the caller (gone, or not its to reach)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """Rule 1, for a session this instance does not hold (another instance may)."""

    session_id: str


# Not frozen (half the cost to build): one is built for every reply a component sends.
@dataclass(slots=True)
class ToSession(Generic[S]):
    """Rule 1: one server-mode session of this instance, with the frame's subject."""

    session: S
    subject: str


@dataclass(slots=True)
class ToClientSession(Generic[C]):
    """Rule 1: the client-mode connection whose session id it is, with the frame's subject."""

    client: C
    subject: str


@dataclass(slots=True)
class ToServer(Generic[C]):
    """Rule 2: the caller's own client-mode connection; the subject goes out as is."""

    client: C


@dataclass(slots=True)
class FanOut(Generic[S]):
    """Rule 3 (broadcast subject or topic): these sessions, each once (maybe none)."""

    sessions: list[S]


#: What `RoutingTable.route` returns.
Target: TypeAlias = (
    ToSession[S] | ToClientSession[C] | ToServer[C] | FanOut[S] | Unreachable | Elsewhere
)


class RoutingTable(Generic[S, E, C]):
    """Every session, endpoint and client-mode connection a subject can name here."""

    def __init__(self) -> None:
        #: Tracked (addressable) server-mode sessions by id.
        self.sessions: dict[str, S] = {}
        #: Server endpoints by (component id, link name).
        self.endpoints: dict[PairKey, E] = {}
        #: Topic subscriptions of the tracked sessions.
        self.topics = TopicIndex()
        #: Client-mode connections by (component id, link name).
        self.clients: dict[PairKey, C] = {}
        #: Sessions that ended here for good: id -> when (oldest first). Session ids are
        #: never reused: such an id names nothing, anywhere.
        self.ended: dict[str, float] = {}

    def route(self, caller: str, link: str | None, subject: str) -> Target[S, C]:
        """Where component `caller`'s publish (or request) of `subject` goes.

        `link` is the caller's link name; None for a publish another instance passed on to
        this one (it asks for this instance's sessions only: never `Elsewhere`, and the
        caller's client-mode connection, on the other instance, does not apply).
        """
        sid, _, rest = subject.partition(".")
        if looks_like_session_id(sid):
            if link is not None and sid in self.ended:
                return Unreachable(sid)  # gone: no need to ask anyone
            session = self.sessions.get(sid)
            if session is not None:
                endpoint = self.endpoints.get((session.component_id, session.link_name))
                if endpoint is None or not may_reach(
                    caller, endpoint.key[0], endpoint.settings.allowed_publishers
                ):
                    return Unreachable(sid)  # other components' sessions do not exist
                return ToSession(session, rest or sid)
            client = self.client_of(sid)
            if client is not None:
                if client.key[0] != caller:  # client mode has no ALLOWED_PUBLISHERS
                    return Unreachable(sid)
                return ToClientSession(client, rest or sid)
            return Elsewhere(sid) if link is not None else Unreachable(sid)
        if link is not None:
            own = self.clients.get((caller, link))
            if own is not None:
                return ToServer(own)
        return FanOut(self._subscribers(caller, subject))

    def _subscribers(self, caller: str, subject: str) -> list[S]:
        """Rule 3: the broadcast subject of some reachable endpoints, a topic for the rest."""
        targets: list[S] = []
        topic_keys = set()
        for endpoint in self.endpoints.values():
            if not may_reach(caller, endpoint.key[0], endpoint.settings.allowed_publishers):
                continue
            if endpoint.settings.broadcast_subject == subject:
                targets.extend(endpoint.sessions.values())
            else:
                topic_keys.add(endpoint.key)
        if topic_keys:
            for sid in self.topics.match(subject):
                session = self.sessions.get(sid)
                if session is not None and (session.component_id, session.link_name) in topic_keys:
                    targets.append(session)
        return targets

    def client_of(self, session_id: str) -> C | None:
        """The client-mode connection whose session id this is (tracked pairs only)."""
        for client in self.clients.values():
            if client.session_id == session_id:
                return client
        return None

    def holds(self, session_id: str) -> bool:
        """Does this instance hold this session (either mode)?"""
        return session_id in self.sessions or self.client_of(session_id) is not None

    def session(
        self, session_id: str, subject: str
    ) -> ToSession[S] | ToClientSession[C] | Unreachable:
        """The library API's send to one session (either mode) with frame subject `subject`:
        no isolation (the caller is the operator)."""
        client = self.client_of(session_id)
        if client is not None:
            return ToClientSession(client, subject)
        session = self.sessions.get(session_id)
        if session is None:
            return Unreachable(session_id)
        return ToSession(session, subject)

    def everyone(self) -> list[S]:
        """The library API's broadcast: every session of every endpoint."""
        return [s for e in self.endpoints.values() for s in e.sessions.values()]

    def reachable_by(self, caller: str | None) -> list[S]:
        """The tracked sessions `caller` may reach (None: all of them)."""
        if caller is None:
            return list(self.sessions.values())
        out = []
        for session in self.sessions.values():
            endpoint = self.endpoints.get((session.component_id, session.link_name))
            if endpoint is not None and may_reach(
                caller, endpoint.key[0], endpoint.settings.allowed_publishers
            ):
                out.append(session)
        return out
