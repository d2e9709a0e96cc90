"""Shared fixtures: a real nats-server per test and a test host connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from provider.natsserver import NatsServer
from tests.harness import FakeHost


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture
async def host(nats_server: NatsServer) -> AsyncIterator[FakeHost]:
    fake = FakeHost(nats_server.url)
    await fake.connect()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def small_host() -> AsyncIterator[FakeHost]:
    """A test host on a nats-server with max_payload 1024, to force chunked wRPC streams."""
    with NatsServer(max_payload=1024) as server:
        fake = FakeHost(server.url)
        await fake.connect()
        try:
            yield fake
        finally:
            await fake.close()


@pytest.fixture
async def js_host() -> AsyncIterator[FakeHost]:
    """A test host on a nats-server with JetStream (as wasmCloud 1.x lattices have)."""
    with NatsServer(jetstream=True) as server:
        fake = FakeHost(server.url)
        await fake.connect()
        try:
            yield fake
        finally:
            await fake.close()
