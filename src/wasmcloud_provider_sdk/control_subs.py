"""The control subjects on NATS: subscribe them and hand each message off, nothing more.

Link puts, link deletes and config updates go to the ordered op queue (`link_ops` applies
them); a health request with a reply subject and a shutdown request for this host go to the
runtime. No hook runs in a NATS callback, so a slow hook never stalls a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .control import ControlSubjects, Op, OpKind, shutdown_host_id

log = logging.getLogger(__name__)


async def prove_subscriptions_live(nc: NatsClient, timeout: float = 5.0) -> None:
    """Return once the server has processed every SUB sent on `nc` so far.

    nats-py's flush() can return before SUBs still in its buffer reach the server
    (docs/PROTOCOL.md 2.3). A message that makes a round trip through a subscription made
    after the others proves the server has processed every earlier SUB. Raises nats-py's
    timeout error when no round trip completes within `timeout`.
    """
    sentinel = nc.new_inbox()
    sub = await nc.subscribe(sentinel)
    try:
        await nc.publish(sentinel, b"")
        await sub.next_msg(timeout=timeout)
    finally:
        await sub.unsubscribe()


class ControlSubscriptions:
    """The five control subscriptions of one provider instance.

    `ops` receives link puts, deletes and config updates in arrival order;
    `on_health(reply)` is called for a health request, `on_shutdown(reply)` for a shutdown
    request addressed to `host_id` (both only when the request has a reply subject).
    With `answers_host` False (a worker other than worker 0: the host expects one answer)
    health and shutdown are not subscribed at all; links and config reach every worker.
    """

    def __init__(
        self,
        nc: NatsClient,
        subjects: ControlSubjects,
        ops: asyncio.Queue[Op],
        host_id: str,
        *,
        on_health: Callable[[str], None],
        on_shutdown: Callable[[str], None],
        answers_host: bool = True,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._ops = ops
        self._host_id = host_id
        self._on_health = on_health
        self._on_shutdown = on_shutdown
        self._answers_host = answers_host
        self._subs: list[Subscription] = []

    async def subscribe(self) -> None:
        """Subscribe every control subject (not yet proven live: see
        `prove_subscriptions_live`)."""
        nc, subjects = self._nc, self._subjects
        self._subs += [
            await nc.subscribe(subjects.link_put, cb=self._enqueue(OpKind.PUT)),
            await nc.subscribe(subjects.link_del, cb=self._enqueue(OpKind.DELETE)),
            await nc.subscribe(subjects.config_update, cb=self._enqueue(OpKind.CONFIG)),
        ]
        if self._answers_host:
            self._subs += [
                await nc.subscribe(subjects.health, cb=self._health),
                await nc.subscribe(subjects.shutdown, cb=self._shutdown),
            ]

    async def unsubscribe(self) -> None:
        """Unsubscribe them all (errors ignored: the connection may be gone)."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _enqueue(self, kind: OpKind) -> Callable[[Msg], Awaitable[None]]:
        ops = self._ops

        async def cb(msg: Msg) -> None:
            ops.put_nowait((kind, msg.data))

        return cb

    async def _health(self, msg: Msg) -> None:
        if msg.reply:
            self._on_health(msg.reply)

    async def _shutdown(self, msg: Msg) -> None:
        if not msg.reply:
            log.debug("ignoring shutdown request without reply subject")
            return
        host_id = shutdown_host_id(msg.data)
        if host_id != self._host_id:
            log.debug("ignoring shutdown addressed to host %r", host_id)
            return
        log.info("shutdown requested by host %s", host_id)
        self._on_shutdown(msg.reply)
