"""What a client's frame asks of the provider (server mode), and what a failed delivery tells
the client. Sans-I/O: no sockets, no tasks, no clocks.

`connection.Connections` reads a frame off the connection, asks `decide` (or `rate_limited`)
what to do, and carries out the one action it gets back:

* `ToComponent`: hand the message to the endpoint's component (`handle-message`);
* `AnswerRequest` / `AnswerElsewhere`: the client answered a component's `consumer.request`,
  made on this instance or on the one its session moved from;
* `AddSubscription` / `RemoveSubscription`: topic subscriptions (README "Routing", rule 3);
* `SendError`: an `error` frame to the client;
* `CloseSession`: close the connection.

Every action that never varies is built once, here: the hot path (a message frame from a
client) costs one `ToComponent` and the `BrokerMessage` it carries, nothing else.
"""

from __future__ import annotations

from collections.abc import Collection, Container
from dataclasses import dataclass

from wasmcloud_provider_sdk.errors import InvocationTimeout, LatticeUnavailable, NotServedError
from wasmcloud_provider_sdk.messaging import BrokerMessage

from . import frames
from .closecodes import CloseCode
from .frames import FrameId
from .ids import REPLY_TOKEN_PREFIX, looks_like_session_id
from .settings import ServerSettings

#: Close code for a session that kept exceeding its rate limit (RFC 6455 policy violation).


# Not frozen: a frozen dataclass costs twice as much to build, and this one is built for
# every message a client sends (treat it as read-only all the same).
@dataclass(slots=True)
class ToComponent:
    """Hand `message` to the endpoint's component; `frame_id` is acked when it returns Ok."""

    message: BrokerMessage
    frame_id: FrameId | None


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """The client answered the `consumer.request` waiting under reply token `token`."""

    token: str
    answer: BrokerMessage


@dataclass(frozen=True, slots=True)
class AnswerElsewhere:
    """The client answered a request made on the instance its session moved from."""

    token: str
    answer: BrokerMessage


@dataclass(frozen=True, slots=True)
class AddSubscription:
    """Subscribe the session to `pattern` (every limit of the session is already checked;
    the provider-wide topic index may still be full: see `index_full`)."""

    pattern: str
    frame_id: FrameId | None


@dataclass(frozen=True, slots=True)
class RemoveSubscription:
    """Unsubscribe the session from `pattern` (nothing happens if it had no such pattern)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class SendError:
    """Send the client an `error` frame (`code` is one of the codes in `frames`)."""

    code: str
    message: str
    frame_id: FrameId | None = None


@dataclass(frozen=True, slots=True)
class CloseSession:
    """Close the client's connection with `code` and `reason`."""

    code: int
    reason: str


Action = (
    ToComponent
    | AnswerRequest
    | AnswerElsewhere
    | AddSubscription
    | RemoveSubscription
    | SendError
    | CloseSession
)

#: A text frame that is not UTF-8 costs an error frame, not the session.
NOT_UTF8 = SendError(frames.BAD_UTF8, "text frame is not valid UTF-8")
#: The rate limiter dropped a message (RATE_LIMIT_POLICY=drop, or not yet enough strikes).
RATE_LIMITED = SendError(frames.RATE_LIMITED, "rate limit exceeded: this message was dropped")
#: RATE_LIMIT_POLICY=close, after RATE_LIMIT_CLOSE_AFTER excesses in a row.
RATE_LIMIT_CLOSE = CloseSession(CloseCode.POLICY, "rate limit exceeded")
_NO_TRACKING = SendError(
    frames.UNSUPPORTED, "this endpoint keeps no subscriptions (ENABLE_SESSION_TRACKING=false)"
)
_SESSION_ID_TOPIC = "a topic cannot start with a session id (publishes to it go to the session)"
_NO_HANDLER = "this endpoint has no handler link: messages cannot be delivered"


def rate_limited(strikes: int, settings: ServerSettings) -> SendError | CloseSession:
    """A message the session's rate limiter refused, its `strikes`-th in a row."""
    if settings.rate_limit_policy == "close" and strikes >= settings.rate_limit_close_after:
        return RATE_LIMIT_CLOSE
    return RATE_LIMITED


