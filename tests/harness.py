"""A test host: plays the wasmCloud host's side of docs/PROTOCOL.md against a provider process.

It starts the provider the way the host does (no arguments, empty environment, HostData on
stdin then EOF), publishes link puts/deletes, config updates, health and shutdown requests on
the host's subjects, and invokes or serves wRPC functions with the SDK's transport (the
independent Go implementation is exercised separately in the interop tests).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout

from wasmcloud_provider_sdk import SecretValue, WrpcTransport
from wasmcloud_provider_sdk.hostdata import encode_host_data
from wasmcloud_provider_sdk.nkeys import XKey
from wasmcloud_provider_sdk.secrets import seal_link_secrets

ROOT = Path(__file__).resolve().parent.parent
RECORDING_PROVIDER = [sys.executable, str(ROOT / "tests" / "fixtures" / "recording_provider.py")]
WS_PROVIDER = [sys.executable, "-m", "provider"]
HOST_ID = "NBXHOSTTESTHOSTTESTHOSTTESTHOSTTESTHOSTTESTHOSTTESTHOST1"


@dataclass
class ProviderProcess:
    """A provider child process and what it wrote to stderr."""

    proc: asyncio.subprocess.Process
    stderr_lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            async with self._changed:
                self.stderr_lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        """Wait until a stderr line containing `needle` appears; fail if the process exits."""

        def found() -> str | None:
            for line in self.stderr_lines:
                if needle in line:
                    return line
            return None

        async def wait() -> str:
            async with self._changed:
                while (line := found()) is None:
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"provider exited before {needle!r}:\n{self.stderr}")
                    await self._changed.wait()
                return line

        return await asyncio.wait_for(wait(), timeout)

    async def wait_for_lines(self, needle: str, count: int, timeout: float = 30.0) -> list[str]:
        """Wait until `count` stderr lines contain `needle` (worker processes share this
        stderr); fail if the process exits first."""

        async def wait() -> list[str]:
            async with self._changed:
                while len(lines := [x for x in self.stderr_lines if needle in x]) < count:
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"provider exited before {needle!r}:\n{self.stderr}")
                    await self._changed.wait()
                return lines

        return await asyncio.wait_for(wait(), timeout)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    async def wait_exit(self, timeout: float) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return rc

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


async def start_process(command: list[str], stdin_data: bytes) -> ProviderProcess:
    """Start `command` like the host: no arguments of its own, empty env, stdin then EOF."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={},
        cwd="/",
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin_data)
    await proc.stdin.drain()
    proc.stdin.close()
    pp = ProviderProcess(proc)
    pp._reader = asyncio.get_running_loop().create_task(pp._read_stderr())
    return pp


class Events:
    """Events a recording provider publishes, consumed in order with timeouts."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self._sub.next_msg(timeout=timeout)
        event: dict[str, Any] = json.loads(msg.data)
        return event

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event, which must be of `kind` (no other event may come first)."""
        event = await self.next(timeout)
        assert event["event"] == kind, f"expected {kind}, got {event}"
        return event

    async def none_within(self, timeout: float) -> None:
        """Assert that no event arrives within `timeout` (used after a negative action)."""
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except NatsTimeout:
            return
        raise AssertionError(f"unexpected event {msg.data!r}")


