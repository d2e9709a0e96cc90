"""Client mode: one outbound WebSocket connection per (component, link name) pair.

Life cycle (`ClientState`): CONNECTING -> CONNECTED -> (lost) WAITING -> CONNECTING ...;
a permanent error (HTTP 401/403 on upgrade, TLS verification failure) -> FAILED, no retry;
link delete -> CLOSED (close 1000).

With ENABLE_SESSION_TRACKING (the default) the connection is a session of the pair: it gets
a session id like a server session (`new_session_id`), kept across reconnects and link
updates (one logical session per link; a new id only when the link is created again), and
is listed by `list_ws_clients` with `mode: client`.

* Outbound frames go through one bounded queue, written in order by a writer task; while
  disconnected they wait there (OUTBOUND_BUFFER), and are flushed in order after reconnect.
  A frame leaves the queue only once `send` returned, so a frame is not lost when the
  connection drops before it was written.
* Inbound frames are queued (bounded) for one worker that calls the component's
  `handle-message` in order; when the queue is full the reader waits, i.e. the server sees
  TCP back-pressure instead of the provider buffering without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok, TransportError

from . import client_policy as policy
from .backoff import Backoff
from .client_policy import BadFrame, ClientState, ConnectFailure, Frame, Ignored, OutboundBuffer
from .closecodes import CloseCode
from .errors import ConfigError
from .ids import new_reply_token, new_session_id
from .sessions import SessionInfo
from .settings import ClientSettings
from .tlsfiles import load_cert_chain_pem
from .wsadapter import abort, close_info

log = logging.getLogger(__name__)

Handler = Callable[[BrokerMessage], Awaitable[Ok | Err]]
USER_AGENT = "wasmcloud-websocket-provider"

__all__ = ["ClientState", "ClientStats", "Handler", "OutboundClient", "tls_context"]


def tls_context(settings: ClientSettings) -> ssl.SSLContext | None:
    """The TLS context for a wss:// connection (None for ws://); raises ConfigError."""
    if not settings.secure:
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.tls_ca_file, cadata=settings.tls_ca)
    except (ssl.SSLError, OSError, ValueError) as exc:
        key = "TLS_CA_FILE" if settings.tls_ca_file else "TLS_CA"
        raise ConfigError(key, "<pem>", f"a PEM CA bundle ({exc})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert_file, key_file = settings.tls_client_cert_file, settings.tls_client_key_file
    try:
        if settings.tls_client_cert:
            load_cert_chain_pem(ctx, settings.tls_client_cert, settings.tls_client_key)
        elif cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            "TLS_CLIENT_CERT", "<pem>", f"a PEM certificate and key ({exc})"
        ) from None
    return ctx


@dataclass
class ClientStats:
    """Counters of one connection (health and logs)."""

    attempts: int = 0
    connects: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames_in: int = 0
    handler_errors: int = 0


