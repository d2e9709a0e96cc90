"""The provider runtime: lattice connection, control plane and life cycle.

docs/PROTOCOL.md, sections 2 and 3. Start-up follows the Rust SDK's order (section 2.3):
connect, subscribe every control subject and prove the subscriptions are live, `init`, apply
the initial links, serve the exports, prove those live too, and only then answer health
checks. Link puts, link deletes and config
updates go through one queue and are applied in arrival order by one worker, so a slow hook
delays later link changes but never health checks or invocations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from .bindings import HandlerClient
from .context import ProviderContext as ProviderContext
from .errors import LatticeConnectError, LinkError, LinkNotInEffect, NkeyError, SecretError
from .hostdata import HostData
from .lattice_links import (
    LatticeLink,
    config_get_subject,
    config_values,
    ctl_response,
    link_get_subject,
    links_for,
)
from .links import (
    InterfaceLinkDefinition,
    LinkConfig,
    LinkIdentity,
    LinkTable,
    PutKind,
    Role,
    role_of,
)
from .nkeys import XKey, sign_with_user_seed
from .otel import Telemetry, setup_telemetry
from .provider import HealthCheckResponse, Provider
from .secrets import open_link_secrets
from .wrpc import WrpcTransport

log = logging.getLogger(__name__)

SHUTDOWN_REPLY = b"shutting down"
#: Time the provider's own `shutdown` hook may take before the host's 300 ms budget is at risk.
SHUTDOWN_HOOK_BUDGET = 0.2
HEALTH_HOOK_TIMEOUT = 2.0
READY_WAIT = 30.0
#: Connection attempts at start before giving up (the host restarts a provider that exits).
INITIAL_CONNECT_ATTEMPTS = 5
#: Seconds one attempt may take (TCP, TLS and the NATS handshake).
INITIAL_CONNECT_TIMEOUT = 2.0
#: Seconds all attempts together may take: "cannot reach" is said within a few seconds.
INITIAL_CONNECT_BUDGET = 6.0
#: How long the control interface may take to list the lattice's links (or read a config).
CTL_TIMEOUT = 2.0


@dataclass(frozen=True)
class ControlSubjects:
    """The control-plane subjects of one provider instance (docs/PROTOCOL.md 3.1)."""

    link_put: str
    link_del: str
    health: str
    shutdown: str
    config_update: str

    @classmethod
    def for_provider(cls, lattice: str, provider_id: str, link_put_id: str) -> ControlSubjects:
        """`link_put_id` is the provider's xkey public key (hosts >= 1.1) or its id."""
        base = f"wasmbus.rpc.{lattice}.{provider_id}"
        return cls(
            link_put=f"wasmbus.rpc.{lattice}.{link_put_id}.linkdefs.put",
            link_del=f"{base}.linkdefs.del",
            health=f"{base}.health",
            shutdown=f"{base}.default.shutdown",
            config_update=f"{base}.config.update",
        )


