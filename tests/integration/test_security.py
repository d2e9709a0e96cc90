"""Server-mode security: authentication on the upgrade (token, JWT), origins, TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from provider import WebSocketMessagingProvider
from provider.natsserver import free_port
from provider.server import ServerHub
from provider.settings import ConfigError, server_settings

Factory = Callable[[dict[str, str]], Any]


@pytest.fixture
async def endpoint() -> AsyncIterator[Factory]:
    """Start a library-mode endpoint with the given extra config; returns its URL."""
    started: list[WebSocketMessagingProvider] = []

    async def make(config: dict[str, str]) -> str:
        provider = WebSocketMessagingProvider.from_config(
            {"MODE": "server", "URI": f"127.0.0.1:{free_port()}/ws", **config}
        )
        port = await provider.start_server_if_needed()
        started.append(provider)
        scheme = "wss" if "TLS_CERT" in config else "ws"
        return f"{scheme}://localhost:{port}/ws"

    try:
        yield make
    finally:
        for provider in started:
            await provider.stop()


async def status_of(url: str, **kw: Any) -> int:
    """101 when the upgrade succeeds, else the HTTP status of the refusal."""
    try:
        async with connect(url, open_timeout=5, **kw) as ws:
            await ws.recv()  # the welcome
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def pem_public(key: Any) -> str:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "exp": now + 300, "iat": now, **extra}


async def test_static_tokens_from_each_allowed_source(endpoint: Factory) -> None:
    url = await endpoint({"AUTH": "token", "AUTH_TOKENS": "t-one,t-two"})
    assert await status_of(url) == 401
    assert await status_of(url, additional_headers={"Authorization": "Bearer t-two"}) == 101
    assert await status_of(url, additional_headers={"Authorization": "Bearer nope"}) == 401
    # Browsers cannot set headers: the `bearer, <token>` subprotocol works by default.
    assert await status_of(url, subprotocols=[Subprotocol("bearer"), Subprotocol("t-one")]) == 101
    async with connect(
        url,
        subprotocols=[
            Subprotocol("wasmcloud.messaging.v1"),
            Subprotocol("bearer"),
            Subprotocol("t-one"),
        ],
    ) as ws:
        assert ws.subprotocol == "wasmcloud.messaging.v1"
    # The query string only when AUTH_SOURCES allows it.
    assert await status_of(url + "?access_token=t-one") == 401
    url_q = await endpoint({"AUTH": "token", "AUTH_TOKENS": "t-one", "AUTH_SOURCES": "query"})
    assert await status_of(url_q + "?access_token=t-one") == 101
    assert await status_of(url_q, additional_headers={"Authorization": "Bearer t-one"}) == 401


async def test_refusal_says_why_and_asks_for_bearer(endpoint: Factory) -> None:
    url = await endpoint({"AUTH": "token", "AUTH_TOKENS": "x"})
    with pytest.raises(InvalidStatus) as info:
        await connect(url)
    response = info.value.response
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert b"no token presented" in response.body


async def test_jwt_hs256_checks_exp_nbf_aud_iss(endpoint: Factory) -> None:
    secret = "s3cret-for-hs256-at-least-32-bytes!!"
    url = await endpoint(
        {
            "AUTH": "jwt",
            "JWT_SECRET": secret,
            "JWT_AUDIENCE": "chat",
            "JWT_ISSUER": "https://issuer.example",
            "JWT_LEEWAY_SEC": "0",
        }
    )

    async def with_token(**extra: Any) -> int:
        base = claims(aud="chat", iss="https://issuer.example")
        base.update(extra)
        token = jwt.encode({k: v for k, v in base.items() if v is not None}, secret, "HS256")
        return await status_of(url, additional_headers={"Authorization": f"Bearer {token}"})

    assert await with_token() == 101
    assert await with_token(exp=int(time.time()) - 10) == 401  # expired
    assert await with_token(nbf=int(time.time()) + 600) == 401  # not valid yet
    assert await with_token(aud="other") == 401  # wrong audience
    assert await with_token(iss="https://evil.example") == 401  # wrong issuer
    assert await with_token(exp=None) == 401  # exp is required
    wrong_key = jwt.encode(claims(aud="chat", iss="https://issuer.example"), "x" * 40, "HS256")
    assert await status_of(url, additional_headers={"Authorization": f"Bearer {wrong_key}"}) == 401
    unsigned = jwt.encode(claims(aud="chat", iss="https://issuer.example"), None, "none")
    assert await status_of(url, additional_headers={"Authorization": f"Bearer {unsigned}"}) == 401


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
async def test_jwt_public_keys(endpoint: Factory, kind: str) -> None:
    key: Any
    if kind == "rsa":
        key, alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"
    elif kind == "ec":
        key, alg = ec.generate_private_key(ec.SECP256R1()), "ES256"
    else:
        key, alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"
    url = await endpoint({"AUTH": "jwt", "JWT_PUBLIC_KEY": pem_public(key)})
    token = jwt.encode(claims(), key, alg)
    assert await status_of(url, additional_headers={"Authorization": f"Bearer {token}"}) == 101
    if kind == "ed25519":
        forged = jwt.encode(claims(), ed25519.Ed25519PrivateKey.generate(), alg)
        assert await status_of(url, additional_headers={"Authorization": f"Bearer {forged}"}) == 401


async def test_jwt_mixed_key_kinds_never_answer_500(endpoint: Factory, tmp_path: Any) -> None:
    """RSA and shared-secret keys together, RS256 and HS256 accepted: each token is checked
    with the keys of its own kind; a key-confusion token (HS256 signed with the RSA public
    key's PEM) and tokens the keys cannot verify are a 401, never a 500."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    secret = "s" * 40
    oct_jwk = json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(secret.encode()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk, oct_jwk]}))
    url = await endpoint(
        {"AUTH": "jwt", "JWT_JWKS_FILE": str(jwks), "JWT_ALGORITHMS": "RS256,HS256"}
    )

    def bearer(token: str) -> dict[str, Any]:
        return {"additional_headers": {"Authorization": f"Bearer {token}"}}

    assert await status_of(url, **bearer(jwt.encode(claims(), rsa_key, "RS256"))) == 101
    assert await status_of(url, **bearer(jwt.encode(claims(), secret, "HS256"))) == 101
    confused = jwt.api_jws.PyJWS()
    confused._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    pem = pem_public(rsa_key).encode()
    token = confused.encode(json.dumps(claims()).encode(), pem, "HS256")
    assert await status_of(url, **bearer(token)) == 401
    assert await status_of(url, **bearer(jwt.encode(claims(), "w" * 40, "HS256"))) == 401


