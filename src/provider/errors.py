"""The provider's errors: one hierarchy under `WebSocketProviderError`.

Each message says what was wrong and what to do about it; code tells errors apart by class,
never by message text. Errors of the SDK (host data, links, wRPC) are
`wasmcloud_provider_sdk.errors.ProviderSdkError`; these are the product's own.

    WebSocketProviderError
    ├── ConfigError (ValueError)        a link's config value; fails only that link
    ├── EndpointConflict (ValueError)   address/path already served, or TLS differs on it
    ├── Refused                         an upgrade refused by auth (401/403)
    ├── FrameError                      a client frame refused (an error frame, never a close)
    ├── PatternError (ValueError)       a subscription pattern that is not valid
    ├── IllegalStateChange (RuntimeError) a state change its table forbids (a bug)
    │   ├── IllegalTransition           of a server-mode session (lifecycle.py)
    │   └── IllegalClientTransition     of a client-mode connection (client_policy.py)
    ├── IllegalClientTransition (RuntimeError) the same for a client-mode connection
    ├── NatsServerError (RuntimeError)  the embedded nats-server is missing or did not start
    ├── DevError (RuntimeError)         the dev mode cannot start
    ├── DevUsageError (ValueError)      bad dev-mode arguments (exit 2)
    └── PackageError                    the archive could not be built (exit 1)
        └── UsageError                  inconsistent `package` options (exit 2)

What a component is told (an `Err`, not an exception) has one type too: `NoSuchSession`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from wasmcloud_provider_sdk.messaging import Err


class WebSocketProviderError(Exception):
    """Base class of every error the WebSocket messaging provider raises itself."""


class ConfigError(WebSocketProviderError, ValueError):
    """A config value that is not allowed; the message names key, value and what is allowed.

    Raised while a link's (or the provider's) config is validated; it fails only that link.
    Also a `ValueError`, as a bad value is one.
    """

    def __init__(self, key: str, value: str, allowed: str) -> None:
        super().__init__(f"invalid {key}={value!r}: {allowed}")
        self.key = key
        self.allowed = allowed

    def redacted(self) -> ConfigError:
        """The same error without the value (for keys whose value came from a secret)."""
        error = ConfigError(self.key, "<secret>", self.allowed)
        error.args = (f"invalid {self.key} (value from a secret, not shown): {self.allowed}",)
        return error


class EndpointConflict(WebSocketProviderError, ValueError):
    """Another (component, link) pair already serves this address and path, or serves the
    address with other TLS settings; the message names the address and the other pair."""


class Refused(WebSocketProviderError):
    """The upgrade is refused with `status` (401 or 403); `reason` goes to the client and log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FrameError(WebSocketProviderError):
    """A frame that cannot be accepted; `code` is stable, `message` is for humans.

    The client gets an error frame with both (and the frame's `id`); the session stays open.
    """

    def __init__(self, code: str, message: str, frame_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


class PatternError(WebSocketProviderError, ValueError):
    """A subscription pattern that is not a valid subject pattern."""


class IllegalStateChange(WebSocketProviderError, RuntimeError):
    """A life-cycle state change that its table does not allow (a bug in the provider, never
    a client's doing); the message names both states and what was allowed."""

    def __init__(
        self, what: str, current: enum.Enum, target: enum.Enum, allowed: Iterable[enum.Enum]
    ) -> None:
        names = ", ".join(sorted(str(s.value) for s in allowed)) or "none"
        super().__init__(
            f"{what} cannot go from {current.value} to {target.value} (allowed: {names})"
        )
        self.current = current
        self.target = target


class NatsServerError(WebSocketProviderError, RuntimeError):
    """The nats-server binary is missing or did not start."""


class DevError(WebSocketProviderError, RuntimeError):
    """The dev mode cannot start (e.g. the listen address is taken)."""


class DevUsageError(WebSocketProviderError, ValueError):
    """Bad dev-mode arguments (`--config`, `--config-file`, `--listen`): exit code 2."""


class PackageError(WebSocketProviderError):
    """The provider archive could not be built (`package` exits 1); the message says why."""


class UsageError(PackageError):
    """The `package` options were inconsistent or named unusable files (exit code 2)."""


@dataclass(frozen=True, slots=True, eq=False)
class NoSuchSession(Err):
    """The `Err` a component gets for a session id that does not exist for it (never was,
    ended, or not its to reach). Code recognises it by type (`isinstance`), never by text;
    on the wire it is an ordinary `err` whose text is `no such session: <id>`, and it equals
    the plain `Err` with that text (a caller comparing results sees no difference)."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Err):
            return self.message == other.message
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.message,))  # as the plain `Err` with the same text

    @classmethod
    def of(cls, session_id: str) -> NoSuchSession:
        """The error for `session_id`."""
        return cls(f"no such session: {session_id}")


__all__ = [
    "ConfigError",
    "DevError",
    "DevUsageError",
    "EndpointConflict",
    "FrameError",
    "IllegalStateChange",
    "NatsServerError",
    "NoSuchSession",
    "PackageError",
    "PatternError",
    "Refused",
    "UsageError",
    "WebSocketProviderError",
]
