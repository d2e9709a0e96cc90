"""Links the lattice holds that never reached this provider (the decisions, without I/O).

A host publishes a link put once, to the providers running on it, and nothing stores it for
a provider that has not subscribed yet. A link put between the host starting the provider
process and the provider's subscription is lost, and wadm, which sees the link as existing,
never puts it again. So after subscribing, the runtime asks the host's control interface for
the lattice's links (`wasmbus.ctl.v1.<lattice>.link.get`) and applies those that concern it
and that it does not hold. The control interface lists links with the *names* of their
configs (`wasmcloud-control-interface` `Link`), so each name is read with
`wasmbus.ctl.v1.<lattice>.config.get.<name>` and merged in order, later names winning, as
the host does when it resolves a link. Secret references (names starting with `SECRET`) can
only be resolved by a host: a missed link that needs secrets on this provider's side is
reported, not applied without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import LinkError
from .links import InterfaceLinkDefinition, LinkIdentity

#: The control interface's default topic prefix (a host's `--ctl-topic-prefix`).
DEFAULT_CTL_PREFIX = "wasmbus.ctl"
#: A config name starting with this is a secret reference (wasmcloud-secrets-types).
SECRET_PREFIX = "SECRET"


def link_get_subject(lattice: str, prefix: str = DEFAULT_CTL_PREFIX) -> str:
    """The control-interface subject that lists the lattice's links."""
    return f"{prefix}.v1.{lattice}.link.get"


def config_get_subject(lattice: str, name: str, prefix: str = DEFAULT_CTL_PREFIX) -> str:
    """The control-interface subject that reads one named config."""
    return f"{prefix}.v1.{lattice}.config.get.{name}"


def ctl_response(data: bytes, what: str) -> Any:
    """The `response` of a control-interface answer `{"success", "message", "response"}`;
    raises `LinkError` naming `what` when the answer is not a success."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise LinkError(f"{what}: the control interface answered with invalid JSON") from None
    if not isinstance(obj, dict):
        raise LinkError(f"{what}: the control interface answered with {type(obj).__name__}")
    if not obj.get("success", False):
        raise LinkError(f"{what}: {obj.get('message') or 'refused by the control interface'}")
    return obj.get("response")


@dataclass(frozen=True)
class LatticeLink:
    """One link as the control interface lists it: config *names*, not values."""

    source_id: str
    target: str
    name: str
    wit_namespace: str
    wit_package: str
    interfaces: tuple[str, ...]
    source_config: tuple[str, ...]
    target_config: tuple[str, ...]

    @classmethod
    def from_json(cls, obj: Any) -> LatticeLink:
        """Parse one entry of a `link.get` answer; raises `LinkError` saying what is wrong."""
        if not isinstance(obj, dict):
            raise LinkError("a listed link is not a JSON object")

        def text(key: str, default: str | None = None) -> str:
            value = obj.get(key, default)
            if not isinstance(value, str):
                raise LinkError(f"a listed link has no valid {key!r}")
            return value

        def names(key: str) -> tuple[str, ...]:
            value = obj.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LinkError(f"a listed link has an invalid {key!r} (a list of names)")
            return tuple(value)

        return cls(
            source_id=text("source_id"),
            target=text("target"),
            name=text("name", "default") or "default",
            wit_namespace=text("wit_namespace", ""),
            wit_package=text("wit_package", ""),
            interfaces=names("interfaces"),
            source_config=names("source_config"),
            target_config=names("target_config"),
        )

    @property
    def identity(self) -> LinkIdentity:
        """The link's full identity (as `InterfaceLinkDefinition.identity`)."""
        return LinkIdentity(
            self.source_id, self.target, self.name, self.wit_namespace, self.wit_package
        )

    @property
    def description(self) -> str:
        """`source -> target (ns:pkg, name)`, as the runtime logs links."""
        return (
            f"{self.source_id} -> {self.target} "
            f"({self.wit_namespace}:{self.wit_package}, {self.name})"
        )

    def own_config_names(self, provider_id: str) -> tuple[str, ...]:
        """The config names of this provider's side of the link."""
        return self.source_config if self.source_id == provider_id else self.target_config

    def secret_names(self, provider_id: str) -> list[str]:
        """Secret references on this provider's side (only a host can resolve them)."""
        return [n for n in self.own_config_names(provider_id) if n.startswith(SECRET_PREFIX)]

    def config_names(self) -> set[str]:
        """Every plain config name the link refers to, on both sides."""
        return {
            n for n in (*self.source_config, *self.target_config) if not n.startswith(SECRET_PREFIX)
        }

    def resolve(self, configs: dict[str, dict[str, str]]) -> InterfaceLinkDefinition:
        """The link as a host would put it, from the values of its named configs (merged in
        order, later names winning). Secret references are left out."""

        def merged(config_names: tuple[str, ...]) -> dict[str, str]:
            out: dict[str, str] = {}
            for name in config_names:
                out.update(configs.get(name, {}))
            return out

        return InterfaceLinkDefinition(
            source_id=self.source_id,
            target=self.target,
            name=self.name,
            wit_namespace=self.wit_namespace,
            wit_package=self.wit_package,
            interfaces=list(self.interfaces),
            source_config=merged(self.source_config),
            target_config=merged(self.target_config),
        )


def links_for(response: Any, provider_id: str) -> tuple[list[LatticeLink], list[str]]:
    """The listed links whose source or target is this provider, and a problem text for each
    entry that could not be read (the others are still used)."""
    if not isinstance(response, list):
        raise LinkError("link.get: the answer holds no list of links")
    found: list[LatticeLink] = []
    problems: list[str] = []
    for entry in response:
        try:
            link = LatticeLink.from_json(entry)
        except LinkError as exc:
            problems.append(str(exc))
            continue
        if provider_id in (link.source_id, link.target):
            found.append(link)
    return found, problems


def config_values(response: Any, name: str) -> dict[str, str]:
    """The values of one named config from a `config.get` answer (`None`: not found)."""
    if response is None:
        raise LinkError(f"config {name!r} does not exist on the lattice")
    if not isinstance(response, dict):
        raise LinkError(f"config {name!r} is not a map of strings")
    return {str(k): str(v) for k, v in response.items()}