def safe_nats_url(url: str) -> str:
    """`url` without user info (`nats://user:password@host` names its password), for logs."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "<user info>@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def describe_connect_error(exc: BaseException | None, timeout: float) -> str:
    """Why one attempt to reach a NATS server failed, in words (nats-py's texts are terse:
    a timeout has none at all, a refusal is `[Errno 111] Connect call failed`)."""
    if exc is None:
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"no NATS answer within {timeout:g} s"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def connect_lattice(
    host_data: HostData,
    name: str,
    disconnect_listeners: list[Callable[[], None]] | None = None,
) -> NatsClient:
    """Connect to the lattice NATS: JWT + seed auth when given, unlimited reconnects.

    `disconnect_listeners` are called (in order, synchronously) each time the connection is
    lost; the list may be filled after this returns (the transport is made from the client).

    The first connection is tried up to `INITIAL_CONNECT_ATTEMPTS` times, one second apart,
    each within `INITIAL_CONNECT_TIMEOUT`, all within `INITIAL_CONNECT_BUDGET`; then this
    raises `LatticeConnectError` (one message: the address, why, how many attempts), and a
    provider that cannot reach its lattice at start exits. The failed attempts are logged
    at debug level only. Once connected, reconnection never gives up.
    """
    url = host_data.nats_url
    attempts: list[BaseException] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        if not connected:
            attempts.append(exc)
            log.debug(
                "lattice NATS at %s, attempt %d: %s",
                safe_nats_url(url),
                len(attempts),
                describe_connect_error(exc, INITIAL_CONNECT_TIMEOUT),
            )
            return
        log.warning("lattice NATS error: %s", exc)

    async def on_disconnected() -> None:
        if not connected:
            return  # a failed first attempt, not a lost connection
        if not nc.is_closed:
            log.warning("disconnected from lattice NATS")
        for listener in disconnect_listeners or ():
            try:
                listener()
            except Exception:
                log.exception("disconnect listener failed")

    async def on_reconnected() -> None:
        log.info("reconnected to lattice NATS")

    options: dict[str, Any] = {
        "servers": [url],
        "name": name,
        # nats-py makes 1 + max_reconnect_attempts tries at the first connect, this far apart
        "max_reconnect_attempts": INITIAL_CONNECT_ATTEMPTS - 1,
        "reconnect_time_wait": 1,
        "connect_timeout": INITIAL_CONNECT_TIMEOUT,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    if host_data.lattice_rpc_user_jwt and host_data.lattice_rpc_user_seed:
        jwt = host_data.lattice_rpc_user_jwt.encode()
        seed = host_data.lattice_rpc_user_seed
        sign_with_user_seed(seed, b"check")  # fail now, clearly, on a malformed seed

        def user_jwt() -> bytes:
            return jwt

        def signature(nonce: str) -> bytes:
            return base64.b64encode(sign_with_user_seed(seed, nonce.encode()))

        options["user_jwt_cb"] = user_jwt
        options["signature_cb"] = signature
    elif host_data.lattice_rpc_user_jwt or host_data.lattice_rpc_user_seed:
        log.warning("host data has only one of lattice_rpc_user_jwt/seed: connecting without auth")
    nc = NatsClient()
    started = time.monotonic()
    try:
        # The budget bounds addresses that swallow packets: each attempt would wait its
        # whole timeout, and nats-py's own count alone would make that half a minute.
        await asyncio.wait_for(nc.connect(**options), INITIAL_CONNECT_BUDGET)
    except (NoServersError, TimeoutError):
        with contextlib.suppress(Exception):
            await nc.close()
        raise LatticeConnectError(
            safe_nats_url(url),
            describe_connect_error(attempts[-1] if attempts else None, INITIAL_CONNECT_TIMEOUT),
            max(len(attempts), 1),
            time.monotonic() - started,
        ) from None
    except asyncio.CancelledError:  # the caller gave up (e.g. Ctrl-C during start-up)
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    except NatsError as exc:  # e.g. a URL nats-py cannot parse
        with contextlib.suppress(Exception):
            await nc.close()
        reason = f"not a usable NATS URL ({exc})"
        raise LatticeConnectError(safe_nats_url(url), reason, 0, 0.0) from None
    connected = True
    nc.options["max_reconnect_attempts"] = -1
    return nc


class ProviderRuntime:
    """Runs one `Provider` under a host (or a test harness playing the host)."""

    def __init__(
        self,
        provider: Provider | Callable[[], Provider],
        host_data: HostData,
        *,
        name: str = "python-provider",
    ):
        # A factory is called once the control subjects are live: a provider whose imports
        # take time (the WebSocket stack, TLS, JWT) then cannot make the host's link puts
        # arrive before anyone listens.
        if isinstance(provider, Provider):
            self._provider: Provider | None = provider
            self._make_provider: Callable[[], Provider] | None = None
        else:
            self._provider = None
            self._make_provider = provider
        self.host_data = host_data
        self.name = name
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._ops: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        #: Links deleted since start: never re-applied from the lattice's (older) list.
        self._deleted: set[LinkIdentity] = set()
        self._provider_xkey: XKey | None = None
        self._host_xkey: XKey | None = None
        self.ctx: ProviderContext | None = None
        self.telemetry = Telemetry()

    @property
    def provider(self) -> Provider:
        """The provider (made by its factory once the control subjects are live)."""
        if self._provider is None:
            raise RuntimeError("the provider is made once the control subjects are live")
        return self._provider

    # --- start ------------------------------------------------------------------------

    def _load_xkeys(self) -> str:
        hd = self.host_data
        if not hd.has_xkeys:
            log.info("host sent no xkeys: link puts are expected on the provider-id subject")
            return hd.provider_key
        self._provider_xkey = XKey.from_seed(hd.provider_xkey_private_key)
        self._host_xkey = XKey.from_public_key(hd.host_xkey_public_key)
        return self._provider_xkey.public_key

    async def start(self) -> ProviderContext:
        """Connect, subscribe, initialise, apply initial links, serve; then mark ready."""
        hd = self.host_data
        link_put_id = self._load_xkeys()
        on_disconnect: list[Callable[[], None]] = []
        nc = await connect_lattice(hd, self.name, on_disconnect)
        transport = WrpcTransport(nc)
        # Calls waiting for a component's answer fail at once instead of at their timeout.
        on_disconnect.append(transport.connection_lost)
        self.telemetry = setup_telemetry(hd, hd.config)
        transport.tracer = self.telemetry.tracer
        ctx = ProviderContext(
            host_data=hd,
            nc=nc,
            transport=transport,
            handler_client=HandlerClient(transport, hd.lattice, hd.provider_key),
            links=LinkTable(),
            config=dict(hd.config),
            telemetry=self.telemetry,
        )
        self.ctx = ctx
        subjects = ControlSubjects.for_provider(hd.lattice, hd.provider_key, link_put_id)
        await transport.start()
        self._subs += [
            await nc.subscribe(subjects.link_put, cb=self._enqueue("put")),
            await nc.subscribe(subjects.link_del, cb=self._enqueue("del")),
            await nc.subscribe(subjects.config_update, cb=self._enqueue("config")),
            await nc.subscribe(subjects.health, cb=self._on_health),
            await nc.subscribe(subjects.shutdown, cb=self._on_shutdown),
        ]
        await self._prove_subscriptions_live(nc)
        if self._provider is None:
            assert self._make_provider is not None
            self._provider = self._make_provider()
        log.info(
            "provider %s connected to %s (lattice %s, instance %s)",
            hd.provider_key,
            hd.nats_url,
            hd.lattice,
            hd.instance_id or "-",
        )
        await self.provider.init(ctx)
        for link in hd.link_definitions:
            await self._apply_put(link)
        # After the puts and deletes that reached us so far (queued meanwhile), in order.
        self._ops.put_nowait(("lattice", b""))
        await self.provider.serve_exports(ctx)
        await self._prove_subscriptions_live(nc)
        self._spawn(self._op_worker())
        self.ready.set()
        log.info("provider %s ready: %d link(s) applied", hd.provider_key, len(ctx.links))
        return ctx

    async def _prove_subscriptions_live(self, nc: NatsClient, timeout: float = 5.0) -> None:
        # nats-py's flush() can return before SUBs still in its buffer reach the server
        # (docs/PROTOCOL.md 2.3). A message that makes a round trip through a subscription
        # made after the others proves the server has processed every earlier SUB.
        sentinel = nc.new_inbox()
        sub = await nc.subscribe(sentinel)
        try:
            await nc.publish(sentinel, b"")
            await sub.next_msg(timeout=timeout)
        finally:
            await sub.unsubscribe()

    # --- control messages ---------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _enqueue(self, kind: str) -> Any:
        async def cb(msg: Msg) -> None:
            self._ops.put_nowait((kind, msg.data))

        return cb

    async def _op_worker(self) -> None:
        while True:
            kind, data = await self._ops.get()
            try:
                if kind == "put":
                    link = self._parse_link(data)
                    if link is not None:
                        await self._apply_put(link)
                elif kind == "del":
                    link = self._parse_link(data)
                    if link is not None:
                        self._deleted.add(link.identity)
                        await self._apply_del(link)
                elif kind == "lattice":
                    await self._apply_missed_links()
                else:
                    await self._apply_config(data)
            except Exception:
                log.exception("failed to apply %s", kind)

    async def _apply_missed_links(self) -> None:
        """Apply the links the lattice holds for this provider that never reached it (a put
        published before we subscribed is lost; see `lattice_links`)."""
        ctx = self.ctx
        assert ctx is not None
        hd = self.host_data
        subject = link_get_subject(hd.lattice)
        hint = (
            f"links put before this provider subscribed, if any, are not applied (the "
            f"provider needs permission to publish to {subject} and "
            f"{config_get_subject(hd.lattice, '*')})"
        )
        try:
            reply = await ctx.nc.request(subject, b"", timeout=CTL_TIMEOUT)
            links, problems = links_for(ctl_response(reply.data, "link.get"), hd.provider_key)
        except NoRespondersError:
            log.warning("no host answered %s: %s", subject, hint)
            return
        except NatsTimeout:
            log.warning("no answer on %s within %gs: %s", subject, CTL_TIMEOUT, hint)
            return
        except Exception as exc:  # LinkError, or the connection went away
            log.warning("could not list the lattice's links (%s): %s", exc, hint)
            return
        for problem in problems:
            log.warning("link.get: ignoring a listed link: %s", problem)
        missed = [
            link
            for link in links
            if ctx.links.get(link.identity) is None and link.identity not in self._deleted
        ]
        if not missed:
            log.debug("the lattice holds no link this provider missed")
            return
        configs, config_errors = await self._read_configs(
            set().union(*(link.config_names() for link in missed))
        )
        for link in missed:
            await self._apply_missed(link, configs, config_errors)

    async def _read_configs(
        self, names: set[str]
    ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """The values of these named configs, and an error text for each unreadable one."""
        ctx = self.ctx
        assert ctx is not None
        configs: dict[str, dict[str, str]] = {}
        errors: dict[str, str] = {}
        for name in sorted(names):
            subject = config_get_subject(self.host_data.lattice, name)
            try:
                reply = await ctx.nc.request(subject, b"", timeout=CTL_TIMEOUT)
                configs[name] = config_values(ctl_response(reply.data, f"config {name!r}"), name)
            except (NoRespondersError, NatsTimeout):
                errors[name] = f"no answer on {subject}"
            except Exception as exc:
                errors[name] = str(exc)
        return configs, errors

    async def _apply_missed(
        self, link: LatticeLink, configs: dict[str, dict[str, str]], errors: dict[str, str]
    ) -> None:
        desc = link.description
        secrets = link.secret_names(self.host_data.provider_key)
        if secrets:
            log.error(
                "link %s was put before this provider subscribed and needs secrets (%s) that "
                "only a host can resolve: not applied; delete the link and put it again, or "
                "restart the provider",
                desc,
                ", ".join(secrets),
            )
            return
        unreadable = [f"{n}: {errors[n]}" for n in sorted(link.config_names()) if n in errors]
        if unreadable:
            log.error(
                "link %s was put before this provider subscribed, but its config could not "
                "be read (%s): not applied",
                desc,
                "; ".join(unreadable),
            )
            return
        log.info("link %s was put before this provider subscribed: applying it now", desc)
        await self._apply_put(link.resolve(configs))

    def _parse_link(self, data: bytes) -> InterfaceLinkDefinition | None:
        try:
            return InterfaceLinkDefinition.model_validate_json(data)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) or "payload" for e in exc.errors())
            log.error("ignoring malformed link definition (%s)", where)
            return None

    def _link_config(
        self, link: InterfaceLinkDefinition, role: Role, *, with_secrets: bool = True
    ) -> LinkConfig:
        """The link seen from our side: our side's config and (opened) secrets."""
        sealed = link.source_secrets if role is Role.SOURCE else link.target_secrets
        secrets = (
            open_link_secrets(sealed, self._provider_xkey, self._host_xkey) if with_secrets else {}
        )
        return LinkConfig(
            source_id=link.source_id,
            target_id=link.target,
            link_name=link.name,
            wit_namespace=link.wit_namespace,
            wit_package=link.wit_package,
            interfaces=tuple(link.interfaces),
            config=dict(link.source_config if role is Role.SOURCE else link.target_config),
            secrets=secrets,
        )

    async def _apply_put(self, link: InterfaceLinkDefinition) -> None:
        ctx = self.ctx
        assert ctx is not None
        try:
            role = role_of(link, self.host_data.provider_key)
        except LinkError as exc:
            log.warning("ignoring link put: %s", exc)
            return
        kind = ctx.links.classify(link)
        desc = (
            f"{link.source_id} -> {link.target} "
            f"({link.wit_namespace}:{link.wit_package}, {link.name})"
        )
        if kind is PutKind.DUPLICATE:
            log.info("ignoring duplicate link put %s", desc)
            return
        try:
            config = self._link_config(link, role)
        except (SecretError, NkeyError) as exc:
            log.error("link %s rejected: its secrets could not be opened: %s", desc, exc)
            return
        if kind is PutKind.UPDATE:
            old = ctx.links.get(link.identity)
            assert old is not None
            try:
                old_config = self._link_config(old, role)
                if role is Role.SOURCE:
                    await self.provider.on_link_updated_as_source(old_config, config)
                else:
                    await self.provider.on_link_updated_as_target(old_config, config)
            except Exception as exc:
                log.warning("link %s update failed (the previous link stays): %s", desc, exc)
                return
            ctx.links.store(link)
            log.info("link %s updated", desc)
            return
        try:
            if role is Role.SOURCE:
                await self.provider.on_link_as_source(config)
            else:
                await self.provider.on_link_as_target(config)
        except LinkNotInEffect as exc:
            # Kept for when its config is completed, but nothing was applied: one error
            # line, and no "applied" line after it.
            ctx.links.store(link)
            log.error("link %s kept, not in effect: %s", desc, exc)
            return
        except Exception as exc:
            log.warning("link %s failed: %s", desc, exc)
            return
        ctx.links.store(link)
        log.info("link %s applied as %s", desc, role.value)

    async def _call_delete_hook(self, link: InterfaceLinkDefinition, role: Role) -> None:
        # Secrets are not needed to tear down (and a delete carries none).
        config = self._link_config(link, role, with_secrets=False)
        try:
            if role is Role.SOURCE:
                await self.provider.on_link_deleted_as_source(config)
            else:
                await self.provider.on_link_deleted_as_target(config)
        except Exception:
            log.exception("link delete hook failed for %s -> %s", link.source_id, link.target)

    async def _apply_del(self, link: InterfaceLinkDefinition) -> None:
        ctx = self.ctx
        assert ctx is not None
        try:
            role = role_of(link, self.host_data.provider_key)
        except LinkError as exc:
            log.warning("ignoring link delete: %s", exc)
            return
        stored = ctx.links.remove(link.identity)
        if stored is None:
            log.info(
                "link delete for unknown link %s -> %s (%s): nothing to do",
                link.source_id,
                link.target,
                link.name,
            )
            return
        await self._call_delete_hook(stored, role)
        log.info("link %s -> %s (%s) deleted", link.source_id, link.target, link.name)

    async def _apply_config(self, data: bytes) -> None:
        ctx = self.ctx
        assert ctx is not None
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise TypeError("not a JSON object")
            config = {str(k): str(v) for k, v in obj.items()}
        except (ValueError, TypeError) as exc:
            log.error("ignoring malformed config update: %s", exc)
            return
        if config == ctx.config:
            log.debug("config update identical to current config: ignored")
            return
        ctx.config = config
        log.info("provider config updated (%d key(s))", len(config))
        await self.provider.on_config_update(dict(config))

    async def _on_health(self, msg: Msg) -> None:
        if msg.reply:
            self._spawn(self._answer_health(msg))

    async def _answer_health(self, msg: Msg) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), READY_WAIT)
            response = await asyncio.wait_for(self.provider.health(), HEALTH_HOOK_TIMEOUT)
        except TimeoutError:
            response = HealthCheckResponse(False, "health check timed out")
        except Exception as exc:
            response = HealthCheckResponse(False, f"health check failed: {exc}")
        assert self.ctx is not None
        with contextlib.suppress(Exception):
            await self.ctx.nc.publish(msg.reply, json.dumps(response.to_json()).encode())

    async def _on_shutdown(self, msg: Msg) -> None:
        if not msg.reply:
            log.debug("ignoring shutdown request without reply subject")
            return
        try:
            host_id = json.loads(msg.data).get("host_id", "")
        except (ValueError, AttributeError):
            host_id = ""
        if host_id != self.host_data.host_id:
            log.debug("ignoring shutdown addressed to host %r", host_id)
            return
        log.info("shutdown requested by host %s", host_id)
        self._spawn(self.stop(reply_to=msg.reply))

    # --- stop ---------------------------------------------------------------------------

    async def stop(self, reply_to: str | None = None) -> None:
        """Clean up (provider hook first), reply to the host if asked, close NATS."""
        if self._stopping:
            return
        self._stopping = True
        ctx = self.ctx
        try:
            try:
                if self._provider is not None:
                    await asyncio.wait_for(self._provider.shutdown(), SHUTDOWN_HOOK_BUDGET)
            except TimeoutError:
                log.warning("provider shutdown hook exceeded %.0f ms", SHUTDOWN_HOOK_BUDGET * 1000)
            except Exception:
                log.exception("provider shutdown hook failed")
            if ctx is not None:
                if reply_to:
                    with contextlib.suppress(Exception):
                        await ctx.nc.publish(reply_to, SHUTDOWN_REPLY)
                await ctx.transport.stop_serving()
                ended = await ctx.transport.end_served_calls()
                if ended:
                    log.info("%d call(s) still being served ended without a result", ended)
                for sub in self._subs:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                ctx.telemetry.shutdown(timeout_ms=50)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.nc.flush(), 0.1)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.nc.close(), 0.2)
        finally:
            for task in list(self._tasks):
                if task is not asyncio.current_task():
                    task.cancel()
            self.stopped.set()

    async def run(self) -> None:
        """Start, then run until a shutdown request, SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self.start()
        await self.stopped.wait()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down", sig.name)
        self._spawn(self.stop())