async def test_jwks_with_keys_of_one_kind_on_two_curves(endpoint: Factory, tmp_path: Any) -> None:
    """An ES256 token without `kid`, a JWKS with a P-384 key before the P-256 one: the key
    that does not fit is skipped, not a refusal."""
    p384, p256 = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    keys = [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())) for k in (p384, p256)]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    url = await endpoint({"AUTH": "jwt", "JWT_JWKS_FILE": str(jwks), "JWT_ALGORITHMS": "ES256"})
    token = jwt.encode(claims(), p256, "ES256")
    assert await status_of(url, additional_headers={"Authorization": f"Bearer {token}"}) == 101


async def test_upgrade_requests_never_get_a_500(endpoint: Factory) -> None:
    """Odd requests get a 4xx (or an upgrade), whatever they hold."""
    url = await endpoint({"AUTH": "jwt", "JWT_SECRET": "s" * 40})
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    odd_headers = [
        b"Authorization: Bearer \xff\xfe\r\n",
        b"Authorization: Bearer a.b.c\r\n",
        b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.\r\n",
        b"Sec-WebSocket-Protocol: bearer, " + b"x" * 4000 + b"\r\n",
        b"Origin: \x00\r\n",
    ]
    statuses = []
    for extra in odd_headers:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws?access_token=%ff HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
        )
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        # Either an HTTP answer that is not a 5xx, or (headers that are not HTTP at all) the
        # HTTP parser closing the connection.
        assert not status_line.startswith(b"HTTP/1.1 5"), (extra, status_line)
        statuses.append(status_line[9:12])
    assert statuses[1:4] == [b"401", b"401", b"401"], statuses


async def test_a_failure_while_deciding_a_request_is_a_400_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The safety net behind every check on the upgrade path: whatever raises while a request
    is decided (here the readiness check the hub was given), the client gets a 400 and the
    log one line, never the WebSocket library's 500 with a traceback."""

    def broken() -> tuple[bool, str]:
        raise RuntimeError("readiness check failed")

    hub = ServerHub(readiness_check=broken)
    port = free_port()
    await hub.add_endpoint(("c", "default"), server_settings({"URI": f"127.0.0.1:{port}"}), None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    finally:
        await hub.close()
    assert status_line.startswith(b"HTTP/1.1 400"), status_line
    [line] = [r for r in caplog.records if "could not be processed" in r.getMessage()]
    assert "RuntimeError: readiness check failed" in line.getMessage()
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


async def test_jwt_jwks_file_and_identity_reaches_the_handler(
    endpoint: Factory, tmp_path: Any
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}/ws",
            "AUTH": "jwt",
            "JWT_JWKS_FILE": str(jwks),
        }
    )
    connected: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @provider.on_message
    async def handle(msg: Any) -> None:
        if msg.subject == "ws.session.connected":
            await connected.put(json.loads(msg.body))

    port = await provider.start_server_if_needed()
    try:
        token = jwt.encode(claims(role="admin"), key, "ES256", headers={"kid": "k1"})
        async with connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.recv()
            event = await asyncio.wait_for(connected.get(), 5)
        assert event["identity"]["sub"] == "alice"
        assert event["identity"]["claims"]["role"] == "admin"
    finally:
        await provider.stop()


