"""Shared fixtures: a real nats-server per test and a test host connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from provider.natsserver import NatsServer
from tests.harness import FakeHost


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@contextlib.asynccontextmanager
async def connected_host(nats_url: str) -> AsyncIterator[FakeHost]:
    """A test host connected to the nats-server at `nats_url` (closed afterwards)."""
    fake = FakeHost(nats_url)
    await fake.connect()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def host(nats_server: NatsServer) -> AsyncIterator[FakeHost]:
    async with connected_host(nats_server.url) as fake:
        yield fake


@pytest.fixture
async def small_host() -> AsyncIterator[FakeHost]:
    """A test host on a nats-server with max_payload 1024, to force chunked wRPC streams."""
    with NatsServer(max_payload=1024) as server:
        async with connected_host(server.url) as fake:
            yield fake


@pytest.fixture
async def js_host() -> AsyncIterator[FakeHost]:
    """A test host on a nats-server with JetStream (as wasmCloud 1.x lattices have)."""
    with NatsServer(jetstream=True) as server:
        async with connected_host(server.url) as fake:
            yield fake
