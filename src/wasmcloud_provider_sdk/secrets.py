"""Secret values and the opening of sealed link secrets (docs/PROTOCOL.md 3.3)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import SecretError
from .nkeys import XKey


class SecretValue(BaseModel):
    """`{"kind": "String"|"Bytes", "value": …}`. `repr` never shows the value."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["String", "Bytes"]
    value: str | list[int]

    def __repr__(self) -> str:
        return f"SecretValue(kind={self.kind!r}, value=<redacted>)"

    __str__ = __repr__

    def as_str(self) -> str:
        """The secret as text (UTF-8 decoding of a Bytes secret)."""
        if isinstance(self.value, str):
            return self.value
        return bytes(self.value).decode("utf-8", errors="replace")

    def as_bytes(self) -> bytes:
        """The secret as bytes (UTF-8 encoding of a String secret)."""
        if isinstance(self.value, str):
            return self.value.encode("utf-8")
        return bytes(self.value)


def open_link_secrets(
    sealed: bytes | None, provider_key: XKey | None, host_key: XKey | None
) -> dict[str, SecretValue]:
    """Open a link's sealed secrets map; `None` means no secrets.

    Raises `SecretError` when the box cannot be opened or does not hold a secrets map.
    """
    if not sealed:
        return {}
    if provider_key is None or host_key is None:
        raise SecretError("link carries sealed secrets but the host sent no xkeys")
    plaintext = provider_key.open(sealed, host_key)
    try:
        obj = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SecretError("opened link secrets are not valid JSON") from None
    if not isinstance(obj, dict):
        raise SecretError("opened link secrets are not a JSON object")
    try:
        return {str(name): SecretValue.model_validate(value) for name, value in obj.items()}
    except ValidationError:
        raise SecretError("opened link secrets hold a value that is not a SecretValue") from None


def seal_link_secrets(
    secrets: dict[str, SecretValue], host_key: XKey, provider_public: XKey
) -> list[int]:
    """Seal a secrets map the way the host does (tests and the dev mode use this)."""
    payload = json.dumps({k: v.model_dump() for k, v in secrets.items()}).encode()
    return list(host_key.seal(payload, provider_public))
