"""The SDK's error hierarchy: every error it raises on purpose derives from `ProviderSdkError`."""

from __future__ import annotations


class ProviderSdkError(Exception):
    """Base class of every error the SDK raises on purpose."""


class HostDataError(ProviderSdkError):
    """The host data on stdin was missing or malformed (the message says which and why)."""


class NkeyError(ProviderSdkError):
    """An nkey string could not be decoded (bad base32, bad CRC, wrong prefix or length)."""


class SecretError(ProviderSdkError):
    """A sealed link secret could not be opened or parsed."""


class LinkError(ProviderSdkError):
    """A link definition was malformed or does not concern this provider."""


class LinkNotInEffect(ProviderSdkError):
    """Raised by a provider's link hook: keep (store) the link, but it is not in effect.

    For a link whose config may be completed later (e.g. by another link): the runtime stores
    it, and logs the message as the link's one error line instead of "applied".
    """


class CodecError(ProviderSdkError):
    """Bytes could not be decoded as the expected component-model value."""


class NeedMoreBytes(CodecError):
    """The buffer ends inside a value: feed more bytes and decode again."""


class TransportError(ProviderSdkError):
    """A wRPC invocation failed at the transport level (not a WIT-level `Err`)."""


class NotServedError(TransportError):
    """Nobody serves the invoked function (NATS status 503, no responders)."""


class InvocationTimeout(TransportError):
    """The peer did not answer within the allotted time."""


class LatticeUnavailable(TransportError):
    """The lattice NATS connection is down (the client is reconnecting): the invocation was
    not sent, or its answer can no longer arrive. Retrying after the reconnect can succeed."""


class LatticeConnectError(ProviderSdkError, ConnectionError):
    """The lattice NATS could not be reached at start-up (after every attempt).

    The message names the address (without user info), why the last attempt failed, and how
    many attempts were made in how long; `url` and `reason` hold the first two, so a caller
    can add what to do in its own setting.
    """

    def __init__(self, url: str, reason: str, attempts: int, seconds: float) -> None:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        told = f" ({tries} in {seconds:.1f} s)" if attempts else ""
        super().__init__(f"cannot reach the lattice NATS at {url}: {reason}{told}")
        self.url = url
        self.reason = reason


class PayloadTooLarge(TransportError):
    """A message is larger than the server's max_payload (header block included)."""


class WriteBufferFull(TransportError):
    """The socket has not taken the bytes already queued for writing (the server reads too
    slowly) and the queue reached its limit: the message was not queued."""


class ServerRefused(TransportError):
    """The NATS server answered `-ERR` while connecting (e.g. "Authorization Violation")."""
