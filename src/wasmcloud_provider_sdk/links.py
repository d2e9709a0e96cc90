"""Link definitions and the provider's link table (docs/PROTOCOL.md 3.2). Sans-I/O.

Links are keyed by their full identity `(source_id, target, name, wit_namespace, wit_package)`,
not by peer id alone as the Rust SDK does, so two links between the same pair with different
names coexist. A put with a known identity and the same content is a duplicate; with different
content it is an update.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import LinkError
from .secrets import SecretValue


class InterfaceLinkDefinition(BaseModel):
    """A link as the host serialises it on link put/del and in HostData."""

    model_config = ConfigDict(extra="ignore")

    source_id: str
    target: str
    name: str = "default"
    wit_namespace: str = ""
    wit_package: str = ""
    interfaces: list[str] = Field(default_factory=list)
    source_config: dict[str, str] = Field(default_factory=dict)
    target_config: dict[str, str] = Field(default_factory=dict)
    source_secrets: bytes | None = Field(default=None, repr=False)
    target_secrets: bytes | None = Field(default=None, repr=False)

    @field_validator("name", mode="before")
    @classmethod
    def _default_name(cls, value: Any) -> Any:
        return value or "default"

    @field_validator("source_config", "target_config", mode="before")
    @classmethod
    def _null_config(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("source_secrets", "target_secrets", mode="before")
    @classmethod
    def _secret_bytes(cls, value: Any) -> Any:
        # serde_json writes Vec<u8> as an array of numbers; accept base64 text as well.
        if value is None or isinstance(value, bytes):
            return value or None
        if isinstance(value, list):
            if not all(isinstance(b, int) and 0 <= b <= 255 for b in value):
                raise ValueError("secrets must be an array of integers 0-255")
            return bytes(value) or None
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True) or None
            except (binascii.Error, ValueError):
                raise ValueError("secrets string is not valid base64") from None
        raise ValueError("secrets must be null, an array of bytes or a base64 string")

    @property
    def identity(self) -> LinkIdentity:
        """The link's full identity."""
        return LinkIdentity(
            self.source_id, self.target, self.name, self.wit_namespace, self.wit_package
        )


class LinkIdentity(NamedTuple):
    """What makes two link definitions "the same link"."""

    source_id: str
    target: str
    name: str
    wit_namespace: str
    wit_package: str


class Role(enum.Enum):
    """This provider's side of a link."""

    SOURCE = "source"  # we call the target component (e.g. its handler)
    TARGET = "target"  # the source component calls us (e.g. our consumer)


def role_of(link: InterfaceLinkDefinition, provider_id: str) -> Role:
    """Which side of `link` this provider is on; `LinkError` if neither."""
    if link.source_id == provider_id:
        return Role.SOURCE
    if link.target == provider_id:
        return Role.TARGET
    raise LinkError(
        f"link {link.source_id} -> {link.target} ({link.name}) does not involve "
        f"provider {provider_id!r}"
    )


@dataclass(frozen=True)
class LinkConfig:
    """What a link hook receives: the link seen from this provider's side.

    `config` and `secrets` are those of this provider's side (source or target); secrets
    are already opened.
    """

    source_id: str
    target_id: str
    link_name: str
    wit_namespace: str
    wit_package: str
    interfaces: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, SecretValue] = field(default_factory=dict, repr=False)

    @property
    def identity(self) -> LinkIdentity:
        """The link's full identity."""
        return LinkIdentity(
            self.source_id, self.target_id, self.link_name, self.wit_namespace, self.wit_package
        )


class PutKind(enum.Enum):
    """How a link put relates to the table."""

    NEW = "new"
    DUPLICATE = "duplicate"
    UPDATE = "update"


def _content(link: InterfaceLinkDefinition) -> tuple[Any, ...]:
    return (
        tuple(link.interfaces),
        tuple(sorted(link.source_config.items())),
        tuple(sorted(link.target_config.items())),
        link.source_secrets,
        link.target_secrets,
    )


class LinkTable:
    """The links this provider holds, by identity. Holds only links whose hook succeeded."""

    def __init__(self) -> None:
        self._links: dict[LinkIdentity, InterfaceLinkDefinition] = {}

    def classify(self, link: InterfaceLinkDefinition) -> PutKind:
        """Is this put new, an exact duplicate, or an update of a stored link?"""
        stored = self._links.get(link.identity)
        if stored is None:
            return PutKind.NEW
        return PutKind.DUPLICATE if _content(stored) == _content(link) else PutKind.UPDATE

    def store(self, link: InterfaceLinkDefinition) -> None:
        """Record `link` (after its hook succeeded)."""
        self._links[link.identity] = link

    def remove(self, identity: LinkIdentity) -> InterfaceLinkDefinition | None:
        """Forget a link; returns what was stored, or None (deletes are idempotent)."""
        return self._links.pop(identity, None)

    def get(self, identity: LinkIdentity) -> InterfaceLinkDefinition | None:
        """The stored link with this identity, if any."""
        return self._links.get(identity)

    def __len__(self) -> int:
        return len(self._links)

    def __iter__(self) -> Any:
        return iter(list(self._links.values()))
