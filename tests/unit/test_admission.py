"""Admission decisions on upgrade requests, without sockets: every answer and the order of
the checks."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from provider import admission
from provider.admission import (
    Accept,
    Admission,
    Document,
    TextAnswer,
    UnsupportedSubprotocol,
    UpgradeRequest,
)
from provider.auth import Identity, auth_policy, origin_policy
from provider.history import new_resume_token
from provider.ids import new_session_id
from provider.ratelimit import ConnectionRateLimiter
from provider.settings import ServerSettings, server_settings

CLIENT = "203.0.113.7"
LOOPBACK = "127.0.0.1"


def settings(**changes: Any) -> ServerSettings:
    """Default server settings, with `changes` (field names of ServerSettings)."""
    return dataclasses.replace(server_settings({}), **changes)


@dataclass
class FakeEndpoint:
    """An endpoint as admission reads it: plain data."""

    settings: ServerSettings
    sessions: set[str] = field(default_factory=set)
    live_sessions: int = 0
    per_ip: dict[str, int] = field(default_factory=dict)
    conn_limiter: ConnectionRateLimiter | None = None

    def __post_init__(self) -> None:
        if self.settings.connect_rate_limit:
            self.conn_limiter = ConnectionRateLimiter(self.settings.connect_rate_limit)


class Gate:
    """An `Admission` over some endpoints, with what it reports recorded."""

    def __init__(self, *endpoints: FakeEndpoint, ready: tuple[bool, str] = (True, "ready")):
        self.endpoints = {e.settings.path: e for e in endpoints}
        self.ready = ready
        self.refused: defaultdict[int, int] = defaultdict(int)
        self.admission = Admission(
            self.endpoints, lambda: self.ready, lambda: "wsp_up 1\n", self.refused
        )

    def decide(
        self,
        target: str = "/ws",
        *,
        ip: str = CLIENT,
        headers: dict[str, str] | None = None,
        protocols: tuple[str, ...] = (),
        now: float = 0.0,
    ) -> Accept[FakeEndpoint] | TextAnswer | Document:
        request = UpgradeRequest(target, headers or {}, protocols, ip, now)
        return self.admission.decide(request)


def header(answer: Document, name: str) -> str:
    return dict(answer.headers)[name]


# --- paths and other requests --------------------------------------------------------------


def test_an_endpoint_path_is_accepted_with_or_without_a_trailing_slash() -> None:
    endpoint = FakeEndpoint(settings())
    gate = Gate(endpoint)
    for target in ("/ws", "/ws/", "/ws?format=msgpack"):
        decision = gate.decide(target)
        assert decision == Accept(endpoint, None, resuming=False, needs_room=False)


def test_unknown_path_is_404() -> None:
    gate = Gate(FakeEndpoint(settings(metrics=False, demo_page=False)))
    assert gate.decide("/other") == TextAnswer(404, "No WebSocket endpoint here.\n")


def test_health_probes() -> None:
    gate = Gate(FakeEndpoint(settings()))
    healthz = gate.decide("/healthz")
    assert isinstance(healthz, Document)
    assert (healthz.status, healthz.reason, json.loads(healthz.body)) == (
        200,
        "OK",
        {"status": "ok"},
    )
    assert healthz.headers == (
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(healthz.body))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
    )
    ready = gate.decide("/readyz")
    assert isinstance(ready, Document) and json.loads(ready.body) == {"status": "ready"}
    gate.ready = (False, "shutting down")
    unready = gate.decide("/readyz?x=1")
    assert isinstance(unready, Document)
    assert (unready.status, unready.reason) == (503, "Service Unavailable")
    assert json.loads(unready.body) == {"status": "shutting down"}


def test_health_probes_only_when_an_endpoint_offers_them() -> None:
    gate = Gate(FakeEndpoint(settings(health_endpoints=False)))
    assert gate.decide("/healthz") == admission.NOT_FOUND
    assert gate.decide("/readyz") == admission.NOT_FOUND


def test_metrics_only_when_an_endpoint_offers_them() -> None:
    assert Gate(FakeEndpoint(settings())).decide("/metrics") == admission.NOT_FOUND
    answer = Gate(FakeEndpoint(settings(metrics=True))).decide("/metrics")
    assert isinstance(answer, Document)
    assert (answer.status, answer.body) == (200, b"wsp_up 1\n")
    assert header(answer, "Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert "Cache-Control" not in dict(answer.headers)


def test_demo_page_of_the_first_endpoint_that_has_one() -> None:
    plain = FakeEndpoint(settings(path="/plain"))
    demo = FakeEndpoint(settings(path="/chat", demo_page=True))
    assert Gate(plain).decide("/") == admission.NOT_FOUND
    for target in ("/", "/index.html"):
        answer = Gate(plain, demo).decide(target)
        assert isinstance(answer, Document) and answer.status == 200
        assert b'"/chat"' in answer.body
        assert header(answer, "Content-Type") == "text/html; charset=utf-8"


def test_an_endpoint_at_a_probe_path_is_an_endpoint() -> None:
    endpoint = FakeEndpoint(settings(path="/healthz"))
    assert isinstance(Gate(endpoint).decide("/healthz"), Accept)


# --- capacity and rates ----------------------------------------------------------------------


def test_full_endpoint_is_503(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = FakeEndpoint(settings(max_sessions=2), live_sessions=2)
    with caplog.at_level(logging.WARNING, "provider.admission"):
        answer = Gate(endpoint).decide()
    assert answer == TextAnswer(503, "Too many sessions on this endpoint.\n")
    assert "endpoint /ws full (2 sessions): refusing a client" in caplog.text


def test_a_resume_of_a_session_here_passes_a_full_endpoint() -> None:
    sid = new_session_id()
    token, _ = new_resume_token(sid)
    endpoint = FakeEndpoint(settings(max_sessions=1), sessions={sid}, live_sessions=1)
    gate = Gate(endpoint)
    decision = gate.decide(f"/ws?resume={token}&last_seq=3")
    assert decision == Accept(endpoint, None, resuming=True, needs_room=False)
    # Not one of its sessions, or a malformed token, or resume off: a new client, refused.
    other, _ = new_resume_token(new_session_id())
    assert gate.decide(f"/ws?resume={other}") == admission.ENDPOINT_FULL
    assert gate.decide(f"/ws?resume={sid}.short") == admission.ENDPOINT_FULL
    off = FakeEndpoint(settings(max_sessions=1, resume_window=0.0), {sid}, live_sessions=1)
    assert not off.settings.resumable
    assert Gate(off).decide(f"/ws?resume={token}") == admission.ENDPOINT_FULL


def test_connection_rate_per_address(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate(FakeEndpoint(settings(connect_rate_limit=1.0)))  # burst 2
    assert isinstance(gate.decide(now=0.0), Accept)
    assert isinstance(gate.decide(now=0.0), Accept)
    with caplog.at_level(logging.INFO, "provider.admission"):
        assert gate.decide(now=0.0) == TextAnswer(429, "Too many connections, retry later.\n")
    assert f"connection rate limit: refusing {CLIENT} on /ws" in caplog.text
    assert isinstance(gate.decide(ip="198.51.100.1", now=0.0), Accept)  # per address
    assert isinstance(gate.decide(now=1.0), Accept)  # refilled


def test_connection_rate_spares_loopback_unless_configured() -> None:
    spared = Gate(FakeEndpoint(settings(connect_rate_limit=1.0)))
    assert all(isinstance(spared.decide(ip=LOOPBACK), Accept) for _ in range(5))
    limited = Gate(FakeEndpoint(settings(connect_rate_limit=1.0, rate_limit_loopback=True)))
    answers = [limited.decide(ip="::ffff:127.0.0.1") for _ in range(3)]
    assert answers[-1] == admission.TOO_MANY_CONNECTIONS


def test_capacity_is_checked_before_the_rate() -> None:
    endpoint = FakeEndpoint(settings(max_sessions=0, connect_rate_limit=1.0))
    gate = Gate(endpoint)
    for _ in range(4):  # refusals for capacity spend no rate tokens
        assert gate.decide() == admission.ENDPOINT_FULL
    endpoint.settings = settings(connect_rate_limit=1.0)
    assert isinstance(gate.decide(), Accept)


def test_sessions_per_address() -> None:
    endpoint = FakeEndpoint(settings(max_sessions_per_ip=2), per_ip={CLIENT: 1})
    gate = Gate(endpoint)
    decision = gate.decide()
    assert isinstance(decision, Accept) and not decision.needs_room
    endpoint.per_ip[CLIENT] = 2
    decision = gate.decide()
    assert isinstance(decision, Accept) and decision.needs_room  # make room, or refuse
    assert isinstance(gate.decide(ip="198.51.100.1"), Accept)
    assert not admission.at_address_cap(settings(max_sessions_per_ip=0), CLIENT, 10**6)


def test_sessions_per_address_spares_loopback_unless_configured() -> None:
    endpoint = FakeEndpoint(settings(max_sessions_per_ip=1), per_ip={LOOPBACK: 5, "::1": 5})
    for ip in (LOOPBACK, "::1"):
        decision = Gate(endpoint).decide(ip=ip)
        assert isinstance(decision, Accept) and not decision.needs_room
    endpoint.settings = settings(max_sessions_per_ip=1, session_cap_loopback=True)
    decision = Gate(endpoint).decide(ip=LOOPBACK)
    assert isinstance(decision, Accept) and decision.needs_room


def test_a_resume_here_never_needs_room() -> None:
    sid = new_session_id()
    token, _ = new_resume_token(sid)
    endpoint = FakeEndpoint(settings(max_sessions_per_ip=1), {sid}, 1, {CLIENT: 1})
    decision = Gate(endpoint).decide(f"/ws?resume={token}")
    assert decision == Accept(endpoint, None, resuming=True, needs_room=False)


def test_address_full_answer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "provider.admission"):
        answer = admission.address_full(settings(max_sessions_per_ip=3), CLIENT)
    assert answer == TextAnswer(429, "Too many sessions from your address.\n")
    assert f"session cap: refusing {CLIENT} on /ws (3 sessions)" in caplog.text


# --- origin and credentials ------------------------------------------------------------------


def test_origin_allow_list() -> None:
    origins = origin_policy({"ALLOWED_ORIGINS": "https://app.example.com"})
    gate = Gate(FakeEndpoint(settings(origins=origins)))
    assert isinstance(gate.decide(headers={"Origin": "https://app.example.com"}), Accept)
    assert gate.decide(headers={"Origin": "https://evil.example"}) == TextAnswer(
        403, "origin 'https://evil.example' is not allowed\n"
    )
    assert gate.refused == {403: 1}


def test_missing_token_is_401_with_a_challenge(caplog: pytest.LogCaptureFixture) -> None:
    auth = auth_policy({"AUTH": "token", "AUTH_TOKENS": "s3cret-token"})
    gate = Gate(FakeEndpoint(settings(auth=auth)))
    with caplog.at_level(logging.INFO, "provider.admission"):
        answer = gate.decide()
    assert answer == TextAnswer(
        401,
        "authentication required: no token presented\n",
        (("WWW-Authenticate", "Bearer"),),
    )
    assert "upgrade refused (401) on /ws: authentication required" in caplog.text
    assert gate.decide(headers={"authorization": "Bearer wrong"}) == TextAnswer(
        401, "invalid token\n", (("WWW-Authenticate", "Bearer"),)
    )
    assert gate.refused == {401: 2}


def test_a_token_gives_the_identity_by_header_or_subprotocol() -> None:
    auth = auth_policy({"AUTH": "token", "AUTH_TOKENS": "s3cret-token"})
    endpoint = FakeEndpoint(settings(auth=auth))
    gate = Gate(endpoint)
    by_header = gate.decide(headers={"authorization": "Bearer s3cret-token"})
    assert by_header == Accept(endpoint, Identity("token:0"))
    offered = (f"{admission.SUBPROTOCOL_JSON}, bearer", "s3cret-token")
    assert gate.decide(protocols=offered) == Accept(endpoint, Identity("token:0"))


def test_credentials_are_checked_before_making_room() -> None:
    auth = auth_policy({"AUTH": "token", "AUTH_TOKENS": "s3cret-token"})
    endpoint = FakeEndpoint(settings(auth=auth, max_sessions_per_ip=1), per_ip={CLIENT: 1})
    assert Gate(endpoint).decide() == TextAnswer(
        401,
        "authentication required: no token presented\n",
        (("WWW-Authenticate", "Bearer"),),
    )


def test_rate_is_checked_before_credentials() -> None:
    auth = auth_policy({"AUTH": "token", "AUTH_TOKENS": "s3cret-token"})
    gate = Gate(FakeEndpoint(settings(auth=auth, connect_rate_limit=1.0)))
    answers = [gate.decide() for _ in range(3)]
    assert [a.status for a in answers if isinstance(a, TextAnswer)] == [401, 401, 429]
    assert gate.refused == {401: 2}  # a rate refusal is not counted as a refused upgrade


# --- subprotocol and wire format --------------------------------------------------------------


def test_subprotocol_selection() -> None:
    json_, msgpack = admission.SUBPROTOCOL_JSON, admission.SUBPROTOCOL_MSGPACK
    assert admission.select_subprotocol([json_, msgpack]) == msgpack
    assert admission.select_subprotocol(["bearer", "tok", json_]) == json_
    assert admission.select_subprotocol(["bearer", "tok"]) == "bearer"
    assert admission.select_subprotocol([]) is None
    with pytest.raises(UnsupportedSubprotocol) as info:
        admission.select_subprotocol(["chat.v2", "chat.v1"])
    assert str(info.value) == (
        f"unsupported subprotocol(s) chat.v2, chat.v1: offer {json_} or {msgpack}, or none"
    )


def test_offered_subprotocols_are_split_and_trimmed() -> None:
    assert admission.offered_subprotocols(["a, b", "c"]) == ["a", "b", "c"]


def test_wire_format() -> None:
    msgpack = admission.SUBPROTOCOL_MSGPACK
    assert admission.wants_msgpack(msgpack, "/ws")
    assert not admission.wants_msgpack(admission.SUBPROTOCOL_JSON, "/ws?format=msgpack")
    assert admission.wants_msgpack(None, "/ws?format=MsgPack")
    assert not admission.wants_msgpack("bearer", "/ws?format=msgpack")
    assert not admission.wants_msgpack(None, "/ws")
    assert not admission.wants_msgpack(None, None)
