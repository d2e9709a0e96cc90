"""The server endpoints of this instance and the listeners they are served on.

An endpoint (session_table.py) belongs to one (component, link name) pair; a `Listener` is
one listening socket, shared by path among the endpoints on its address. `EndpointRegistry`
adds, replaces and removes endpoints (binding and closing listeners as needed) and shuts
everything down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .closecodes import CloseCode
from .connection import Connections
from .errors import EndpointConflict
from .lifecycle import SessionState
from .listener import Listener as GenericListener
from .persistence import SessionPersistence
from .session_table import Endpoint, Handler, PairKey, SessionTable, wait_closed
from .sessions import Session
from .settings import ServerSettings
from .wsadapter import abort, is_closing

log = logging.getLogger(__name__)

#: How long queued frames get to go out before sessions are closed (shutdown, removal).
SHUTDOWN_FLUSH = 0.06
#: How long a client gets to answer our close at shutdown before its socket is aborted.
SHUTDOWN_CLOSE_WAIT = 0.06
#: How long pending store writes get at shutdown.
SHUTDOWN_STORE_WAIT = 0.04

#: The listeners of this instance's endpoints.
Listener = GenericListener[Endpoint]


class EndpointRegistry:
    """Every server endpoint and listener of this instance."""

    def __init__(
        self, tables: SessionTable, connections: Connections, persistence: SessionPersistence
    ) -> None:
        self.tables = tables
        #: Serves what the listeners accept.
        self.connections = connections
        self.persistence = persistence
        self.endpoints = tables.endpoints
        self.listeners: dict[tuple[str, int], Listener] = {}
        #: Awaited before a new shared (`REUSE_PORT`) listener binds: worker 0 of several
        #: worker processes binds once the others listen too (the SDK's
        #: `ProviderContext.workers_ready`).
        self.listen_gate: Callable[[], Awaitable[None]] | None = None

    async def add_endpoint(
        self, key: PairKey, settings: ServerSettings, handler: Handler | None
    ) -> Endpoint:
        """Create (or replace) the endpoint of `key`; raises EndpointConflict or OSError.

        Everything that can fail (address conflict, binding the port) is done before the old
        endpoint is touched, so a failed update leaves the working endpoint as it was.
        """
        if self.listen_gate is not None and settings.reuse_port:
            # Before anything is read: it may wait. Without REUSE_PORT only one process can
            # bind the address; waiting would hand it to a worker instead of worker 0.
            await self.listen_gate()
        existing = self.endpoints.get(key)
        if existing is not None and existing.settings == settings:
            existing.handler = handler
            return existing
        listener = self.listeners.get(settings.address)
        if (
            listener is not None
            and listener.tls != settings.tls
            and any(e is not existing for e in listener.endpoints.values())
        ):
            raise EndpointConflict(
                f"{settings.host}:{settings.port} is shared with other endpoints that use "
                "different TLS settings (TLS_CERT/TLS_KEY must match on one address)"
            )
        if listener is not None and listener.tls != settings.tls:
            # The only endpoint on this address changes its TLS: rebind below.
            await self.remove_endpoint(key, CloseCode.GOING_AWAY, "endpoint reconfigured")
            existing = None
            listener = self.listeners.get(settings.address)
        if listener is not None:
            other = listener.endpoints.get(settings.path)
            if other is not None and other is not existing:
                raise EndpointConflict(
                    f"{settings.host}:{settings.port}{settings.path} is already served for "
                    f"component {other.key[0]!r} (link {other.key[1]!r})"
                )
        else:
            listener = Listener(self.connections, settings.host, settings.port)
            await listener.start(settings.tls, reuse_port=settings.reuse_port)
            self.listeners[settings.address] = listener
        endpoint = Endpoint(key, settings, handler)
        if await self.persistence.offer(settings, f"{key[0]} (link {key[1]})"):
            endpoint.persist = True
            self.persistence.start_refresh(self.tables.sessions)
        # The new endpoint takes the path before the old one lets go of its sessions, so a
        # client that reconnects during an update never finds the path unserved.
        if existing is not None:
            self.endpoints.pop(key, None)
            self._unmap(existing)
        listener.endpoints[settings.path] = endpoint
        self.endpoints[key] = endpoint
        if existing is not None:
            await self._retire(existing, CloseCode.GOING_AWAY, "endpoint reconfigured", listener)
        log.info(
            "server endpoint ws://%s:%d%s for component %s (link %s)",
            settings.host,
            listener.bound_port,
            settings.path,
            key[0],
            key[1],
        )
        return endpoint

    def set_handler(self, key: PairKey, handler: Handler | None) -> None:
        """Attach or detach the component handler of an endpoint."""
        endpoint = self.endpoints.get(key)
        if endpoint is not None:
            endpoint.handler = handler

    async def remove_endpoint(
        self, key: PairKey, code: int, reason: str, keep: Listener | None = None
    ) -> None:
        """Close the endpoint's sessions with `code` and stop serving its path (its listener
        closes with its last endpoint, unless it is `keep`)."""
        endpoint = self.endpoints.pop(key, None)
        if endpoint is None:
            return
        self._unmap(endpoint)
        await self._retire(endpoint, code, reason, keep)

    def _unmap(self, endpoint: Endpoint) -> None:
        """Stop routing new connections to `endpoint` (its path serves nothing, or another)."""
        listener = self.listeners.get(endpoint.settings.address)
        if listener is not None and listener.endpoints.get(endpoint.settings.path) is endpoint:
            del listener.endpoints[endpoint.settings.path]

    async def _retire(
        self, endpoint: Endpoint, code: int, reason: str, keep: Listener | None
    ) -> None:
        """Close the sessions of an unmapped endpoint, and its listener if nothing else is on it
        (unless it is `keep`)."""
        key = endpoint.key
        listener = self.listeners.get(endpoint.settings.address)
        sessions = list(endpoint.sessions.values())
        await self._close_sessions(sessions, code, reason)
        # Detached sessions of an endpoint that is gone cannot be resumed here: end them now
        # (a later resume starts a new session on whatever endpoint serves the path then).
        detached = [x for x in sessions if x.state is SessionState.DETACHED]
        end = self.tables.end_session
        await asyncio.gather(*(end(endpoint, x, code, reason) for x in detached))
        if listener is not None and listener is not keep and not listener.endpoints:
            del self.listeners[endpoint.settings.address]
            await listener.close()
        log.info("server endpoint of %s (link %s) removed", key[0], key[1])

    def bound_port(self, key: PairKey) -> int | None:
        """The port an endpoint actually listens on (None if it has no endpoint)."""
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            return None
        return self.listeners[endpoint.settings.address].bound_port

    @staticmethod
    async def _close_sessions(sessions: list[Session], code: int, reason: str) -> None:
        if not sessions:
            return
        await asyncio.gather(*(s.flush(SHUTDOWN_FLUSH) for s in sessions))
        for session in sessions:
            session.close(code, reason)
        await asyncio.gather(*(wait_closed(s) for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        """Graceful shutdown: stop accepting, flush, close every session with 1001 (a session
        of an endpoint that offers resume stays resumable: its state is in the store)."""
        self.tables.closing = True
        self.persistence.stop_refresh()
        listeners = list(self.listeners.values())
        for listener in listeners:
            listener.stop_accepting()
        sessions = [s for e in self.endpoints.values() for s in e.sessions.values()]
        for session in sessions:
            session.resumable = True
        attached = [s for s in sessions if s.state is SessionState.OPEN]
        if attached:
            await asyncio.gather(*(s.flush(SHUTDOWN_FLUSH) for s in attached))
            for session in attached:
                session.close(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.wait(
                [asyncio.ensure_future(wait_closed(s, SHUTDOWN_CLOSE_WAIT)) for s in attached]
            )
        for session in sessions:
            if session.expiry is not None:
                session.expiry.cancel()
            session.cancel_tasks()
            ws = session.ws
            if ws is not None and not is_closing(ws):
                abort(ws)  # it did not answer our close in time
        await self.persistence.flush(SHUTDOWN_STORE_WAIT)
        self.endpoints.clear()
        self.listeners.clear()
        await asyncio.gather(*(listener.close() for listener in listeners))
