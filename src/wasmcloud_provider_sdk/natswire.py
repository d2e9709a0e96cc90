"""`NatsWire`: a minimal NATS client for the wRPC hot path, on `asyncio.Protocol`.

It implements `wire.Wire`: `publish` appends to one pending buffer written once per loop
iteration (or at once past `WireOptions.write_threshold`), and each received message is
handed by the parser (`natsproto`) straight to its subscription's plain callback. No task,
queue, future or timer per message. What it does not do, nats-py (kept for everything else)
does: JetStream, request/response helpers, drain, server discovery beyond the given list.

Connection life cycle (one `_Link` per socket)::

    connecting --INFO, [TLS], CONNECT+PING, PONG--> connected --lost--> reconnecting
    reconnecting --handshake ok--> connected (every SUB sent again)   any --close()--> closed

While not connected, `publish` and `flush` raise `LatticeUnavailable`; `subscribe` and
`unsubscribe` only change the table that the next handshake sends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from .errors import (
    LatticeConnectError,
    LatticeUnavailable,
    PayloadTooLarge,
    ServerRefused,
    WriteBufferFull,
)
from .natsproto import (
    PING,
    PONG,
    NatsParser,
    NatsProtocolError,
    ServerAddress,
    encode_connect,
    encode_headers,
    encode_pub,
    encode_sub,
    encode_unsub,
    parse_server_url,
)
from .wire import MsgCallback

log = logging.getLogger(__name__)

#: Sent in CONNECT (`lang`, `version`), shown by the server's monitoring endpoints.
LANG = "python-natswire"
VERSION = "1.0"
#: What nats-server uses until its INFO says otherwise.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: Read-only header mappings whose encoded block a connection keeps.
HEADER_BLOCKS = 64

Listener = Callable[[], None]
#: What one failed connection attempt raises besides OSError and TimeoutError.
AttemptErrors: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    LatticeUnavailable,
    ServerRefused,
    NatsProtocolError,
)


@dataclass(frozen=True)
class WireOptions:
    """How to connect; the defaults are nats-py's where it has the same option."""

    #: The connection's name in the server's monitoring (`connz`).
    name: str = ""
    #: User JWT and nonce signature (base64 of the Ed25519 signature by the user's seed),
    #: for decentralized auth; `lattice_connect.lattice_credentials` builds both.
    user_jwt_cb: Callable[[], bytes] | None = None
    signature_cb: Callable[[str], bytes] | None = None
    #: TLS context; used for `tls://` URLs and servers whose INFO has `tls_required` (a
    #: default context is made when None). `tls_handshake_first` for servers that expect
    #: the TLS handshake before INFO (nats-server's `handshake_first`).
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    tls_handshake_first: bool = False
    #: Seconds one attempt may take (TCP, TLS and the NATS handshake).
    connect_timeout: float = 2.0
    #: Rounds over the server list at the first connect, `connect_retry_wait` s apart.
    connect_attempts: int = 1
    connect_retry_wait: float = 1.0
    #: A PING every `ping_interval` s; the connection is lost when this many are unanswered.
    ping_interval: float = 20.0
    max_outstanding_pings: int = 2
    #: Backoff between reconnect attempts grows from 50 ms up to this; -1 attempts: forever.
    reconnect_wait: float = 2.0
    max_reconnect_attempts: int = -1
    #: Pending bytes written at once instead of at the end of the loop iteration.
    write_threshold: int = 64 * 1024
    #: Pending bytes (while the socket does not take them) after which publish raises.
    max_pending: int = 64 * 1024 * 1024