async def test_origins(endpoint: Factory) -> None:
    url = await endpoint(
        {
            "ALLOWED_ORIGINS": "https://app.example.com,https://*.example.org",
            "ALLOW_NO_ORIGIN": "false",
        }
    )
    assert await status_of(url, origin="https://app.example.com") == 101
    assert await status_of(url, origin="https://eu.example.org") == 101
    assert await status_of(url, origin="https://example.org") == 403  # only subdomains
    assert await status_of(url, origin="https://evil.com") == 403
    assert await status_of(url, origin="http://app.example.com") == 403  # scheme matters
    assert await status_of(url) == 403  # no Origin, and ALLOW_NO_ORIGIN=false
    open_url = await endpoint({"ALLOWED_ORIGINS": "https://app.example.com"})
    assert await status_of(open_url) == 101  # missing Origin allowed by default (non-browsers)


async def test_tls_endpoint(endpoint: Factory) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    url = await endpoint(
        {
            "TLS_CERT": "".join(p.bytes().decode() for p in cert.cert_chain_pems),
            "TLS_KEY": cert.private_key_pem.bytes().decode(),
        }
    )
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    assert await status_of(url, ssl=client_ctx) == 101
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(url, ssl=ssl.create_default_context())


async def test_bad_security_config_is_refused_at_link_time() -> None:
    ca = trustme.CA()
    one, two = ca.issue_cert("a.example"), ca.issue_cert("b.example")
    cases = [
        ({"AUTH": "token"}, "AUTH_TOKENS"),
        ({"AUTH": "jwt"}, "needs JWT_SECRET"),
        ({"AUTH": "jwt", "JWT_PUBLIC_KEY": "not a pem"}, "JWT_PUBLIC_KEY"),
        ({"AUTH": "jwt", "JWT_SECRET": "x", "JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"AUTH": "jwt", "JWT_SECRET": "x", "JWT_ALGORITHMS": "HS257"}, "HS257"),
        (
            {
                "AUTH": "jwt",
                "JWT_PUBLIC_KEY": pem_public(rsa.generate_private_key(65537, 2048)),
                "JWT_ALGORITHMS": "RS256,HS256",
            },
            "HS256 needs JWT_SECRET",
        ),
        ({"AUTH": "jwt", "JWT_SECRET": "x", "JWT_ALGORITHMS": "HS256,ES256"}, "ES256 needs"),
        ({"AUTH": "magic"}, "AUTH"),
        ({"AUTH_SOURCES": "cookie"}, "AUTH_SOURCES"),
        ({"ALLOWED_ORIGINS": "example.com"}, "ALLOWED_ORIGINS"),
        ({"TLS_CERT": one.cert_chain_pems[0].bytes().decode()}, "TLS_KEY"),
        (
            {
                "TLS_CERT": one.cert_chain_pems[0].bytes().decode(),
                "TLS_KEY": two.private_key_pem.bytes().decode(),
            },
            "TLS_CERT",
        ),
    ]
    for config, key in cases:
        provider = WebSocketMessagingProvider.from_config(
            {"MODE": "server", "URI": f"127.0.0.1:{free_port()}", **config}
        )
        with pytest.raises(ConfigError, match=key):
            await provider.start_server_if_needed()
        await provider.stop()


async def test_rate_limit_drops_and_is_measurable(endpoint: Factory) -> None:
    from tests.wsclient import Client

    url = await endpoint({"RATE_LIMIT_MSGS": "20", "RATE_LIMIT_BURST": "10"})
    client = await Client.open(url.replace("localhost", "127.0.0.1"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 60
    for i in range(sent):
        await client.message("m", str(i))
    elapsed = loop.time() - started
    errors = 0
    while True:
        try:
            frame = await client.recv(timeout=0.5)
        except TimeoutError:
            break
        assert frame["code"] in ("rate_limited", "no_handler")
        errors += frame["code"] == "rate_limited"
    accepted = sent - errors
    # burst + rate x elapsed (+1 for a token refilled at the boundary)
    assert 10 <= accepted <= 10 + 20 * elapsed + 1, (accepted, elapsed)


async def test_rate_limit_close_policy(endpoint: Factory) -> None:
    url = await endpoint(
        {
            "RATE_LIMIT_MSGS": "1",
            "RATE_LIMIT_BURST": "1",
            "RATE_LIMIT_POLICY": "close",
            "RATE_LIMIT_CLOSE_AFTER": "3",
        }
    )
    from websockets.exceptions import ConnectionClosed

    async with connect(url) as ws:
        await ws.recv()
        try:
            for _ in range(10):
                await ws.send(json.dumps({"subject": "m"}))
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            assert (exc.rcvd.code, exc.rcvd.reason) == (1008, "rate limit exceeded")


async def test_connection_rate_limit_per_ip(endpoint: Factory) -> None:
    url = await endpoint({"CONNECT_RATE_LIMIT": "1"})  # burst 2
    assert await status_of(url) == 101
    assert await status_of(url) == 101
    assert await status_of(url) == 429
