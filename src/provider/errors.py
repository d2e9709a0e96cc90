"""The provider's errors: one hierarchy under `WebSocketProviderError`.

Each message says what was wrong and what to do about it; code tells errors apart by class,
never by message text. Errors of the SDK (host data, links, wRPC) are
`wasmcloud_provider_sdk.errors.ProviderSdkError`; these are the product's own.
"""

from __future__ import annotations


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


class PackageError(WebSocketProviderError):
    """The provider archive could not be built (`package` exits 1); the message says why."""


class UsageError(PackageError):
    """The `package` options were inconsistent or named unusable files (exit code 2)."""


__all__ = ["ConfigError", "PackageError", "UsageError", "WebSocketProviderError"]
