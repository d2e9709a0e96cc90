"""The provider runtime: one provider's life with its host, wiring the parts that do each job.

docs/PROTOCOL.md, sections 2 and 3. Start-up follows the Rust SDK's order (section 2.3):
connect, subscribe every control subject and prove the subscriptions are live, `init`, apply
the initial links, serve the exports, prove those live too, and only then answer health
checks. Link puts, link deletes and config updates go through one queue and are applied in
arrival order by one worker, so a slow hook delays later link changes but never health
checks or invocations.

The parts: `lattice_connect` (the NATS connection), `control` (subjects and messages,
sans-I/O), `control_subs` (the subscriptions, handing messages off), `link_ops` (the ordered
op queue and the link hooks), `missed_links` (links put before we subscribed), `wrpc` (the
exports and calls). `ProviderRuntime` owns the start and stop sequence, health answers and
the tasks it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from .bindings import HandlerClient
from .context import ProviderContext as ProviderContext
from .control import ControlSubjects as ControlSubjects
from .control import Op, OpKind
from .control_subs import ControlSubscriptions, prove_subscriptions_live
from .hostdata import HostData
from .lattice_connect import connect_lattice as connect_lattice
from .lattice_connect import connect_lattice_wire
from .link_ops import LinkApplier, apply_in_order
from .links import LinkTable
from .missed_links import MissedLinks
from .nkeys import XKey
from .otel import Telemetry, setup_telemetry
from .provider import HealthCheckResponse, Provider
from .workers import ParentLink, WorkerSupervisor
from .wrpc import WrpcTransport

log = logging.getLogger(__name__)

SHUTDOWN_REPLY = b"shutting down"
#: Time the provider's own `shutdown` hook may take before the host's 300 ms budget is at risk.
SHUTDOWN_HOOK_BUDGET = 0.2
HEALTH_HOOK_TIMEOUT = 2.0
READY_WAIT = 30.0
#: After its own shutdown, how long worker 0 waits for the other workers (asked to stop
#: when the shutdown began) before killing them: within the host's shutdown budget.
WORKERS_STOP_BUDGET = 0.5


class ProviderRuntime:
    """Runs one `Provider` under a host (or a test harness playing the host)."""

    def __init__(
        self,
        provider: Provider | Callable[[], Provider],
        host_data: HostData,
        *,
        name: str = "python-provider",
        workers: WorkerSupervisor | None = None,
        parent_fd: int | None = None,
    ):
        """`workers`: worker 0's supervisor of the other worker processes (started once
        ready, stopped with it); `parent_fd`: a worker's stdin, whose EOF (worker 0 gone)
        stops it."""
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
        self._ops: asyncio.Queue[Op] = asyncio.Queue()
        self._control: ControlSubscriptions | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._provider_xkey: XKey | None = None
        self._host_xkey: XKey | None = None
        self.ctx: ProviderContext | None = None
        self.telemetry = Telemetry()
        self.workers = workers
        #: A worker's link to worker 0 (its stdin and ready pipe), None in worker 0.
        self._parent = ParentLink(parent_fd, host_data.ready_fd) if parent_fd is not None else None
        self._starting: asyncio.Task[ProviderContext] | None = None

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
        # Two connections: nats-py for the control subjects and everything else, our own
        # minimal client (natswire) for the wRPC hot path; opened at the same time.
        wire_connect = asyncio.ensure_future(
            connect_lattice_wire(hd, f"{self.name}-wrpc", on_disconnected=on_disconnect)
        )
        try:
            nc = await connect_lattice(hd, self.name, [])
        except BaseException:
            wire_connect.cancel()
            raise
        # The control subjects first, before anything else waits: a link put published
        # before they are live is lost on the wire (puts arriving meanwhile are queued).
        self._control = ControlSubscriptions(
            nc,
            ControlSubjects.for_provider(hd.lattice, hd.provider_key, link_put_id),
            self._ops,
            hd.host_id,
            on_health=self._on_health,
            on_shutdown=self._on_shutdown,
            answers_host=hd.worker_index == 0,
        )
        try:
            await self._control.subscribe()
            await prove_subscriptions_live(nc)
            wire = await wire_connect
        except BaseException:
            if not wire_connect.done():
                wire_connect.cancel()
            elif not wire_connect.cancelled() and wire_connect.exception() is None:
                with contextlib.suppress(Exception):
                    await wire_connect.result().close(0.1)
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        if self.workers is not None:
            # As early as the lattice is reachable: every process binds its shared listeners
            # once all have started (ctx.workers_ready), and a worker takes a second or so.
            self.workers.start()
        if self._parent is not None:
            self._parent.watch(self._on_parent_gone)
        transport = WrpcTransport(wire)
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
        if self.workers is not None:
            ctx.workers_ready = self.workers.wait_ready
        elif self._parent is not None:
            ctx.workers_ready = self._parent.ready_to_listen
        self.ctx = ctx
        await transport.start()
        if self._provider is None:
            assert self._make_provider is not None
            self._provider = self._make_provider()
        log.info(
            "provider %s connected to %s (lattice %s, instance %s, worker %d)",
            hd.provider_key,
            hd.nats_url,
            hd.lattice,
            hd.instance_id or "-",
            hd.worker_index,
        )
        await self.provider.init(ctx)
        applier = LinkApplier(
            self.provider, ctx, provider_xkey=self._provider_xkey, host_xkey=self._host_xkey
        )
        for link in hd.link_definitions:
            self._go_on()
            await applier.apply_put(link)
        self._go_on()
        # After the puts and deletes that reached us so far (queued meanwhile), in order.
        self._ops.put_nowait((OpKind.LATTICE, b""))
        await self.provider.serve_exports(ctx)
        await prove_subscriptions_live(nc)
        missed = MissedLinks(nc, hd.lattice, hd.provider_key, applier)
        self._spawn(apply_in_order(self._ops, applier, missed.recover))
        self.ready.set()
        log.info(
            "provider %s ready: %d link(s) applied%s",
            hd.provider_key,
            len(ctx.links),
            f" (worker {hd.worker_index})" if hd.worker_index else "",
        )
        if self._parent is not None:
            self._parent.tell_ready()  # if no shared listener asked already
        return ctx

    def _go_on(self) -> None:
        """Between the steps of `start`: stop starting once `stop` has begun (its
        cancellation of the start can be lost inside a library that catches it)."""
        if self._stopping:
            raise asyncio.CancelledError("stopped while starting")

    def _on_parent_gone(self) -> None:
        log.info("worker 0 is gone: worker %d stopping", self.host_data.worker_index)
        self._spawn(self.stop())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- health and shutdown requests ---------------------------------------------------

    def _on_health(self, reply: str) -> None:
        self._spawn(self._answer_health(reply))

    async def _answer_health(self, reply: str) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), READY_WAIT)
            response = await asyncio.wait_for(self.provider.health(), HEALTH_HOOK_TIMEOUT)
        except TimeoutError:
            response = HealthCheckResponse(False, "health check timed out")
        except Exception as exc:
            response = HealthCheckResponse(False, f"health check failed: {exc}")
        assert self.ctx is not None
        with contextlib.suppress(Exception):
            await self.ctx.nc.publish(reply, json.dumps(response.to_json()).encode())

    def _on_shutdown(self, reply: str) -> None:
        self._spawn(self.stop(reply_to=reply))

    # --- stop ---------------------------------------------------------------------------

    async def stop(self, reply_to: str | None = None) -> None:
        """Clean up (provider hook first), reply to the host if asked, close NATS."""
        if self._stopping:
            return
        self._stopping = True
        starting = self._starting
        if starting is not None and not starting.done():
            # Stopped while starting (e.g. while waiting for the workers to be ready): the
            # start goes no further, so nothing is bound or subscribed after this. Cancelled
            # before the workers are told to stop, which also releases that wait.
            starting.cancel()
        if self.workers is not None:
            self.workers.terminate()  # they stop meanwhile, each within its own budget
        if starting is not None:
            await asyncio.wait([starting])
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
                if self._control is not None:
                    await self._control.unsubscribe()
                ctx.telemetry.shutdown(timeout_ms=50)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.nc.flush(), 0.1)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.nc.close(), 0.2)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.transport.close(), 0.2)
        finally:
            if self.workers is not None:
                await self.workers.wait(WORKERS_STOP_BUDGET)
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
        self._starting = asyncio.ensure_future(self.start())
        try:
            await self._starting
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        await self.stopped.wait()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down", sig.name)
        self._spawn(self.stop())
