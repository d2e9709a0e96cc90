"""A small driver of a wasmCloud 1.x host's control interface over NATS (nats-py).

Written against the code the test host is compiled from: wasmcloud-host 0.27.1 (the host of
wasmCloud v1.9.2) and wasmcloud-control-interface 3.0.1 (both on crates.io; in the wasmCloud
repository at tag v1.9.2 under `crates/host` and `crates/control-interface`). References below
are to those files:

- subjects: `crates/control-interface/src/broker.rs` (`wasmbus.ctl.v1.<lattice>.<...>`, the
  default topic prefix `wasmbus.ctl`, API version `v1`); the host dispatches them in
  `crates/host/src/wasmbus/mod.rs` `Host::handle_ctl_message` (the match on the subject parts
  after `<prefix>.v1.<lattice>`) and answers in `crates/host/src/wasmbus/ctl.rs`.
- payloads: `crates/control-interface/src/types/{ctl,link,rpc}.rs` (serde field names).
- every answer is a `CtlResponse` (`types/ctl.rs`): `{"success": bool, "message": str,
  "response": T}`, `response` left out when there is none. A request the host fails to handle
  (bad payload, ...) is answered `{"success": false, "message": "<error>"}`.
- events: `crates/host/src/wasmbus/event.rs` `publish`: CloudEvents (JSON, spec 1.0) on
  `wasmbus.evt.<lattice>.<name>`, type `com.wasmcloud.lattice.<name>`, source = the host id,
  `data` = the event body built by the functions of that file.

Commands that start something (`provider.start`, `component.scale`) are acknowledged at once
and done in a spawned task (`ctl.rs` `handle_start_provider`, `handle_scale_component`); the
outcome is an event (`provider_started` / `provider_start_failed`, `component_scaled` /
`component_scale_failed`), so callers wait on events: see `Events` and the `*_and_wait` methods.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# broker.rs: DEFAULT_TOPIC_PREFIX = "wasmbus.ctl", CTL_API_VERSION_1 = "v1".
DEFAULT_TOPIC_PREFIX = "wasmbus.ctl"
CTL_API_VERSION = "v1"


class CtlError(RuntimeError):
    """The host answered `success: false`, did not answer, or reported a failure event."""


@dataclass(frozen=True)
class CtlResponse:
    """`CtlResponse<T>` (types/ctl.rs): what every control interface request is answered with."""

    success: bool
    message: str
    response: Any = None

    @classmethod
    def parse(cls, data: bytes) -> CtlResponse:
        raw = json.loads(data)
        if not isinstance(raw, dict) or "success" not in raw:
            raise CtlError(f"not a CtlResponse: {data[:500]!r}")
        # `message` is always serialised by the host; an error fallback of `handle_ctl_message`
        # writes `error` instead when even serialising the error failed.
        message = raw.get("message", raw.get("error", ""))
        return cls(bool(raw["success"]), str(message), raw.get("response"))

    def check(self, what: str) -> CtlResponse:
        if not self.success:
            raise CtlError(f"{what} failed: {self.message}")
        return self


@dataclass(frozen=True)
class Event:
    """One lattice event (a CloudEvent, event.rs `publish`)."""

    name: str  # the subject's last token, e.g. "provider_started"
    source: str  # the host id
    data: dict[str, Any]

    @classmethod
    def parse(cls, subject: str, payload: bytes) -> Event:
        raw = json.loads(payload)
        ty = str(raw.get("type", ""))
        name = ty.removeprefix("com.wasmcloud.lattice.") if ty else subject.rsplit(".", 1)[-1]
        data = raw.get("data")
        return cls(name, str(raw.get("source", "")), data if isinstance(data, dict) else {})


@dataclass
class Events:
    """Every event of one lattice since `subscribe()`, in arrival order, waited on with timeouts.

    Subscribe before the action whose event you wait for: NATS does not replay events.
    """

    nc: NatsClient
    lattice: str
    seen: list[Event] = field(default_factory=list)
    _sub: Subscription | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def subscribe(self) -> Events:
        # event.rs `publish`: subject `wasmbus.evt.{lattice}.{name}`.
        self._sub = await self.nc.subscribe(f"wasmbus.evt.{self.lattice}.>", cb=self._on_msg)
        await self.nc.flush()
        return self

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = Event.parse(msg.subject, msg.data)
        except (ValueError, UnicodeDecodeError):
            return
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def wait(
        self,
        name: str,
        where: Callable[[dict[str, Any]], bool] = lambda _data: True,
        *,
        failure: str | None = None,
        after: int = 0,
        timeout: float = 30.0,
    ) -> Event:
        """The first event `name` (from index `after` on) whose data satisfies `where`.

        If an event `failure` satisfying `where` comes first, raise `CtlError` with its data
        (e.g. `provider_start_failed` carries the host's error text).
        """

        def find() -> Event | None:
            for event in self.seen[after:]:
                if event.name in (name, failure) and where(event.data):
                    return event
            return None

        async def wait() -> Event:
            async with self._changed:
                while (event := find()) is None:
                    await self._changed.wait()
                return event

        try:
            event = await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            names = [e.name for e in self.seen[after:]]
            raise CtlError(f"no {name!r} event within {timeout}s; events seen: {names}") from None
        if event.name == failure:
            raise CtlError(f"{failure}: {json.dumps(event.data)}")
        return event

    @property
    def mark(self) -> int:
        """Index to pass as `after=` to wait only for events that arrive from now on."""
        return len(self.seen)


def link(
    source_id: str,
    target: str,
    interfaces: list[str],
    *,
    name: str = "default",
    wit_namespace: str = "wasmcloud",
    wit_package: str = "messaging",
    source_config: list[str] | None = None,
    target_config: list[str] | None = None,
) -> dict[str, Any]:
    """A `Link` (types/link.rs) as `link.put` takes it and `link.get` returns it.

    `source_config` / `target_config` are lists of config NAMES (put with `config_put`); a name
    starting with `SECRET` refers to a secret reference instead (wasmcloud-secrets-types
    `SECRET_PREFIX`). There is no secrets field.
    """
    return {
        "source_id": source_id,
        "target": target,
        "name": name,
        "wit_namespace": wit_namespace,
        "wit_package": wit_package,
        "interfaces": interfaces,
        "source_config": source_config or [],
        "target_config": target_config or [],
    }


class LatticeCtl:
    """Requests on one lattice's control interface."""

    def __init__(
        self,
        nc: NatsClient,
        lattice: str = "default",
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        timeout: float = 10.0,
    ) -> None:
        self.nc = nc
        self.lattice = lattice
        self.topic_prefix = topic_prefix
        self.timeout = timeout

    def subject(self, *parts: str) -> str:
        """broker.rs `prefix()`: `{topic_prefix}.v1.{lattice}`, then the operation's tokens."""
        return ".".join([self.topic_prefix, CTL_API_VERSION, self.lattice, *parts])

    async def request(self, subject: str, payload: Any = None) -> CtlResponse:
        """One request/reply; `payload` is JSON-encoded (None: empty body)."""
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            msg = await self.nc.request(subject, data, timeout=self.timeout)
        except TimeoutError as e:  # nats.errors.TimeoutError derives from asyncio's
            raise CtlError(f"no answer on {subject} within {self.timeout}s") from e
        return CtlResponse.parse(msg.data)

    # --- hosts ------------------------------------------------------------------------------

    async def ping_hosts(self, *, window: float = 1.0) -> list[dict[str, Any]]:
        """`host.ping` (broker.rs `queries::hosts`): every host answers with a
        `CtlResponse<Host>` (ctl.rs `handle_ping_hosts`: id, friendly_name, labels, version,
        lattice, ctl_host, rpc_host, uptime_*). Scatter/gather like the Rust client's
        `publish_and_wait`: collects the answers that arrive within `window` seconds."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            await self.nc.publish(self.subject("host", "ping"), b"", reply=inbox)
            await self.nc.flush()
            hosts: list[dict[str, Any]] = []
            deadline = time.monotonic() + window
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except TimeoutError:
                    break
                resp = CtlResponse.parse(msg.data)
                if resp.success and isinstance(resp.response, dict):
                    hosts.append(resp.response)
            return hosts
        finally:
            await sub.unsubscribe()

    async def wait_for_host(self, host_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until host `host_id` answers `host.ping`; returns its `Host` description.

        Each ping waits up to 1 s for that host's answer (the answer is the event waited on);
        a host that has not subscribed yet is pinged again until `timeout`."""
        deadline = time.monotonic() + timeout
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            while time.monotonic() < deadline:
                await self.nc.publish(self.subject("host", "ping"), b"", reply=inbox)
                await self.nc.flush()
                round_end = min(deadline, time.monotonic() + 1.0)
                while (left := round_end - time.monotonic()) > 0:
                    try:
                        msg = await sub.next_msg(timeout=left)
                    except TimeoutError:
                        break
                    resp = CtlResponse.parse(msg.data)
                    if isinstance(resp.response, dict) and resp.response.get("id") == host_id:
                        return resp.response
            raise CtlError(f"host {host_id} did not answer host.ping within {timeout}s")
        finally:
            await sub.unsubscribe()

    async def host_inventory(self, host_id: str) -> dict[str, Any]:
        """`host.get.<host_id>` (broker.rs `queries::host_inventory`): `HostInventory`
        (types/host.rs: components, providers, host_id, labels, version, ...)."""
        resp = await self.request(self.subject("host", "get", host_id))
        inventory: dict[str, Any] = resp.check("host.get").response
        return inventory

    async def host_stop(self, host_id: str, timeout_ms: int | None = None) -> CtlResponse:
        """`host.stop.<host_id>` with `StopHostCommand` `{"host_id", "timeout"?}`."""
        payload: dict[str, Any] = {"host_id": host_id}
        if timeout_ms is not None:
            payload["timeout"] = timeout_ms
        return (await self.request(self.subject("host", "stop", host_id), payload)).check(
            "host.stop"
        )

    # --- config -----------------------------------------------------------------------------

    async def config_put(self, name: str, values: dict[str, str]) -> CtlResponse:
        """`config.put.<name>` with the map itself as the body (ctl.rs `handle_config_put`
        checks it is a string->string map and stores it in the CONFIGDATA_<lattice> KV)."""
        return (await self.request(self.subject("config", "put", name), values)).check(
            f"config.put {name}"
        )

    async def config_get(self, name: str) -> dict[str, str] | None:
        """`config.get.<name>`: `response` = the map; a missing config is answered
        `success: true, message: "Configuration not found"` without `response`."""
        resp = (await self.request(self.subject("config", "get", name))).check("config.get")
        values: dict[str, str] | None = resp.response
        return values

    async def config_del(self, name: str) -> CtlResponse:
        return (await self.request(self.subject("config", "del", name))).check("config.del")

    # --- providers --------------------------------------------------------------------------

    async def provider_start(
        self,
        host_id: str,
        provider_id: str,
        provider_ref: str,
        *,
        config: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> CtlResponse:
        """`provider.start.<host_id>` with `StartProviderCommand` (types/ctl.rs):
        `{"provider_id", "provider_ref", "host_id", "config": [names], "annotations"?}`.
        `provider_ref` may be `file:///abs/path.par.gz` (the host must allow file loads).
        Acknowledged at once ("successfully started provider"); the start itself ends with a
        `provider_started` or `provider_start_failed` event."""
        payload: dict[str, Any] = {
            "provider_id": provider_id,
            "provider_ref": provider_ref,
            "host_id": host_id,
            "config": config or [],
        }
        if annotations is not None:
            payload["annotations"] = annotations
        resp = await self.request(self.subject("provider", "start", host_id), payload)
        return resp.check(f"provider.start {provider_id}")

    async def provider_start_and_wait(
        self, events: Events, host_id: str, provider_id: str, provider_ref: str, **kw: Any
    ) -> Event:
        mark = events.mark
        await self.provider_start(host_id, provider_id, provider_ref, **kw)
        return await events.wait(
            "provider_started",
            lambda d: d.get("provider_id") == provider_id,
            failure="provider_start_failed",
            after=mark,
        )

    async def provider_stop(self, host_id: str, provider_id: str) -> CtlResponse:
        """`provider.stop.<host_id>` with `StopProviderCommand` `{"host_id", "provider_id"}`.
        Done before the answer (ctl.rs `handle_stop_provider`: shutdown request to the provider
        on `wasmbus.rpc.<lattice>.<provider_id>.default.shutdown`, waiting at most the
        provider shutdown delay, then the process is killed); a `provider_stopped` event
        follows. Not running: `success: false`, "provider with that ID is not running"."""
        payload = {"host_id": host_id, "provider_id": provider_id}
        resp = await self.request(self.subject("provider", "stop", host_id), payload)
        return resp.check(f"provider.stop {provider_id}")

    # --- components -------------------------------------------------------------------------

    async def component_scale(
        self,
        host_id: str,
        component_id: str,
        component_ref: str,
        count: int = 1,
        *,
        config: list[str] | None = None,
        annotations: dict[str, str] | None = None,
        allow_update: bool = False,
    ) -> CtlResponse:
        """`component.scale.<host_id>` with `ScaleComponentCommand` (types/ctl.rs):
        `{"component_ref", "component_id", "count" (= max_instances; 0 stops it), "host_id",
        "config": [names], "allow_update", "annotations"?}`. Acknowledged at once; the outcome
        is a `component_scaled` or `component_scale_failed` event."""
        payload: dict[str, Any] = {
            "component_ref": component_ref,
            "component_id": component_id,
            "count": count,
            "host_id": host_id,
            "config": config or [],
            "allow_update": allow_update,
        }
        if annotations is not None:
            payload["annotations"] = annotations
        resp = await self.request(self.subject("component", "scale", host_id), payload)
        return resp.check(f"component.scale {component_id}")

    async def component_scale_and_wait(
        self,
        events: Events,
        host_id: str,
        component_id: str,
        component_ref: str,
        count: int = 1,
        **kw: Any,
    ) -> Event:
        mark = events.mark
        await self.component_scale(host_id, component_id, component_ref, count, **kw)
        return await events.wait(
            "component_scaled",
            lambda d: d.get("component_id") == component_id,
            failure="component_scale_failed",
            after=mark,
        )

    # --- links ------------------------------------------------------------------------------

    async def link_put(self, link_def: dict[str, Any]) -> CtlResponse:
        """`link.put` with a `Link` (see `link()`). ctl.rs `handle_link_put` checks that every
        named config exists ("Configuration X not found in config store"), refuses a second
        target for the same source/namespace/package/name/interface, stores the link in the
        source's component spec (LATTICEDATA_<lattice> KV), sends it to the providers involved
        and publishes `linkdef_set` (or `linkdef_set_failed` and answers `success: false`)."""
        source, target = link_def["source_id"], link_def["target"]
        return (await self.request(self.subject("link", "put"), link_def)).check(
            f"link.put {source} -> {target}"
        )

    async def link_del(
        self,
        source_id: str,
        *,
        name: str = "default",
        wit_namespace: str = "wasmcloud",
        wit_package: str = "messaging",
    ) -> CtlResponse:
        """`link.del` with `DeleteInterfaceLinkDefinitionRequest` (types/rpc.rs):
        `{"source_id", "name", "wit_namespace", "wit_package"}` (no target, no interfaces).
        Idempotent; publishes `linkdef_deleted`."""
        payload = {
            "source_id": source_id,
            "name": name,
            "wit_namespace": wit_namespace,
            "wit_package": wit_package,
        }
        return (await self.request(self.subject("link", "del"), payload)).check(
            f"link.del {source_id}"
        )

    async def link_get(self) -> list[dict[str, Any]]:
        """`link.get` (broker.rs `queries::link_definitions`), empty body. ctl.rs `handle_links`
        answers `CtlResponse::ok(links)`: every link the host holds, each a `Link` with config
        NAMES (not values) and no secrets field."""
        resp = (await self.request(self.subject("link", "get"))).check("link.get")
        links: list[dict[str, Any]] = resp.response or []
        return links

    async def wait_links(
        self,
        check: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> list[dict[str, Any]]:
        """Ask `link.get` until `check(links)` holds. The host answers from a map that its
        LATTICEDATA watch fills after `link.put` has stored the link, so a `link.get` right
        after `link.put` may not show it yet; there is no event for that step."""
        deadline = time.monotonic() + timeout
        while True:
            links = await self.link_get()
            if check(links):
                return links
            if time.monotonic() >= deadline:
                raise CtlError(f"link.get never satisfied the check within {timeout}s: {links}")
            await asyncio.sleep(interval)  # polling a remote map: no notification exists
