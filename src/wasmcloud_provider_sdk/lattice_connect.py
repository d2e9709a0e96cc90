"""Connecting to the lattice NATS: authentication, first-connect budget, reconnection.

docs/PROTOCOL.md, section 2.2. The first connection is bounded (a provider that cannot reach
its lattice at start says so within seconds and exits); once connected, reconnection never
gives up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoServersError

from .errors import LatticeConnectError
from .hostdata import HostData
from .nkeys import sign_with_user_seed

log = logging.getLogger(__name__)

#: Connection attempts at start before giving up (the host restarts a provider that exits).
INITIAL_CONNECT_ATTEMPTS = 5
#: Seconds one attempt may take (TCP, TLS and the NATS handshake).
INITIAL_CONNECT_TIMEOUT = 2.0
#: Seconds all attempts together may take: "cannot reach" is said within a few seconds.
INITIAL_CONNECT_BUDGET = 6.0


def safe_nats_url(url: str) -> str:
    """`url` without user info (`nats://user:password@host` names its password), for logs."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "<user info>@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def describe_connect_error(exc: BaseException | None, timeout: float) -> str:
    """Why one attempt to reach a NATS server failed, in words (nats-py's texts are terse:
    a timeout has none at all, a refusal is `[Errno 111] Connect call failed`)."""
    if exc is None:
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"no NATS answer within {timeout:g} s"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def connect_lattice(
    host_data: HostData,
    name: str,
    disconnect_listeners: list[Callable[[], None]] | None = None,
) -> NatsClient:
    """Connect to the lattice NATS: JWT + seed auth when given, unlimited reconnects.

    `disconnect_listeners` are called (in order, synchronously) each time the connection is
    lost; the list may be filled after this returns (the transport is made from the client).

    The first connection is tried up to `INITIAL_CONNECT_ATTEMPTS` times, one second apart,
    each within `INITIAL_CONNECT_TIMEOUT`, all within `INITIAL_CONNECT_BUDGET`; then this
    raises `LatticeConnectError` (one message: the address, why, how many attempts), and a
    provider that cannot reach its lattice at start exits. The failed attempts are logged
    at debug level only. Once connected, reconnection never gives up.
    """
    url = host_data.nats_url
    attempts: list[BaseException] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        if not connected:
            attempts.append(exc)
            log.debug(
                "lattice NATS at %s, attempt %d: %s",
                safe_nats_url(url),
                len(attempts),
                describe_connect_error(exc, INITIAL_CONNECT_TIMEOUT),
            )
            return
        log.warning("lattice NATS error: %s", exc)

    async def on_disconnected() -> None:
        if not connected:
            return  # a failed first attempt, not a lost connection
        if not nc.is_closed:
            log.warning("disconnected from lattice NATS")
        for listener in disconnect_listeners or ():
            try:
                listener()
            except Exception:
                log.exception("disconnect listener failed")

    async def on_reconnected() -> None:
        log.info("reconnected to lattice NATS")

    options: dict[str, Any] = {
        "servers": [url],
        "name": name,
        # nats-py makes 1 + max_reconnect_attempts tries at the first connect, this far apart
        "max_reconnect_attempts": INITIAL_CONNECT_ATTEMPTS - 1,
        "reconnect_time_wait": 1,
        "connect_timeout": INITIAL_CONNECT_TIMEOUT,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    if host_data.lattice_rpc_user_jwt and host_data.lattice_rpc_user_seed:
        jwt = host_data.lattice_rpc_user_jwt.encode()
        seed = host_data.lattice_rpc_user_seed
        sign_with_user_seed(seed, b"check")  # fail now, clearly, on a malformed seed

        def user_jwt() -> bytes:
            return jwt

        def signature(nonce: str) -> bytes:
            return base64.b64encode(sign_with_user_seed(seed, nonce.encode()))

        options["user_jwt_cb"] = user_jwt
        options["signature_cb"] = signature
    elif host_data.lattice_rpc_user_jwt or host_data.lattice_rpc_user_seed:
        log.warning("host data has only one of lattice_rpc_user_jwt/seed: connecting without auth")
    nc = NatsClient()
    started = time.monotonic()
    try:
        # The budget bounds addresses that swallow packets: each attempt would wait its
        # whole timeout, and nats-py's own count alone would make that half a minute.
        await asyncio.wait_for(nc.connect(**options), INITIAL_CONNECT_BUDGET)
    except (NoServersError, TimeoutError):
        with contextlib.suppress(Exception):
            await nc.close()
        raise LatticeConnectError(
            safe_nats_url(url),
            describe_connect_error(attempts[-1] if attempts else None, INITIAL_CONNECT_TIMEOUT),
            max(len(attempts), 1),
            time.monotonic() - started,
        ) from None
    except asyncio.CancelledError:  # the caller gave up (e.g. Ctrl-C during start-up)
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    except NatsError as exc:  # e.g. a URL nats-py cannot parse
        with contextlib.suppress(Exception):
            await nc.close()
        reason = f"not a usable NATS URL ({exc})"
        raise LatticeConnectError(safe_nats_url(url), reason, 0, 0.0) from None
    connected = True
    nc.options["max_reconnect_attempts"] = -1
    return nc
