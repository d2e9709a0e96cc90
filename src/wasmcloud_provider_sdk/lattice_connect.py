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
import time
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoServersError

from .errors import LatticeConnectError
from .hostdata import HostData
from .natswire import NatsWire, WireOptions, describe_connect_error
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


def lattice_credentials(
    host_data: HostData,
) -> tuple[Callable[[], bytes], Callable[[str], bytes]] | None:
    """The user-JWT and nonce-signature callbacks for HostData's lattice credentials (as
    nats-py and `NatsWire` take them), or None when HostData has none; raises `NkeyError`
    now, clearly, on a malformed seed."""
    if host_data.lattice_rpc_user_jwt and host_data.lattice_rpc_user_seed:
        jwt = host_data.lattice_rpc_user_jwt.encode()
        seed = host_data.lattice_rpc_user_seed
        sign_with_user_seed(seed, b"check")

        def user_jwt() -> bytes:
            return jwt

        def signature(nonce: str) -> bytes:
            return base64.b64encode(sign_with_user_seed(seed, nonce.encode()))

        return user_jwt, signature
    if host_data.lattice_rpc_user_jwt or host_data.lattice_rpc_user_seed:
        log.warning("host data has only one of lattice_rpc_user_jwt/seed: connecting without auth")
    return None


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
    credentials = lattice_credentials(host_data)
    if credentials is not None:
        options["user_jwt_cb"], options["signature_cb"] = credentials
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


async def connect_lattice_wire(
    host_data: HostData,
    name: str,
    on_disconnected: Sequence[Callable[[], None]] = (),
    on_reconnected: Sequence[Callable[[], None]] = (),
) -> NatsWire:
    """A second lattice connection, a `NatsWire` for the wRPC hot path, with the same
    address, credentials and first-connect budget as `connect_lattice` (reconnection never
    gives up). Raises `LatticeConnectError` like `connect_lattice`."""
    credentials = lattice_credentials(host_data)
    options = WireOptions(
        name=name,
        user_jwt_cb=credentials[0] if credentials else None,
        signature_cb=credentials[1] if credentials else None,
        connect_timeout=INITIAL_CONNECT_TIMEOUT,
        connect_attempts=INITIAL_CONNECT_ATTEMPTS,
        connect_retry_wait=1.0,
    )
    url = host_data.nats_url
    started = time.monotonic()
    try:
        return await asyncio.wait_for(
            NatsWire.connect(
                url, options, on_disconnected=on_disconnected, on_reconnected=on_reconnected
            ),
            INITIAL_CONNECT_BUDGET,
        )
    except TimeoutError:
        reason = f"no NATS answer within {INITIAL_CONNECT_BUDGET:g} s"
        raise LatticeConnectError(
            safe_nats_url(url), reason, 0, time.monotonic() - started
        ) from None
    except ValueError as exc:
        raise LatticeConnectError(
            safe_nats_url(url), f"not a usable NATS URL ({exc})", 0, 0.0
        ) from None
