"""The control plane, sans-I/O: its subjects, the ops it queues, and reading its messages.

docs/PROTOCOL.md, section 3. `control_subs` subscribes these subjects and hands messages
off; `link_ops` applies the queued ops in order. Nothing here touches NATS or a provider.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from pydantic import ValidationError

from .errors import LinkError
from .links import InterfaceLinkDefinition, LinkConfig, Role
from .secrets import SecretValue


@dataclass(frozen=True)
class ControlSubjects:
    """The control-plane subjects of one provider instance (docs/PROTOCOL.md 3.1)."""

    link_put: str
    link_del: str
    health: str
    shutdown: str
    config_update: str

    @classmethod
    def for_provider(cls, lattice: str, provider_id: str, link_put_id: str) -> ControlSubjects:
        """`link_put_id` is the provider's xkey public key (hosts >= 1.1) or its id."""
        base = f"wasmbus.rpc.{lattice}.{provider_id}"
        return cls(
            link_put=f"wasmbus.rpc.{lattice}.{link_put_id}.linkdefs.put",
            link_del=f"{base}.linkdefs.del",
            health=f"{base}.health",
            shutdown=f"{base}.default.shutdown",
            config_update=f"{base}.config.update",
        )


class OpKind(enum.Enum):
    """What one entry of the ordered op queue asks for."""

    PUT = "put"  # a link put (payload: the link definition JSON)
    DELETE = "del"  # a link delete (payload: the link definition JSON)
    CONFIG = "config"  # a provider config update (payload: the config JSON object)
    LATTICE = "lattice"  # recover the links missed at start-up (no payload)


#: One entry of the op queue: what it is and its payload (the control message's bytes).
Op = tuple[OpKind, bytes]


def parse_link_definition(data: bytes) -> InterfaceLinkDefinition:
    """The link definition in a put or delete; `LinkError` naming the bad fields (never
    their values: they may be secrets) when it is malformed."""
    try:
        return InterfaceLinkDefinition.model_validate_json(data)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "payload" for e in exc.errors())
        raise LinkError(where) from None


def parse_config_update(data: bytes) -> dict[str, str]:
    """The provider config in a config update (values as text); `ValueError` when it is not
    a JSON object."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return {str(k): str(v) for k, v in obj.items()}


def shutdown_host_id(data: bytes) -> str | None:
    """The `host_id` a shutdown request is addressed to: "" when it names none or is not a
    JSON object, None when it names something that is not a string (no host's id)."""
    try:
        host_id = json.loads(data).get("host_id", "")
    except (ValueError, AttributeError):
        return ""
    return host_id if isinstance(host_id, str) else None


def link_description(link: InterfaceLinkDefinition) -> str:
    """`source -> target (namespace:package, name)`, for logs."""
    return (
        f"{link.source_id} -> {link.target} ({link.wit_namespace}:{link.wit_package}, {link.name})"
    )


def side_config(
    link: InterfaceLinkDefinition, role: Role, secrets: dict[str, SecretValue]
) -> LinkConfig:
    """The link seen from our side: our side's config, and its `secrets` (already opened)."""
    return LinkConfig(
        source_id=link.source_id,
        target_id=link.target,
        link_name=link.name,
        wit_namespace=link.wit_namespace,
        wit_package=link.wit_package,
        interfaces=tuple(link.interfaces),
        config=dict(link.source_config if role is Role.SOURCE else link.target_config),
        secrets=secrets,
    )
