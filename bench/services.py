"""The processes a scenario runs against: our stack and the three baselines.

Every server-side process is pinned to `SERVER_CORES` (core 0 on 2 cores); the load
generator gets `GENERATOR_CORES` (core 1), so it never competes with what it measures.

* ours: nats-server, `python -m provider` started as the host starts it (HostData on stdin,
  links included), and the echo component (real wRPC over NATS at a low cost: the Go one in
  `bench/go` where Go is installed, else `bench.echo_component`; `component="sdk"`: the
  SDK-based one, `bench.sdk_echo_component`);
* baseline a: a bare `websockets` echo server;
* baseline b: a `websockets` server doing one nats-py request per frame to an echo
  responder (Go where the Go stand-ins run, else nats-py; plus its nats-server);
* baseline c: nats-server's own WebSocket listener with the same echo responder.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.natsserver import NatsServer, free_port
from wasmcloud_provider_sdk.hostdata import encode_host_data
from wasmcloud_provider_sdk.nkeys import XKey

from . import gostandins
from .procs import SERVER_CORES, pin, pinned_to

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_ID = "bench-provider"
COMPONENT_ID = "bench-echo"
LATTICE = "default"
START_TIMEOUT = 60.0
#: The stand-in components: module run with `python -m` per `ours(component=...)`; "go" is
#: the Go one (`bench.gostandins`), "auto" the Go one where Go is installed, else "fast".
COMPONENTS = {"fast": "bench.echo_component", "sdk": "bench.sdk_echo_component"}


@dataclass
class Child:
    """A child process whose stderr is collected; `wait_for` waits for a line."""

    name: str
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip())
                del self.lines[:-200]  # keep the tail only
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, needle: str, timeout: float = START_TIMEOUT) -> None:
        async def wait() -> None:
            async with self._changed:
                while not any(needle in line for line in self.lines):
                    if self._reader is not None and self._reader.done():
                        tail = "\n".join(self.lines[-30:])
                        raise RuntimeError(f"{self.name} exited before {needle!r}:\n{tail}")
                    await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


async def spawn(
    name: str, args: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Child:
    """Start `args` pinned to the server cores, stderr collected."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
        preexec_fn=pinned_to(SERVER_CORES),  # type: ignore[arg-type]
    )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        await proc.stdin.drain()
        proc.stdin.close()
    child = Child(name, proc)
    child._reader = asyncio.get_running_loop().create_task(child._read())
    return child


def start_nats(websocket_port: int | None = None, jetstream: bool = False) -> NatsServer:
    extra = ""
    if websocket_port is not None:
        extra = f'websocket {{ host: "127.0.0.1", port: {websocket_port}, no_tls: true }}'
    server = NatsServer(extra_config=extra, jetstream=jetstream).start()
    atexit.register(server.stop)  # also when the run is interrupted mid-cleanup (idempotent)
    pin(server.pid, SERVER_CORES)
    return server


def host_data(
    nats_url: str,
    port: int,
    server_config: dict[str, str],
    provider_config: dict[str, str] | None = None,
) -> bytes:
    """HostData for `python -m provider` with the component's two links included:
    `server_config` is the endpoint's (the handler link's source config), `provider_config`
    the provider-level config (HostData `config`, e.g. `WORKERS`)."""
    link = {"wit_namespace": "wasmcloud", "wit_package": "messaging", "name": "default"}
    config = {
        "MODE": "server",
        "URI": f"127.0.0.1:{port}/ws",
        "SESSION_EVENTS": "false",
        "WELCOME": "false",
        "MAX_SESSIONS": "1000000",
        "PING_INTERVAL_SEC": "0",
        "SEND_QUEUE_LIMIT": "100000",
        **server_config,
    }
    data: dict[str, Any] = {
        "host_id": "N" + "B" * 55,
        "lattice_rpc_prefix": LATTICE,
        "lattice_rpc_url": nats_url,
        "provider_key": PROVIDER_ID,
        "instance_id": str(uuid.uuid4()),
        "host_xkey_public_key": XKey.generate().public_key,
        "provider_xkey_private_key": XKey.generate().seed,
        "log_level": "info",
        "config": dict(provider_config or {}),
        "link_definitions": [
            {
                **link,
                "source_id": COMPONENT_ID,
                "target": PROVIDER_ID,
                "interfaces": ["consumer"],
            },
            {
                **link,
                "source_id": PROVIDER_ID,
                "target": COMPONENT_ID,
                "interfaces": ["handler"],
                "source_config": config,
            },
        ],
    }
    return encode_host_data(data)


@dataclass
class Stack:
    """What a scenario talks to: a WebSocket URL, the protocol, and the pids to watch."""

    name: str
    url: str
    proto: str  # "ws" (frames echoed) or "nats" (NATS protocol over WebSocket)
    pids: dict[str, int]
    nats_url: str = ""
    #: Our stack's child processes by name (their stderr lines stay readable after stop).
    children: dict[str, Child] = field(default_factory=dict)


