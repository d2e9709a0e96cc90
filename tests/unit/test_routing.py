"""The routing rules and the isolation between components (README "Routing"), without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from provider.ids import new_session_id
from provider.routing import (
    Elsewhere,
    FanOut,
    RoutingTable,
    ToClientSession,
    ToServer,
    ToSession,
    Unreachable,
    may_reach,
)


@dataclass(eq=False)
class FakeSession:
    id: str
    component_id: str
    link_name: str


@dataclass(frozen=True)
class Rules:
    broadcast_subject: str = "broadcast"
    allowed_publishers: frozenset[str] = frozenset()


@dataclass(eq=False)
class FakeEndpoint:
    key: tuple[str, str]
    settings: Rules = field(default_factory=Rules)
    sessions: dict[str, FakeSession] = field(default_factory=dict)


@dataclass(eq=False)
class FakeClient:
    key: tuple[str, str]
    session_id: str | None


Table = RoutingTable[FakeSession, FakeEndpoint, FakeClient]


def endpoint(table: Table, component: str, link: str = "default", **rules: object) -> FakeEndpoint:
    ep = FakeEndpoint((component, link), Rules(**rules))  # type: ignore[arg-type]
    table.endpoints[ep.key] = ep
    return ep


def session(table: Table, ep: FakeEndpoint, *, tracked: bool = True) -> FakeSession:
    s = FakeSession(new_session_id(), *ep.key)
    ep.sessions[s.id] = s
    if tracked:
        table.sessions[s.id] = s
    return s


def client_mode(
    table: Table, component: str, name: str = "default", tracked: bool = True
) -> FakeClient:
    client = FakeClient((component, name), new_session_id() if tracked else None)
    table.clients[client.key] = client
    return client


@pytest.fixture
def table() -> Table:
    return RoutingTable()


# --- rule 1: a session id --------------------------------------------------------------------


def test_a_session_id_names_that_session(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    target = table.route("a", "default", s.id)
    assert isinstance(target, ToSession)
    assert target.session is s
    assert target.subject == s.id


def test_session_id_dot_r_is_sent_with_subject_r(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    target = table.route("a", "default", f"{s.id}.chat.room")
    assert isinstance(target, ToSession)
    assert target.subject == "chat.room"


def test_a_trailing_dot_means_the_session_id(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    target = table.route("a", "default", f"{s.id}.")
    assert isinstance(target, ToSession)
    assert target.subject == s.id


def test_rule_1_does_not_depend_on_the_callers_link(table: Table) -> None:
    s = session(table, endpoint(table, "a", "in"))
    target = table.route("a", "out", s.id)
    assert isinstance(target, ToSession)


def test_rule_1_comes_first_even_for_a_client_mode_caller(table: Table) -> None:
    s = session(table, endpoint(table, "a", "in"))
    client_mode(table, "a", "out")
    assert isinstance(table.route("a", "out", s.id), ToSession)


def test_a_session_not_held_here_may_be_elsewhere(table: Table) -> None:
    sid = new_session_id()
    assert table.route("a", "default", sid) == Elsewhere(sid)


def test_forwarded_from_another_instance_only_this_instances_sessions(table: Table) -> None:
    sid = new_session_id()
    target = table.route("a", None, f"{sid}.x")
    assert target == Unreachable(sid)
    assert isinstance(target, Unreachable)


def test_a_session_that_ended_here_is_gone(table: Table) -> None:
    sid = new_session_id()
    table.ended[sid] = 0.0
    assert table.route("a", "default", sid) == Unreachable(sid)


def test_an_ended_id_wins_over_a_session_still_in_the_table(table: Table) -> None:
    # Evicted for a new connection: ended at once, out of the tables a little later.
    s = session(table, endpoint(table, "a"))
    table.ended[s.id] = 0.0
    assert table.route("a", "default", s.id) == Unreachable(s.id)


def test_an_untracked_session_has_no_id_to_reach(table: Table) -> None:
    s = session(table, endpoint(table, "a"), tracked=False)
    assert table.route("a", None, s.id) == Unreachable(s.id)


# --- isolation --------------------------------------------------------------------------------


def test_another_components_session_does_not_exist(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    assert table.route("b", "default", s.id) == Unreachable(s.id)
    assert table.route("b", None, f"{s.id}.x") == Unreachable(s.id)


def test_allowed_publishers_may_reach_the_sessions(table: Table) -> None:
    s = session(table, endpoint(table, "a", allowed_publishers=frozenset({"b"})))
    assert isinstance(table.route("b", "default", s.id), ToSession)
    assert table.route("c", "default", s.id) == Unreachable(s.id)


def test_a_session_whose_endpoint_is_gone_does_not_exist(table: Table) -> None:
    ep = endpoint(table, "a")
    s = session(table, ep)
    del table.endpoints[ep.key]
    assert table.route("a", "default", s.id) == Unreachable(s.id)


def test_a_broadcast_reaches_only_reachable_endpoints(table: Table) -> None:
    mine = session(table, endpoint(table, "a"))
    theirs = session(table, endpoint(table, "b"))
    shared = session(table, endpoint(table, "c", allowed_publishers=frozenset({"a"})))
    target = table.route("a", "default", "broadcast")
    assert isinstance(target, FanOut)
    assert set(map(id, target.sessions)) == {id(mine), id(shared)}
    assert theirs not in target.sessions


def test_a_topic_reaches_only_reachable_subscribers(table: Table) -> None:
    mine = session(table, endpoint(table, "a"))
    theirs = session(table, endpoint(table, "b"))
    for s in (mine, theirs):
        table.topics.add("news.*", s.id)
    target = table.route("a", "default", "news.today")
    assert isinstance(target, FanOut)
    assert target.sessions == [mine]


def test_a_client_mode_session_only_for_its_own_component(table: Table) -> None:
    client = client_mode(table, "a")
    assert client.session_id is not None
    target = table.route("a", "other-link", f"{client.session_id}.cmd")
    assert isinstance(target, ToClientSession)
    assert target.client is client
    assert target.subject == "cmd"
    assert table.route("b", "default", client.session_id) == Unreachable(client.session_id)


def test_allowed_publishers_do_not_open_client_mode_sessions(table: Table) -> None:
    endpoint(table, "a", allowed_publishers=frozenset({"b"}))
    client = client_mode(table, "a", "out")
    assert client.session_id is not None
    assert table.route("b", "x", client.session_id) == Unreachable(client.session_id)


def test_a_client_mode_session_alone_is_sent_with_its_id(table: Table) -> None:
    client = client_mode(table, "a")
    assert client.session_id is not None
    target = table.route("a", None, client.session_id)
    assert isinstance(target, ToClientSession)
    assert target.subject == client.session_id


def test_may_reach() -> None:
    assert may_reach("a", "a", frozenset())
    assert may_reach("b", "a", frozenset({"b"}))
    assert not may_reach("b", "a", frozenset({"c"}))


# --- rule 2: the caller's client-mode link ----------------------------------------------------


def test_a_client_mode_callers_subject_goes_to_its_server(table: Table) -> None:
    client = client_mode(table, "a", "out")
    session(table, endpoint(table, "a", "in"))
    assert table.route("a", "out", "broadcast") == ToServer(client)
    assert table.route("a", "out", "anything.else") == ToServer(client)


def test_another_link_of_the_same_component_fans_out(table: Table) -> None:
    client_mode(table, "a", "out")
    s = session(table, endpoint(table, "a", "in"))
    assert table.route("a", "in", "broadcast") == FanOut([s])


def test_forwarded_publishes_never_go_to_a_server(table: Table) -> None:
    client_mode(table, "a", "default")
    assert table.route("a", None, "news") == FanOut([])


# --- rules 2 and 3: broadcast and topics -------------------------------------------------------


def test_broadcast_reaches_every_session_of_the_endpoint_tracked_or_not(table: Table) -> None:
    ep = endpoint(table, "a")
    tracked = session(table, ep)
    untracked = session(table, ep, tracked=False)
    target = table.route("a", "default", "broadcast")
    assert isinstance(target, FanOut)
    assert target.sessions == [tracked, untracked]


def test_each_endpoint_has_its_own_broadcast_subject(table: Table) -> None:
    one = session(table, endpoint(table, "a", "one", broadcast_subject="all"))
    two = session(table, endpoint(table, "a", "two"))
    table.topics.add("all", two.id)
    # "all" is one's broadcast subject, and a topic for two's endpoint.
    target = table.route("a", "one", "all")
    assert isinstance(target, FanOut)
    assert target.sessions == [one, two]


def test_a_broadcast_subject_is_not_also_a_topic_for_its_endpoint(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    table.topics.add("broadcast", s.id)
    assert table.route("a", "default", "broadcast") == FanOut([s])


def test_no_subscriber_is_not_an_error(table: Table) -> None:
    session(table, endpoint(table, "a"))
    assert table.route("a", "default", "nobody.listens") == FanOut([])


def test_a_topic_with_wildcards(table: Table) -> None:
    ep = endpoint(table, "a")
    s1, s2 = session(table, ep), session(table, ep)
    table.topics.add("news.>", s1.id)
    table.topics.add("news.*", s2.id)
    table.topics.add("news.>", s2.id)
    target = table.route("a", "default", "news.a.b")
    assert isinstance(target, FanOut)
    assert target.sessions == [s1, s2] or target.sessions == [s2, s1]


# --- the operator's view (library API) ----------------------------------------------------------


def test_the_operator_reaches_any_session_of_either_mode(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    client = client_mode(table, "b")
    assert client.session_id is not None
    assert table.session(s.id, "hello") == ToSession(s, "hello")
    assert table.session(client.session_id, "hi") == ToClientSession(client, "hi")
    sid = new_session_id()
    assert table.session(sid, "x") == Unreachable(sid)


def test_everyone_and_reachable_by(table: Table) -> None:
    a = session(table, endpoint(table, "a"))
    b = session(table, endpoint(table, "b", allowed_publishers=frozenset({"a"})))
    c = session(table, endpoint(table, "c"))
    hidden = session(table, endpoint(table, "d"), tracked=False)
    assert table.everyone() == [a, b, c, hidden]
    assert table.reachable_by(None) == [a, b, c]
    assert table.reachable_by("a") == [a, b]
    assert table.reachable_by("c") == [c]


def test_holds(table: Table) -> None:
    s = session(table, endpoint(table, "a"))
    client = client_mode(table, "a", "out")
    untracked = client_mode(table, "a", "raw", tracked=False)
    assert untracked.session_id is None
    assert table.holds(s.id)
    assert client.session_id is not None and table.holds(client.session_id)
    assert not table.holds(new_session_id())


# --- purity ---------------------------------------------------------------------------------