def decide(
    frame: frames.Inbound,
    session_id: str,
    subscriptions: Collection[str],
    pending_requests: Container[str],
    settings: ServerSettings,
    *,
    moved_in: bool,
    has_handler: bool,
) -> Action:
    """What to do with a decoded client frame of session `session_id`.

    `subscriptions`: the session's patterns; `pending_requests`: the reply tokens of the
    component requests it has not answered yet; `moved_in`: it came from another instance
    (and answers to requests made there can be passed on); `has_handler`: the endpoint has a
    component (or Python handler) to deliver to.
    """
    if isinstance(frame, frames.InboundMessage):
        # The reply-to is provider-set: a client cannot point a component at another
        # session, a topic or the broadcast subject, not even in the answer to a request.
        reply_to = f"{session_id}.{frame.reply_to}" if frame.reply_to else session_id
        subject = frame.subject
        if subject in pending_requests:
            return AnswerRequest(subject, BrokerMessage(subject, frame.body, reply_to))
        if moved_in and subject.startswith(REPLY_TOKEN_PREFIX):
            return AnswerElsewhere(subject, BrokerMessage(subject, frame.body, reply_to))
        if not has_handler:
            return SendError(frames.NO_HANDLER, _NO_HANDLER, frame.frame_id)
        return ToComponent(BrokerMessage(subject, frame.body, reply_to), frame.frame_id)
    if isinstance(frame, frames.Unsubscribe):
        return RemoveSubscription(frame.pattern)
    return _subscribe(frame, subscriptions, settings)


def _subscribe(
    frame: frames.Subscribe, subscriptions: Collection[str], settings: ServerSettings
) -> Action:
    if not settings.session_tracking:
        return _NO_TRACKING
    pattern = frame.pattern
    if looks_like_session_id(pattern.partition(".")[0]):
        return SendError(frames.BAD_SUBJECT, _SESSION_ID_TOPIC, frame.frame_id)
    if pattern not in subscriptions:
        limit = settings.max_subscriptions
        if len(subscriptions) >= limit:
            return SendError(
                frames.TOO_MANY_SUBSCRIPTIONS,
                f"at most {limit} subscriptions per session (MAX_SUBSCRIPTIONS)",
                frame.frame_id,
            )
        budget = settings.max_subscription_bytes
        if sum(map(len, subscriptions)) + len(pattern) > budget:
            return SendError(
                frames.TOO_MANY_SUBSCRIPTIONS,
                f"at most {budget} characters of patterns per session (MAX_SUBSCRIPTION_BYTES)",
                frame.frame_id,
            )
    return AddSubscription(pattern, frame.frame_id)


def index_full(reason: str, frame_id: FrameId | None) -> SendError:
    """The provider-wide topic index had no room for a subscription (`reason` says why)."""
    return SendError(frames.TOO_MANY_SUBSCRIPTIONS, reason, frame_id)


def overloaded(settings: ServerSettings, frame_id: FrameId | None) -> SendError:
    """The session's inbound queue (INBOUND_QUEUE_LIMIT) was full: the message was not taken.
    The socket is still read, so pongs and answers to requests get through."""
    return SendError(
        frames.OVERLOADED,
        f"the component is behind ({settings.inbound_queue_limit} messages queued for it): "
        "this message was not delivered, retry later",
        frame_id,
    )


def delivery_failure(exc: Exception, handler_timeout: float) -> tuple[str, str]:
    """The error code and client-facing text for a `handle-message` call that failed below the
    WIT level (a `TransportError`, `CodecError` or `TimeoutError`). The text names no
    internals (subjects, inboxes) of the lattice."""
    if isinstance(exc, LatticeUnavailable):
        return (
            frames.LATTICE_UNAVAILABLE,
            "the provider is not connected to the lattice: retry later",
        )
    if isinstance(exc, NotServedError):
        return (
            frames.COMPONENT_UNAVAILABLE,
            "the component is not running (nobody serves handle-message): retry later",
        )
    if isinstance(exc, TimeoutError):
        return (
            frames.HANDLER_TIMEOUT,
            f"the component did not answer within {handler_timeout:g} s (HANDLER_TIMEOUT_SEC)",
        )
    if isinstance(exc, InvocationTimeout):  # e.g. no wRPC handshake from the host in time
        return frames.HANDLER_TIMEOUT, "the component did not answer in time"
    return (
        frames.DELIVERY_FAILED,
        "the component failed to handle the message (e.g. it trapped)",
    )