@dataclass(eq=False)
class OutboundClient:
    """The outbound connection of one (component, link name) pair: carries out
    `client_policy`'s decisions over a socket."""

    key: tuple[str, str]
    settings: ClientSettings
    handler: Handler | None
    ssl_context: ssl.SSLContext | None = None
    #: The pair's session id (None with ENABLE_SESSION_TRACKING=false); give the id of the
    #: connection this one replaces to keep it, else a fresh one is made.
    session_id: str | None = None
    #: Wall-clock time of the latest successful connect (until then: of creation).
    connected_at: float = field(default_factory=time.time)
    #: Changed only through `client_policy.transition` (its table says what may follow).
    state: ClientState = ClientState.CONNECTING
    last_error: str = ""
    stats: ClientStats = field(default_factory=ClientStats)
    _out: OutboundBuffer = field(init=False)
    _out_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _pending: dict[str, asyncio.Future[BrokerMessage]] = field(default_factory=dict)
    _closed: asyncio.Event = field(default_factory=asyncio.Event)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: ClientConnection | None = None
    _task: asyncio.Task[None] | None = None
    _worker: asyncio.Task[None] | None = None
    _in: asyncio.Queue[BrokerMessage] = field(init=False)

    def __post_init__(self) -> None:
        self._out = OutboundBuffer(self.settings)
        self._in = asyncio.Queue(self.settings.inbound_queue_limit)
        if not self.settings.session_tracking:
            self.session_id = None
        elif self.session_id is None:
            self.session_id = new_session_id()

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._worker = loop.create_task(self._inbound_worker())

    async def close(self, reason: str = "link deleted", code: int = CloseCode.NORMAL) -> None:
        """Close cleanly (1000) and stop reconnecting; fails waiting requests. Closing a
        closed connection does nothing more."""
        self._closed.set()
        if self.state is not ClientState.CLOSED:
            policy.transition(self, ClientState.CLOSED)
        ws = self._ws
        if ws is not None:
            # Bounded: the host kills the process ~300 ms after asking it to stop.
            try:
                await asyncio.wait_for(ws.close(code, reason), 0.15)
            except Exception:
                with contextlib.suppress(Exception):
                    abort(ws)
        for task in (self._task, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._fail_pending("the connection was closed")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected (tests and tools)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    def _name(self) -> str:
        return f"{self.key[0]}/{self.key[1]} -> {self.settings.safe_uri}"

    @property
    def log_fields(self) -> dict[str, str]:
        """`extra=` for log lines about this connection (JSON logs carry them as fields)."""
        fields = {"component_id": self.key[0], "link_name": self.key[1]}
        if self.session_id is not None:
            fields["session_id"] = self.session_id
        return fields

    def info(self) -> SessionInfo | None:
        """A snapshot for `list_ws_clients` (None when the pair keeps no session)."""
        if self.session_id is None:
            return None
        st = self.stats
        return SessionInfo(
            session_id=self.session_id,
            component_id=self.key[0],
            link_name=self.key[1],
            remote_addr=self.settings.safe_uri,  # no user info, no query (may hold tokens)
            connected_at=self.connected_at,
            subscriptions=[],
            mode="client",
            state=policy.listed_state(self.state, st.connects),
            counters={
                "messages_in": st.messages_in,
                "messages_out": st.messages_out,
                "bytes_in": st.bytes_in,
                "bytes_out": st.bytes_out,
                "dropped_out": self._out.dropped,
                "bad_frames_in": st.bad_frames_in,
                "handler_errors": st.handler_errors,
                "connects": st.connects,
                "queued_out": len(self._out),
            },
        )

    def describe(self) -> str:
        """One line for health and logs (no secrets: user info and query are stripped)."""
        return policy.describe(self._name(), self.state, self.last_error)

    async def _run(self) -> None:
        s = self.settings
        backoff = Backoff(s.reconnect_min, s.reconnect_max, s.jitter)
        while True:
            self.stats.attempts += 1
            try:
                ws = await open_connection(s, self.ssl_context, self._name())
            except _ConnectFailed as exc:
                failure = exc.failure
                if failure.permanent:
                    policy.transition(self, ClientState.FAILED)
                    self.last_error = failure.message
                    log.error(
                        "client %s failed permanently, not retrying: %s",
                        self._name(),
                        failure.message,
                    )
                    self._fail_pending(failure.message)
                    return
                self.last_error = failure.message
                log.warning("client %s: connect failed: %s", self._name(), failure.message)
            else:
                started = time.monotonic()
                await self._serve(ws)
                if time.monotonic() - started >= s.reconnect_reset:
                    backoff.reset()
            if self._closed.is_set():
                return
            if not s.reconnect:
                policy.transition(self, ClientState.FAILED)
                self.last_error = policy.gave_up_reason(self.last_error)
                self._fail_pending(self.last_error)
                return
            delay = backoff.next_delay()
            policy.transition(self, ClientState.WAITING)
            log.info("client %s: reconnecting in %.2fs", self._name(), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
            if self._closed.is_set():
                return
            policy.transition(self, ClientState.CONNECTING)

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        policy.transition(self, ClientState.CONNECTED)
        self.stats.connects += 1
        self.connected_at = time.time()
        self.last_error = ""
        self._connected.set()
        log.info("client %s connected", self._name(), extra=self.log_fields)
        writer = asyncio.get_running_loop().create_task(self._writer(ws))
        try:
            await self._reader(ws)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._ws = None
            self._connected.clear()
            if not self._closed.is_set():
                # The peer's close frame, else ours (1009 for a frame over MAX_MESSAGE_BYTES,
                # 1011 for unanswered pings), else 1006 (CloseCode.ABNORMAL).
                code, _ = close_info(ws)
                self.last_error = f"connection lost (close code {code})"
                log.warning("client %s: %s", self._name(), self.last_error, extra=self.log_fields)

    # --- outbound -----------------------------------------------------------------------------

    def adopt_buffer(self, old: OutboundClient) -> None:
        """Take over the unsent frames of the connection this one replaces (same format
        only: frames are already encoded)."""
        if old.settings.format == self.settings.format:
            self._out.adopt(old._out)
            if self._out.frames:
                self._out_ready.set()

    def _enqueue(self, frame: Frame) -> Err | None:
        state = self.state
        refused = policy.refusal(state, self.last_error, self.settings.safe_uri)
        if refused is None:
            refused = self._out.offer(frame, state is ClientState.CONNECTED)
            if refused is None:
                self._out_ready.set()
                return None
        return Err(refused)

    def publish(self, msg: BrokerMessage) -> Ok | Err:
        """Queue `msg` for the server; `Err` when it cannot be kept."""
        frame = policy.encode_outbound(self.settings, msg.subject, msg.body, msg.reply_to)
        return self._enqueue(frame) or Ok()

    async def request(self, subject: str, body: bytes, timeout_ms: int) -> Ok | Err:
        """Send with a fresh reply token and wait for the server's frame with that subject."""
        if self.settings.format == "raw":
            return Err("request is not supported with FORMAT=raw (no way to match an answer)")
        token = new_reply_token()
        future: asyncio.Future[BrokerMessage] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        frame = policy.encode_outbound(self.settings, subject, body, token)
        try:
            refused = self._enqueue(frame)
            if refused is not None:
                return refused
            try:
                return Ok(await asyncio.wait_for(future, timeout_ms / 1000))
            except TimeoutError:
                # Not sent yet: never send a request we gave up on.
                self._out.discard(frame, writing=self._ws is not None)
                return Err(f"timed out after {timeout_ms} ms waiting for {self.settings.safe_uri}")
            except ConnectionError as exc:
                return Err(str(exc))
        finally:
            self._pending.pop(token, None)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self._pending.clear()

    async def _writer(self, ws: ClientConnection) -> None:
        out = self._out
        while True:
            while not out.frames:
                self._out_ready.clear()
                await self._out_ready.wait()
            frame = out.frames[0]
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return  # keep the frame: it goes out after the reconnect
            out.written(frame)
            self.stats.messages_out += 1
            self.stats.bytes_out += len(frame)

    # --- inbound ------------------------------------------------------------------------------

    async def _reader(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                self.stats.messages_in += 1
                msg = self._decode(data)
                if msg is not None and not await put_unless_closed(self._in, msg, ws):
                    return
        except ConnectionClosed:
            return

    def _decode(self, data: str | bytes) -> BrokerMessage | None:
        """A message for the component, or None (an answer handed to its request, or a
        frame that is ignored or bad)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.stats.bytes_in += len(raw)
        decoded = policy.decode_inbound(self.settings, raw, isinstance(data, bytes))
        if isinstance(decoded, Ignored):
            if decoded.reason:
                log.debug("client %s: control frame ignored: %s", self._name(), decoded.reason)
            return None
        if isinstance(decoded, BadFrame):
            self.stats.bad_frames_in += 1
            log.warning(
                "client %s: bad frame from server (%s): %s",
                self._name(),
                decoded.code,
                decoded.message,
            )
            return None
        pending = self._pending.pop(decoded.subject, None) if self._pending else None
        if pending is not None:
            if not pending.done():
                pending.set_result(decoded)
            return None
        return decoded

    async def _inbound_worker(self) -> None:
        while True:
            msg = await self._in.get()
            handler = self.handler
            if handler is None:
                self.stats.handler_errors += 1
                log.warning(
                    "client %s: no handler link; inbound message on %r dropped",
                    self._name(),
                    msg.subject,
                )
                continue
            try:
                result = await asyncio.wait_for(handler(msg), self.settings.handler_timeout)
            except (TransportError, TimeoutError) as exc:
                self.stats.handler_errors += 1
                log.warning("client %s: delivery to the component failed: %s", self._name(), exc)
                continue
            except Exception:
                self.stats.handler_errors += 1
                log.exception("client %s: handler raised", self._name())
                continue
            if isinstance(result, Err):
                self.stats.handler_errors += 1
                log.info("client %s: component returned Err: %s", self._name(), result.message)


async def open_connection(
    s: ClientSettings, ssl_context: ssl.SSLContext | None, name: str
) -> ClientConnection:
    """Open the connection; raises `_ConnectFailed` with what `client_policy` makes of the
    error (`name` is the connection's name for the log)."""
    try:
        return await connect(
            s.uri,
            additional_headers=policy.connect_headers(s),
            subprotocols=[Subprotocol(p) for p in s.subprotocols] or None,
            open_timeout=s.connect_timeout,
            ssl=ssl_context,
            server_hostname=s.tls_server_name,
            max_size=s.max_message_bytes,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            close_timeout=2,
            user_agent_header=USER_AGENT,
            compression=None,
            proxy=None,
        )
    except InvalidStatus as exc:
        failure = policy.upgrade_refused(exc.response.status_code)
    except ssl.SSLCertVerificationError as exc:
        failure = policy.certificate_refused(exc.verify_message)
    except InvalidURI:
        failure = policy.invalid_uri(s.safe_uri)
    except TimeoutError:
        failure = policy.handshake_timeout(s.connect_timeout)
    except (OSError, InvalidHandshake, EOFError) as exc:
        failure = policy.transport_failure(str(exc), type(exc).__name__)
    except Exception as exc:  # anything else (e.g. a host name IDNA cannot encode)
        log.exception("client %s: unexpected error while connecting", name)
        failure = policy.unexpected_failure(type(exc).__name__)
    raise _ConnectFailed(failure)


async def put_unless_closed(
    queue: asyncio.Queue[BrokerMessage], msg: BrokerMessage, ws: ClientConnection
) -> bool:
    """Queue `msg` for the component, waiting while the queue is full (back-pressure on the
    server), but give up (False) when the connection dies meanwhile (then reconnect)."""
    if not queue.full():
        queue.put_nowait(msg)
        return True
    put = asyncio.ensure_future(queue.put(msg))
    closed = asyncio.ensure_future(ws.wait_closed())
    done, _ = await asyncio.wait({put, closed}, return_when=asyncio.FIRST_COMPLETED)
    if put in done:
        closed.cancel()
        return True
    put.cancel()
    return False


class _ConnectFailed(Exception):
    """An attempt to connect failed; `failure` says why and whether to retry."""

    def __init__(self, failure: ConnectFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure
