"""Handing a session's messages to its endpoint's component, and what a failure becomes.

"Call" is toward the component everywhere in the server side (`Session.deliver` and
`Outbound.send` go toward the client). The session's inbox calls `ComponentCalls.call` for
each message its client sent, in order; the answer to the client (an ack, or an error
frame whose code `inbound.delivery_failure` chooses) goes out from here.

A client's message to a component (`ComponentHandler`) is the hot path: the call is
started here and its outcome handled in the NATS callback that completes it, with no task,
future or timer of its own. Session events are paced (`Endpoint.event_slots`) and Python
handlers awaited: those run as a task the inbox awaits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wasmcloud_provider_sdk import (
    BrokerMessage,
    CodecError,
    Err,
    InvocationTimeout,
    Ok,
    TransportError,
)

from . import frames, inbound
from .component_handler import ComponentHandler
from .inbox import Done
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
        """Start the session's writer, and the delivery of its messages to `endpoint`'s
        component."""
        session.start(lambda s, m, i, done: self.call(endpoint, s, m, i, done))

    def call(
        self,
        endpoint: Endpoint,
        session: Session,
        msg: BrokerMessage,
        frame_id: frames.FrameId | None,
        done: Done,
    ) -> asyncio.Future[None] | None:
        """Call the component's handler with `msg` from `session`'s client and answer the
        client (ack for a message with an id, error frame on Err or failure; nothing for
        events). Calls `done()` when finished, or returns what to await instead."""
        handler = endpoint.handler
        if handler is None:
            done()
            return None
        if (
            type(handler) is ComponentHandler
            and handler.startable
            and not msg.subject.startswith(frames.RESERVED_PREFIX)
        ):
            timeout = endpoint.settings.handler_timeout
            started = time.monotonic()

            def outcome(result: Any, error: BaseException | None) -> None:
                try:
                    if error is None:
                        self.metrics.handler_latency.observe(time.monotonic() - started)
                        self._answer(endpoint, session, msg, frame_id, result, False)
                    else:
                        self._failed(endpoint, session, frame_id, error, False)
                finally:
                    done()

            try:
                handler.start(msg, timeout, outcome)
            except TransportError as exc:  # not connected: nothing was sent
                self._failed(endpoint, session, frame_id, exc, False)
                done()
            return None
        return asyncio.ensure_future(self._awaited(endpoint, session, msg, frame_id))

    async def _awaited(
        self,
        endpoint: Endpoint,
        session: Session,
        msg: BrokerMessage,
        frame_id: frames.FrameId | None,
    ) -> None:
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
                async with asyncio.timeout(endpoint.settings.handler_timeout):
                    result = await handler(msg)
            self.metrics.handler_latency.observe(time.monotonic() - started)
        except (TransportError, CodecError, TimeoutError) as exc:
            self._failed(endpoint, session, frame_id, exc, is_event)
            return
        self._answer(endpoint, session, msg, frame_id, result, is_event)

    def _answer(
        self,
        endpoint: Endpoint,
        session: Session,
        msg: BrokerMessage,
        frame_id: frames.FrameId | None,
        result: Ok | Err,
        is_event: bool,
    ) -> None:
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

    def _failed(
        self,
        endpoint: Endpoint,
        session: Session,
        frame_id: frames.FrameId | None,
        exc: BaseException,
        is_event: bool,
    ) -> None:
        timeout = endpoint.settings.handler_timeout
        if isinstance(exc, InvocationTimeout):
            exc = TimeoutError()  # the call's own bound is HANDLER_TIMEOUT_SEC here
        if not isinstance(exc, Exception):
            raise exc
        code, text = inbound.delivery_failure(exc, timeout)
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