class _Link(asyncio.Protocol):
    """One socket: parses what arrives, answers PINGs, matches PONGs to their waiters."""

    def __init__(self, wire: NatsWire, loop: asyncio.AbstractEventLoop) -> None:
        self.wire = wire
        self.parser = NatsParser(wire._callbacks, self)
        self.transport: asyncio.Transport | None = None
        self.info: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        # one entry per PING sent: a flush's or the handshake's future, None for liveness
        self.pongs: collections.deque[asyncio.Future[None] | None] = collections.deque()
        self.outstanding = 0

    def write(self, data: bytes | bytearray) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except NatsProtocolError as exc:
            log.warning("NATS protocol error, dropping the connection: %s", exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        gone = LatticeUnavailable("the NATS connection was lost")
        _fail(self.info, gone)
        while self.pongs:
            _fail(self.pongs.popleft(), gone)
        if not self.lost.done():
            self.lost.set_result(None)
        self.wire._link_lost(self, exc)

    def pause_writing(self) -> None:
        self.wire._set_paused(self, True)

    def resume_writing(self) -> None:
        self.wire._set_paused(self, False)

    # ControlHandler
    def on_info(self, info: dict[str, Any]) -> None:
        if not self.info.done():
            self.info.set_result(info)
        else:
            self.wire._update_info(info)

    def on_ping(self) -> None:
        self.write(PONG)

    def on_pong(self) -> None:
        self.outstanding = 0
        if self.pongs:
            waiter = self.pongs.popleft()
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_err(self, text: str) -> None:
        if self.pongs and self.pongs[0] is not None and self.wire._link is not self:
            _fail(self.pongs.popleft(), ServerRefused(text))  # the handshake's PING
        else:
            log.warning("NATS server error: %s", text)

    def on_callback_error(self, subject: str, exc: Exception) -> None:
        log.error("callback for a message on %s failed", subject, exc_info=exc)


def _fail(future: asyncio.Future[Any] | None, exc: Exception) -> None:
    if future is not None and not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: a failure nobody waits for is not an error to log


class NatsWire:
    """A NATS connection for the wRPC hot path (`wire.Wire`); make one with `connect`."""

    def __init__(
        self,
        servers: Sequence[ServerAddress],
        options: WireOptions,
        on_disconnected: Sequence[Listener] = (),
        on_reconnected: Sequence[Listener] = (),
    ) -> None:
        """Not connected yet: use `NatsWire.connect`. The listener sequences are kept, not
        copied (they may be filled after this returns) and called in order, synchronously."""
        if not servers:
            raise ValueError("no NATS server given")
        self._servers = list(servers)
        self._options = options
        self._on_disconnected = on_disconnected
        self._on_reconnected = on_reconnected
        self._loop = asyncio.get_running_loop()
        self._callbacks: dict[int, MsgCallback] = {}
        self._subs: dict[int, tuple[str, str]] = {}
        self._next_sid = 0
        self._link: _Link | None = None  # set while connected
        self._pending = bytearray()
        self._max_pending = options.max_pending  # read on every publish
        self._blocks: dict[int, tuple[Mapping[str, str], bytes]] = {}  # see `publish`
        self._write_threshold = options.write_threshold
        self._armed = False
        self._paused = False
        self._max_payload = DEFAULT_MAX_PAYLOAD
        self._ping_timer: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str],
        options: WireOptions | None = None,
        *,
        on_disconnected: Sequence[Listener] = (),
        on_reconnected: Sequence[Listener] = (),
    ) -> NatsWire:
        """Connect to the first server of `servers` (URLs, or one comma-separated string)
        that answers; raises `LatticeConnectError` after `options.connect_attempts` rounds
        (the message says why the last attempt failed), `ValueError` for a bad URL."""
        urls = servers.split(",") if isinstance(servers, str) else list(servers)
        wire = cls(
            [parse_server_url(u.strip()) for u in urls],
            options or WireOptions(),
            on_disconnected,
            on_reconnected,
        )
        opts = wire._options
        started = time.monotonic()
        last: BaseException | None = None
        tries = 0
        for round_ in range(max(opts.connect_attempts, 1)):
            if round_:
                await asyncio.sleep(opts.connect_retry_wait)
            for server in wire._servers:
                tries += 1
                try:
                    await wire._open(server)
                    return wire
                except AttemptErrors as exc:
                    last = exc
                    log.debug("NATS at %s, attempt %d: %s", server, tries, exc)
        raise LatticeConnectError(
            str(wire._servers[0]),
            describe_connect_error(last, opts.connect_timeout),
            tries,
            time.monotonic() - started,
        )

    @property
    def max_payload(self) -> int:
        """The server's max_payload (header block included)."""
        return self._max_payload

    @property
    def is_connected(self) -> bool:
        """True while connected (False while reconnecting or after close)."""
        return self._link is not None

    def new_inbox(self) -> str:
        """`_INBOX.` and 22 random URL-safe characters (128 bits from `secrets`)."""
        return "_INBOX." + secrets.token_urlsafe(16)

    def publish(
        self,
        subject: str,
        data: bytes,
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one message (written at the end of this loop iteration). Raises
        `LatticeUnavailable` when not connected, `PayloadTooLarge` past max_payload,
        `WriteBufferFull` when `max_pending` bytes wait for a socket that takes none."""
        if self._link is None:
            raise LatticeUnavailable("the lattice NATS connection is down (reconnecting)")
        pending = self._pending
        before = len(pending)
        if headers is not None and type(headers) is MappingProxyType:
            # Read-only headers (e.g. a call's fixed `source-id`/`target-id`): encoded once.
            kept = self._blocks.get(id(headers))
            if kept is None or kept[0] is not headers:
                kept = (headers, encode_headers(headers))
                if len(self._blocks) >= HEADER_BLOCKS:
                    self._blocks.clear()  # mappings used once cannot fill it for good
                self._blocks[id(headers)] = kept
            size = encode_pub(pending, subject, reply, data, kept[1])
        else:
            size = encode_pub(pending, subject, reply, data, headers)
        after = len(pending)
        if size > self._max_payload or after > self._max_pending:
            del pending[before:]
            if size > self._max_payload:
                raise PayloadTooLarge(f"{size} bytes > max_payload {self._max_payload}")
            raise WriteBufferFull(f"{before} bytes wait for the NATS socket")
        if after >= self._write_threshold:
            self._write_now()
        elif not self._armed:
            self._armed = True
            self._loop.call_soon(self._write_soon)

    def subscribe(self, subject: str, callback: MsgCallback, queue: str = "") -> int:
        """Subscribe (the SUB is queued like a publish; while reconnecting it is sent by the
        handshake); returns the subscription id."""
        self._next_sid += 1
        sid = self._next_sid
        self._callbacks[sid] = callback
        self._subs[sid] = (subject, queue)
        if self._link is not None:
            self._queue(encode_sub(subject, queue, sid))
        return sid

    def unsubscribe(self, sid: int) -> None:
        """End a subscription: no callback for it once this returns (unknown sids: no-op)."""
        self._callbacks.pop(sid, None)
        if self._subs.pop(sid, None) is not None and self._link is not None:
            self._queue(encode_unsub(sid))

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the server has processed everything queued so far (PING/PONG); raises
        `LatticeUnavailable` when not connected or lost meanwhile, `TimeoutError`."""
        link = self._link
        if link is None:
            raise LatticeUnavailable("the lattice NATS connection is down (reconnecting)")
        pong: asyncio.Future[None] = self._loop.create_future()
        link.pongs.append(pong)
        self._pending += PING
        self._write_now()
        await asyncio.wait_for(pong, timeout)

    async def close(self, timeout: float = 2.0) -> None:
        """Write what is pending, close the socket, stop reconnecting (idempotent)."""
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        link = self._link
        if link is None:
            return
        self._write_now()
        assert link.transport is not None
        link.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(link.lost), timeout)
        except TimeoutError:
            link.abort()

    # internals
    def _queue(self, data: bytes) -> None:
        self._pending += data
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        self._armed = False
        self._write_now()

    def _write_now(self) -> None:
        if self._pending and self._link is not None and not self._paused:
            data, self._pending = self._pending, bytearray()
            self._link.write(data)  # a fresh buffer: the transport may keep a view of data

    def _set_paused(self, link: _Link, paused: bool) -> None:
        if link is self._link:
            self._paused = paused
            if not paused:
                self._write_now()

    def _update_info(self, info: dict[str, Any]) -> None:
        self._max_payload = int(info.get("max_payload", self._max_payload))

    def _tls_context(self) -> ssl.SSLContext:
        return self._options.tls or ssl.create_default_context()

    async def _open(self, server: ServerAddress) -> None:
        """One attempt: TCP, INFO, [TLS], CONNECT+PING, PONG; then every SUB is sent."""
        opts = self._options
        link = _Link(self, self._loop)
        hostname = opts.tls_hostname or server.host
        first = opts.tls_handshake_first
        try:
            async with asyncio.timeout(opts.connect_timeout):
                await self._loop.create_connection(
                    lambda: link,
                    server.host,
                    server.port,
                    ssl=self._tls_context() if first else None,
                    server_hostname=hostname if first else None,
                )
                info = await link.info
                tls = server.tls or opts.tls is not None or bool(info.get("tls_required"))
                if tls and not first:
                    assert link.transport is not None
                    link.transport = await self._loop.start_tls(
                        link.transport, link, self._tls_context(), server_hostname=hostname
                    )
                    if link.transport is None:
                        raise ConnectionError("the TLS handshake did not complete")
                ready: asyncio.Future[None] = self._loop.create_future()
                link.pongs.append(ready)
                link.write(encode_connect(self._connect_options(server, info, tls)) + PING)
                await ready
        except BaseException:
            link.abort()
            raise
        self._update_info(info)
        self._link = link
        self._paused = False
        self._pending = bytearray()
        subs = [encode_sub(subject, queue, sid) for sid, (subject, queue) in self._subs.items()]
        if subs:
            link.write(b"".join(subs))
        self._arm_ping()

    def _connect_options(
        self, server: ServerAddress, info: dict[str, Any], tls: bool
    ) -> dict[str, Any]:
        opts = self._options
        connect: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": tls,
            "name": opts.name,
            "lang": LANG,
            "version": VERSION,
            "protocol": 1,
            "headers": True,
            "no_responders": True,
        }
        if opts.user_jwt_cb is not None:
            connect["jwt"] = opts.user_jwt_cb().decode()
        if opts.signature_cb is not None and "nonce" in info:
            connect["sig"] = opts.signature_cb(info["nonce"]).decode()
        if server.user:
            connect["user"] = server.user
            connect["pass"] = server.password
        elif server.token:
            connect["auth_token"] = server.token
        return connect

    def _arm_ping(self) -> None:
        self._ping_timer = self._loop.call_later(self._options.ping_interval, self._ping)

    def _ping(self) -> None:
        link = self._link
        if link is None:
            return
        if link.outstanding >= self._options.max_outstanding_pings:
            log.warning("NATS server did not answer %d PINGs: connection lost", link.outstanding)
            link.abort()
            return
        link.outstanding += 1
        link.pongs.append(None)
        self._pending += PING
        self._write_now()
        self._arm_ping()

    def _link_lost(self, link: _Link, exc: Exception | None) -> None:
        if link is not self._link:
            return  # a handshake that failed: `_open` raises
        self._link = None
        self._pending = bytearray()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._closing:
            return
        log.warning("disconnected from NATS (%s): reconnecting", exc or "closed by the server")
        _call_all(self._on_disconnected, "disconnect")
        self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        opts = self._options
        attempt = 0
        while not self._closing:
            server = self._servers[attempt % len(self._servers)]
            try:
                await self._open(server)
            except AttemptErrors as exc:
                attempt += 1
                if 0 <= opts.max_reconnect_attempts < attempt:
                    log.error("NATS reconnect gave up after %d attempts: %s", attempt, exc)
                    self._closing = True
                    return
                delay = min(opts.reconnect_wait, 0.05 * 2 ** min(attempt, 16))
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))  # backoff, not a sync
                continue
            log.info("reconnected to NATS at %s", server)
            self._reconnecting = None
            _call_all(self._on_reconnected, "reconnect")
            return


def _call_all(listeners: Sequence[Listener], what: str) -> None:
    for listener in listeners:
        try:
            listener()
        except Exception:
            log.exception("%s listener failed", what)


def describe_connect_error(exc: BaseException | None, timeout: float) -> str:
    """Why one attempt to reach a NATS server failed, in words."""
    if exc is None:
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"no NATS answer within {timeout:g} s"
    if isinstance(exc, ServerRefused):
        return f"the server refused: {exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
