"""Handing a session's messages to its endpoint's component, and what a failure becomes.

"Call" is toward the component everywhere in the server side (`Session.deliver` and
`Outbound.send` go toward the client). The session's inbound worker calls `ComponentCalls.call`
for each message its client sent, in order; the answer to the client (an ack, or an error
frame whose code `inbound.delivery_failure` chooses) goes out from here.
"""

from __future__ import annotations

import asyncio
import logging
import time

from wasmcloud_provider_sdk import BrokerMessage, CodecError, Err, Ok, TransportError

from . import frames, inbound
from .metrics import Metrics
from .outbound import send_error
from .session_table import Endpoint
from .sessions import Session

log = logging.getLogger(__name__)


class ComponentCalls:
    """Calls an endpoint's component with what its sessions' clients sent."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def start(self, endpoint: Endpoint, session: Session) -> None:
        """Start the session's writer, and its inbound worker calling `endpoint`'s component."""
        session.start(lambda s, m, i: self.call(endpoint, s, m, i))

    async def call(
        self,
        endpoint: Endpoint,
        session: Session,
        msg: BrokerMessage,
        frame_id: frames.FrameId | None,
    ) -> None:
        """Call the component's handler with `msg` from `session`'s client; answer the client
        (ack for a message with an id, error frame on Err or failure; nothing for events)."""
        handler = endpoint.handler
        if handler is None:
            return
        is_event = msg.subject.startswith(frames.RESERVED_PREFIX)
        try:
            if is_event:
                # Paced: thousands of sessions dropping at once must not become thousands of
                # simultaneous calls that a component (one call at a time per instance)
                # cannot answer in time. Waiting for a slot does not count toward the
                # handler timeout.
                async with endpoint.event_slots:
                    started = time.monotonic()
                    async with asyncio.timeout(endpoint.settings.handler_timeout):
                        result = await handler(msg)
            else:
                started = time.monotonic()
                # asyncio.timeout, not wait_for: no extra task per message (bench --profile).
                async with asyncio.timeout(endpoint.settings.handler_timeout):
                    result = await handler(msg)
            self.metrics.handler_latency.observe(time.monotonic() - started)
        except (TransportError, CodecError, TimeoutError) as exc:
            code, text = inbound.delivery_failure(exc, endpoint.settings.handler_timeout)
            self.metrics.delivery_failures[code] += 1
            log.warning(
                "delivery to %s failed (%s): %s",
                endpoint.component_id,
                code,
                str(exc) or type(exc).__name__,
                extra=session.log_fields,
            )
            if not is_event:
                send_error(self.metrics, session, code, text, frame_id)
            return
        if isinstance(result, Ok):
            if frame_id is not None and not is_event:
                session.send(frames.encode_ack(frame_id, session.binary))
            return
        if isinstance(result, Err):
            log.info(
                "component %s returned Err for %s: %s",
                endpoint.component_id,
                msg.subject,
                result.message,
                extra=session.log_fields,
            )
            if not is_event:
                send_error(self.metrics, session, frames.HANDLER_ERROR, result.message, frame_id)