def resolve_component(component: str) -> str:
    """The stand-in `component` names: "auto" is "go" where the Go stand-ins run, else
    "fast"; any other name stays as it is."""
    if component == "auto":
        return "go" if gostandins.stand_ins() == "go" else "fast"
    return component


def component_args(component: str, nats_url: str) -> list[str]:
    """The command line of stand-in component `component` ("auto", "go" or a `COMPONENTS` key)."""
    component = resolve_component(component)
    if component == "go":
        return [gostandins.binary(), "component", nats_url, LATTICE, COMPONENT_ID, PROVIDER_ID]
    return [sys.executable, "-m", COMPONENTS[component], nats_url]


def responder_args(nats_url: str) -> list[str]:
    """The command line of the baselines' echo responder (Go where the Go stand-ins run)."""
    if gostandins.stand_ins() == "go":
        return [gostandins.binary(), "nats-echo", nats_url]
    return [sys.executable, "-m", "bench.baselines", "nats-echo", nats_url]


@contextlib.asynccontextmanager
async def ours(
    *,
    component: str | None = "auto",
    compression: bool = False,
    profile_to: Path | None = None,
    jetstream: bool = False,
    config: dict[str, str] | None = None,
    provider_config: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """nats-server + `python -m provider` + the echo component (own process): `component`
    names one of `COMPONENTS` (None: no component). `jetstream`: the nats-server has
    JetStream (session history is then stored there, as under a host). `config`: more
    endpoint config keys; `provider_config`: the provider-level config (e.g. `WORKERS`)."""
    nats = start_nats(jetstream=jetstream)
    children: list[Child] = []
    try:
        port = free_port()
        server_config = {"COMPRESSION": "on" if compression else "off", **(config or {})}
        stdin = host_data(nats.url, port, server_config, provider_config)
        args = [sys.executable, "-m", "provider"]
        if profile_to is not None:
            args = [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "provider"]
        provider = await spawn("provider", args, stdin=stdin, env={})
        children.append(provider)
        await provider.wait_for(" ready: ")
        pids = {"provider": provider.pid, "nats-server": nats.pid}
        if component is not None:
            comp = await spawn("component", component_args(component, nats.url))
            children.append(comp)
            await comp.wait_for("ready")
            pids["component"] = comp.pid
        named = {child.name: child for child in children}
        yield Stack("ours", f"ws://127.0.0.1:{port}/ws", "ws", pids, nats.url, named)
    finally:
        for child in reversed(children):
            await child.stop()
        nats.stop()


@contextlib.asynccontextmanager
async def baseline_echo() -> AsyncIterator[Stack]:
    """Baseline a: a bare `websockets` echo server."""
    port = free_port()
    child = await spawn("ws-echo", [sys.executable, "-m", "bench.baselines", "ws-echo", str(port)])
    try:
        await child.wait_for("ready")
        yield Stack("a: websockets echo", f"ws://127.0.0.1:{port}/", "ws", {"server": child.pid})
    finally:
        await child.stop()


@contextlib.asynccontextmanager
async def baseline_forwarder() -> AsyncIterator[Stack]:
    """Baseline b: websockets -> one nats-py request per frame -> nats-py echo responder."""
    nats = start_nats()
    children: list[Child] = []
    try:
        responder = await spawn("nats-echo", responder_args(nats.url))
        children.append(responder)
        await responder.wait_for("ready")
        port = free_port()
        forwarder = await spawn(
            "forwarder",
            [sys.executable, "-m", "bench.baselines", "forwarder", str(port), nats.url],
        )
        children.append(forwarder)
        await forwarder.wait_for("ready")
        pids = {"forwarder": forwarder.pid, "responder": responder.pid, "nats-server": nats.pid}
        yield Stack("b: naive forwarder", f"ws://127.0.0.1:{port}/", "ws", pids, nats.url)
    finally:
        for child in reversed(children):
            await child.stop()
        nats.stop()


@contextlib.asynccontextmanager
async def baseline_nats_ws() -> AsyncIterator[Stack]:
    """Baseline c: nats-server's WebSocket listener and a nats-py echo responder."""
    ws_port = free_port()
    nats = start_nats(websocket_port=ws_port)
    responder = None
    try:
        responder = await spawn("nats-echo", responder_args(nats.url))
        await responder.wait_for("ready")
        pids = {"nats-server": nats.pid, "responder": responder.pid}
        yield Stack("c: nats-server websocket", f"ws://127.0.0.1:{ws_port}/", "nats", pids)
    finally:
        if responder is not None:
            await responder.stop()
        nats.stop()
