"""A stand-in component for the dev mode and the tests: an echo handler over real wRPC.

It serves `wasmcloud:messaging/handler@0.2.0.handle-message` for a component id, the way a
host serves a component, and answers each message by calling the provider's
`consumer.publish` with `subject = reply-to` (so the sender's session gets the echo). A
message whose body starts with `broadcast:` is published to the broadcast subject instead.
Session events (`ws.session.*`) are only counted. With `tick_subject`, it also publishes
`tick <n>` there every `tick_interval` seconds (the dev mode's demo topic), the way a
component would publish to a topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NatsClient

from wasmcloud_provider_sdk import (
    BrokerMessage,
    Err,
    InvocationContext,
    Ok,
    TransportError,
    WrpcTransport,
)
from wasmcloud_provider_sdk.messaging import (
    CONSUMER_INSTANCE,
    HANDLER_INSTANCE,
    decode_broker_message,
    decode_unit_result,
    encode_broker_message,
    encode_unit_result,
)

log = logging.getLogger(__name__)

BROADCAST_PREFIX = b"broadcast:"


class EchoComponent:
    """Echoes every message back through the provider's consumer interface."""

    def __init__(
        self,
        nc: NatsClient,
        lattice: str,
        component_id: str,
        provider_id: str,
        *,
        tick_subject: str | None = None,
        tick_interval: float = 5.0,
    ) -> None:
        self.transport = WrpcTransport(nc)
        self.lattice = lattice
        self.component_id = component_id
        self.provider_id = provider_id
        self.handled = 0
        self.session_events = 0
        self.tick_subject = tick_subject
        self.tick_interval = tick_interval
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve `handle-message` under `{lattice}.{component_id}`."""
        await self.transport.start()
        await self.transport.serve(
            f"{self.lattice}.{self.component_id}",
            HANDLER_INSTANCE,
            "handle-message",
            decode_broker_message,
            self._handle,
        )
        if self.tick_subject is not None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(self.tick_subject))

    async def _tick(self, subject: str) -> None:
        count = 0
        while True:
            await asyncio.sleep(self.tick_interval)  # a clock, not a synchronisation
            count += 1
            await self.publish(BrokerMessage(subject, f"tick {count}".encode()))

    async def _handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        self.handled += 1
        if msg.subject.startswith("ws.session."):
            self.session_events += 1
            return encode_unit_result(Ok())
        if msg.body.startswith(BROADCAST_PREFIX):
            out = BrokerMessage("broadcast", msg.body[len(BROADCAST_PREFIX) :].lstrip())
        elif msg.reply_to:
            out = BrokerMessage(msg.reply_to, msg.body)
        else:
            return encode_unit_result(Ok())
        return encode_unit_result(await self.publish(out))

    async def publish(self, msg: BrokerMessage) -> Ok | Err:
        """Call the provider's `consumer.publish` as this component (over a link `default`)."""
        try:
            result: Ok | Err = await self.transport.invoke(
                f"{self.lattice}.{self.provider_id}",
                CONSUMER_INSTANCE,
                "publish",
                encode_broker_message(msg),
                decode_unit_result,
                headers={"source-id": self.component_id, "link-name": "default"},
            )
        except TransportError as exc:
            log.warning("echo publish failed: %s", exc)
            return Err(f"echo publish failed: {exc}")
        if isinstance(result, Err):
            log.info("echo publish to %s refused: %s", msg.subject, result.message)
        return result

    async def stop(self) -> None:
        """Stop serving (and ticking)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.transport.stop_serving()
