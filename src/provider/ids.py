"""Session ids and reply tokens: how they are made and recognised (no I/O, no state)."""

from __future__ import annotations

import re
import secrets

SESSION_ID_PREFIX = "ws_"
#: 22 URL-safe base64 characters = 132 random bits (at least 128 are needed to be unguessable).
SESSION_ID_RANDOM_BYTES = 17
REPLY_TOKEN_PREFIX = "rq_"
_SESSION_ID = re.compile(r"ws_[A-Za-z0-9_-]{22}")


def new_session_id() -> str:
    """An unguessable, URL-safe session id without dots (`ws_` + 22 characters)."""
    return SESSION_ID_PREFIX + secrets.token_urlsafe(SESSION_ID_RANDOM_BYTES)[:22]


def new_reply_token() -> str:
    """A fresh reply token for `consumer.request` (never reused, never guessable)."""
    return REPLY_TOKEN_PREFIX + secrets.token_urlsafe(16)


def looks_like_session_id(token: str) -> bool:
    """Is `token` a session id's shape (`ws_` + 22 URL-safe characters)? Routing rule 1
    keys on this; a client-supplied id that is not (control characters, dots) is refused."""
    return _SESSION_ID.fullmatch(token) is not None