class FakeHost:
    """The host's side of the protocol, for one provider id on one lattice."""

    def __init__(self, nats_url: str, provider_id: str = "prov1", lattice: str = "default"):
        self.nats_url = nats_url
        self.provider_id = provider_id
        self.lattice = lattice
        self.host_id = HOST_ID
        self.host_xkey = XKey.generate()
        self.provider_xkey = XKey.generate()
        self.nc: NatsClient | None = None
        self.transport: WrpcTransport | None = None
        self.processes: list[ProviderProcess] = []

    async def connect(self) -> None:
        self.nc = await nats.connect(self.nats_url, name="fake-host")
        self.transport = WrpcTransport(self.nc)
        await self.transport.start()

    async def close(self) -> None:
        for p in self.processes:
            await p.kill()
        if self.nc is not None:
            await self.nc.close()

    # --- host data and links ----------------------------------------------------------------

    def link(
        self,
        source_id: str,
        target: str,
        interfaces: list[str],
        *,
        name: str = "default",
        source_config: dict[str, str] | None = None,
        target_config: dict[str, str] | None = None,
        source_secrets: dict[str, str] | None = None,
        target_secrets: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A link definition as the host serialises it (secrets sealed to the provider)."""

        def seal(secrets: dict[str, str] | None) -> list[int] | None:
            if not secrets:
                return None
            values = {k: SecretValue(kind="String", value=v) for k, v in secrets.items()}
            return seal_link_secrets(values, self.host_xkey, self.provider_xkey)

        return {
            "source_id": source_id,
            "target": target,
            "name": name,
            "wit_namespace": "wasmcloud",
            "wit_package": "messaging",
            "interfaces": interfaces,
            "source_config": source_config or {},
            "target_config": target_config or {},
            "source_secrets": seal(source_secrets),
            "target_secrets": seal(target_secrets),
        }

    def consumer_link(self, component: str, **kw: Any) -> dict[str, Any]:
        """component -> provider, interface consumer."""
        return self.link(component, self.provider_id, ["consumer"], **kw)

    def handler_link(self, component: str, **kw: Any) -> dict[str, Any]:
        """provider -> component, interface handler."""
        return self.link(self.provider_id, component, ["handler"], **kw)

    def host_data(self, **overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host_id": self.host_id,
            "lattice_rpc_prefix": self.lattice,
            "link_name": "default",
            "lattice_rpc_user_jwt": "",
            "lattice_rpc_user_seed": "",
            "lattice_rpc_url": self.nats_url,
            "provider_key": self.provider_id,
            "env_values": {},
            "instance_id": str(uuid.uuid4()),
            "link_definitions": [],
            "cluster_issuers": [],
            "config": {},
            "secrets": {},
            "host_xkey_public_key": self.host_xkey.public_key,
            "provider_xkey_private_key": self.provider_xkey.seed,
            "default_rpc_timeout_ms": 2000,
            "structured_logging": False,
            "log_level": "debug",
            "otel_config": {
                "enable_observability": False,
                "protocol": "Http",
                "additional_ca_paths": [],
                "trace_level": "info",
            },
        }
        data.update(overrides)
        return data

    async def start_provider(
        self, command: list[str] | None = None, **overrides: Any
    ) -> ProviderProcess:
        stdin = encode_host_data(self.host_data(**overrides))
        proc = await start_process(command or RECORDING_PROVIDER, stdin)
        self.processes.append(proc)
        return proc

    # --- control subjects --------------------------------------------------------------------

    @property
    def _base(self) -> str:
        return f"wasmbus.rpc.{self.lattice}.{self.provider_id}"

    async def put_link(self, link: dict[str, Any], *, via_provider_id: bool = False) -> None:
        assert self.nc is not None
        key = self.provider_id if via_provider_id else self.provider_xkey.public_key
        await self.nc.publish(
            f"wasmbus.rpc.{self.lattice}.{key}.linkdefs.put", json.dumps(link).encode()
        )

    async def put_raw(self, data: bytes) -> None:
        assert self.nc is not None
        key = self.provider_xkey.public_key
        await self.nc.publish(f"wasmbus.rpc.{self.lattice}.{key}.linkdefs.put", data)

    async def del_link(self, link: dict[str, Any]) -> None:
        assert self.nc is not None
        stripped = dict(link, source_config={}, target_config={})
        stripped.update(source_secrets=None, target_secrets=None)
        await self.nc.publish(f"{self._base}.linkdefs.del", json.dumps(stripped).encode())

    async def serve_control_interface(
        self, links: list[dict[str, Any]], configs: dict[str, dict[str, str]] | None = None
    ) -> None:
        """Answer the control interface's `link.get` with `links` (as a host lists them: config
        *names*, see `ctl_link`) and `config.get.<name>` from `configs`, as a host does."""
        assert self.nc is not None
        prefix = f"wasmbus.ctl.v1.{self.lattice}"
        known = configs or {}

        async def on_links(msg: Any) -> None:
            body = {"success": True, "message": "", "response": links}
            await self.nc.publish(msg.reply, json.dumps(body).encode())  # type: ignore[union-attr]

        async def on_config(msg: Any) -> None:
            name = msg.subject.rpartition(".")[2]
            if name in known:
                body = {"success": True, "message": "", "response": known[name]}
            else:
                body = {"success": True, "message": "Configuration not found", "response": None}
            await self.nc.publish(msg.reply, json.dumps(body).encode())  # type: ignore[union-attr]

        await self.nc.subscribe(f"{prefix}.link.get", cb=on_links)
        await self.nc.subscribe(f"{prefix}.config.get.*", cb=on_config)
        await self.nc.flush()

    def ctl_link(
        self,
        link: dict[str, Any],
        source_config: list[str] | None = None,
        target_config: list[str] | None = None,
    ) -> dict[str, Any]:
        """`link` as the control interface lists it: the names of its configs, no values."""
        return {
            key: link[key]
            for key in ("source_id", "target", "name", "wit_namespace", "wit_package")
        } | {
            "interfaces": list(link["interfaces"]),
            "source_config": source_config or [],
            "target_config": target_config or [],
        }

    async def config_update(self, config: dict[str, str]) -> None:
        assert self.nc is not None
        await self.nc.publish(f"{self._base}.config.update", json.dumps(config).encode())

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.nc is not None
        msg = await self.nc.request(f"{self._base}.health", b"", timeout=timeout)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def wait_healthy(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the provider's "ready" log line, then ask for health."""
        await self.processes[-1].wait_for_line(" ready: ", timeout)
        return await self.health()

    async def shutdown(self, host_id: str | None = None, timeout: float = 1.0) -> bytes:
        assert self.nc is not None
        payload = json.dumps({"host_id": host_id or self.host_id}).encode()
        msg = await self.nc.request(f"{self._base}.default.shutdown", payload, timeout=timeout)
        return bytes(msg.data)

    @asynccontextmanager
    async def events(self) -> AsyncIterator[Events]:
        assert self.nc is not None
        sub = await self.nc.subscribe(f"test.events.{self.provider_id}")
        await self.nc.flush()
        try:
            yield Events(sub)
        finally:
            await sub.unsubscribe()
