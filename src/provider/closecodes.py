"""Every WebSocket close code the provider sends or reports, with what a client should do.

One enum for both modes; `CloseCode.X` is an `int`, so it goes straight to `websockets` and
compares equal to a peer's code. A client library can follow `may_reconnect`: after a code
where it is True, reconnecting (with the session's resume token, where resume is on) is the
right move; after the others, reconnecting the same way will get the same answer.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """A close code, standard (RFC 6455) or the provider's own (4000-4999)."""

    #: Done: idle timeout, link deleted (client mode), or the client closed.
    NORMAL = 1000
    #: The provider stops, or the endpoint is deleted or reconfigured.
    GOING_AWAY = 1001
    #: Never sent: reported when the connection ended without a close frame (a drop).
    ABNORMAL = 1006
    #: A text frame that is not valid UTF-8 (sent by `websockets`).
    INVALID_DATA = 1007
    #: Slow consumer (send queue full), or the inbound rate limit with RATE_LIMIT_POLICY=close.
    POLICY = 1008
    #: A message over MAX_MESSAGE_BYTES, or too many fragments.
    TOO_BIG = 1009
    #: A keepalive ping went unanswered (sent by `websockets`).
    INTERNAL_ERROR = 1011
    #: No room (session caps) or the session is moving between instances: resume again later.
    TRY_AGAIN = 1013
    #: The provider's own: the session was resumed on another connection or instance; this
    #: connection is the stale one.
    RESUMED_ELSEWHERE = 4000

    @property
    def may_reconnect(self) -> bool:
        """Whether a client that reconnects (resuming, where it can) should expect to succeed."""
        return self in _RECONNECT


_RECONNECT = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR, CloseCode.TRY_AGAIN}
)

__all__ = ["CloseCode"]
