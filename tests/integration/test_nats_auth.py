"""The provider authenticates to an auth-required lattice NATS with a user JWT + seed.

A wasmCloud host in a secured lattice passes `lattice_rpc_user_jwt` and
`lattice_rpc_user_seed` in HostData (docs/PROTOCOL.md 2.2, 2.3). Here a real nats-server runs in
operator mode (decentralized JWT auth: operator → account → users, accounts preloaded in a
memory resolver) and the provider process is started as the host starts it; nothing in
`connect_lattice` is mocked. The test host connects as a user of the same account.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest

from provider.natsserver import NatsServer, free_port
from tests.harness import FakeHost
from tests.natsjwt import Trust, User
from wasmcloud_provider_sdk import WrpcTransport

EXIT_TIMEOUT = 20.0


class JwtFakeHost(FakeHost):
    """A test host that connects to the lattice with its own user JWT + seed."""

    def __init__(self, nats_url: str, user: User, **kw: Any) -> None:
        super().__init__(nats_url, **kw)
        self.user = user

    async def connect(self) -> None:
        user = self.user

        def user_jwt() -> bytes:
            return user.jwt.encode()

        def signature(nonce: str) -> bytes:
            return base64.b64encode(user.keys.sign(nonce.encode()))

        self.nc = await nats.connect(
            self.nats_url,
            name="fake-host",
            user_jwt_cb=user_jwt,
            signature_cb=signature,
            allow_reconnect=False,
        )
        self.transport = WrpcTransport(self.nc)
        await self.transport.start()


class AuthServer(NatsServer):
    """An operator-mode nats-server with an HTTP monitoring port (for `/connz`)."""

    def __init__(self, trust: Trust) -> None:
        self.monitor_port = free_port()
        super().__init__(
            extra_config=f'{trust.server_config()}\nhttp: "127.0.0.1:{self.monitor_port}"'
        )

    async def connections(self) -> list[dict[str, Any]]:
        """The server's client connections, with their authenticated user and account."""
        url = f"http://127.0.0.1:{self.monitor_port}/connz?auth=true"

        def fetch() -> list[dict[str, Any]]:
            with urllib.request.urlopen(url, timeout=5) as resp:
                conns: list[dict[str, Any]] = json.load(resp)["connections"]
                return conns

        return await asyncio.to_thread(fetch)


@pytest.fixture
def trust() -> Trust:
    return Trust()


@pytest.fixture
def auth_server(trust: Trust) -> Iterator[AuthServer]:
    server = AuthServer(trust)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def auth_host(trust: Trust, auth_server: AuthServer) -> AsyncIterator[JwtFakeHost]:
    fake = JwtFakeHost(auth_server.url, trust.user("host"))
    await fake.connect()
    try:
        yield fake
    finally:
        await fake.close()


async def test_server_requires_auth(auth_server: AuthServer) -> None:
    """Sanity check of the fixture: an anonymous client is refused."""
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_server.url, allow_reconnect=False)


async def test_provider_with_user_jwt_and_seed_becomes_healthy(
    trust: Trust, auth_server: AuthServer, auth_host: JwtFakeHost
) -> None:
    user = trust.user("provider")
    proc = await auth_host.start_provider(
        lattice_rpc_user_jwt=user.jwt, lattice_rpc_user_seed=user.seed
    )

    assert await auth_host.wait_healthy() == {"healthy": True}
    assert (await auth_host.health())["healthy"] is True

    # The server authenticated both of the provider's connections (control, and the wRPC
    # hot path's own client) as the JWT's user, in our account.
    names = {"recording-provider", "recording-provider-wrpc"}
    conns = [c for c in await auth_server.connections() if c.get("name") in names]
    assert sorted(c["name"] for c in conns) == sorted(names), conns
    for conn in conns:
        assert conn["authorized_user"] == user.public_key
        assert conn["account"] == trust.account.public_key
    assert user.seed not in proc.stderr


async def test_seed_not_matching_the_jwt_is_refused(trust: Trust, auth_host: JwtFakeHost) -> None:
    user, impostor = trust.user("provider"), trust.user("impostor")
    proc = await auth_host.start_provider(
        lattice_rpc_user_jwt=user.jwt, lattice_rpc_user_seed=impostor.seed
    )

    assert await proc.wait_exit(EXIT_TIMEOUT) == 1
    assert "Authorization Violation" in proc.stderr, proc.stderr
    assert " ready: " not in proc.stderr
    assert impostor.seed not in proc.stderr
    assert user.seed not in proc.stderr


async def test_no_credentials_against_auth_server_exits(auth_host: JwtFakeHost) -> None:
    proc = await auth_host.start_provider()

    assert await proc.wait_exit(EXIT_TIMEOUT) == 1
    assert "Authorization Violation" in proc.stderr, proc.stderr
    assert " ready: " not in proc.stderr


async def test_malformed_seed_fails_fast_without_echoing_it(
    trust: Trust, auth_host: JwtFakeHost
) -> None:
    user = trust.user("provider")
    i = len(user.seed) // 2
    corrupted = user.seed[:i] + ("A" if user.seed[i] != "A" else "B") + user.seed[i + 1 :]
    proc = await auth_host.start_provider(
        lattice_rpc_user_jwt=user.jwt, lattice_rpc_user_seed=corrupted
    )

    assert await proc.wait_exit(EXIT_TIMEOUT) == 1
    assert "checksum" in proc.stderr, proc.stderr
    assert corrupted not in proc.stderr
    assert user.seed not in proc.stderr
