"""HostData: what the host writes on the provider's stdin at start (docs/PROTOCOL.md 2.2).

One line of standard base64 of a JSON object, then `\\r\\n`, then EOF. Every field has a
default, unknown fields are ignored, and a bad payload raises `HostDataError` naming the
problem (never echoing the payload, which contains secrets).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import HostDataError
from .links import InterfaceLinkDefinition
from .secrets import SecretValue

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class OtelConfig(BaseModel):
    """`otel_config`: OpenTelemetry export settings (kept for hooks; export is optional)."""

    model_config = ConfigDict(extra="ignore")

    enable_observability: bool = False
    enable_traces: bool | None = None
    enable_metrics: bool | None = None
    enable_logs: bool | None = None
    observability_endpoint: str | None = None
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    logs_endpoint: str | None = None
    protocol: Literal["http", "grpc"] = "http"
    additional_ca_paths: list[str] = Field(default_factory=list)
    trace_level: str = "info"

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: Any) -> Any:
        # The host serialises the Rust enum variant names "Http"/"Grpc".
        return value.lower() if isinstance(value, str) else value


class HostData(BaseModel):
    """The typed HostData; field names and meanings are those of the 1.x host."""

    model_config = ConfigDict(extra="ignore")

    host_id: str = ""
    lattice_rpc_prefix: str = "default"
    link_name: str = "default"
    lattice_rpc_user_jwt: str = ""
    lattice_rpc_user_seed: str = Field(default="", repr=False)
    lattice_rpc_url: str = ""
    provider_key: str = ""
    env_values: dict[str, str] = Field(default_factory=dict)
    instance_id: str = ""
    link_definitions: list[InterfaceLinkDefinition] = Field(default_factory=list)
    cluster_issuers: list[str] = Field(default_factory=list)
    config: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretValue] = Field(default_factory=dict, repr=False)
    host_xkey_public_key: str = ""
    provider_xkey_private_key: str = Field(default="", repr=False)
    default_rpc_timeout_ms: int | None = None
    structured_logging: bool = False
    log_level: str | None = None
    otel_config: OtelConfig = Field(default_factory=OtelConfig)
    #: Not sent by hosts: 0 for the process the host starts, N for the worker processes it
    #: starts in turn (`workers`, provider config `WORKERS`).
    worker_index: int = 0
    #: Not sent by hosts: a worker's end of a pipe to worker 0, written once the worker is
    #: ready (its initial links applied, its listeners bound). None: nobody waits for that.
    ready_fd: int | None = None

    @property
    def nats_url(self) -> str:
        """The lattice NATS URL, with the SDKs' fallback when the host sent none."""
        return self.lattice_rpc_url or DEFAULT_NATS_URL

    @property
    def lattice(self) -> str:
        """The lattice name (`lattice_rpc_prefix`)."""
        return self.lattice_rpc_prefix

    @property
    def has_xkeys(self) -> bool:
        """True when the host sent both curve keys (hosts >= 1.1)."""
        return bool(self.host_xkey_public_key and self.provider_xkey_private_key)


def parse_host_data(line: bytes | str) -> HostData:
    """Parse one stdin line (surrounding whitespace, including `\\r\\n`, is ignored)."""
    text = line.decode("ascii", errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        raise HostDataError("host data is empty: expected one base64 line on stdin")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HostDataError("host data is not valid standard base64") from None
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostDataError(f"host data is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(obj, dict):
        raise HostDataError(f"host data must be a JSON object, got {type(obj).__name__}")
    try:
        return HostData.model_validate(obj)
    except ValidationError as exc:
        fields = ", ".join(
            ".".join(str(p) for p in err["loc"]) + f" ({err['msg']})" for err in exc.errors()
        )
        raise HostDataError(f"host data has invalid fields: {fields}") from None


def read_host_data(stream: IO[bytes]) -> HostData:
    """Read the first line of `stream` (the host closes stdin after it) and parse it."""
    return parse_host_data(stream.readline())


def encode_host_data(data: HostData | dict[str, Any]) -> bytes:
    """The bytes a host writes on stdin for `data` (tests and the dev mode use this)."""
    obj = data.model_dump(mode="json") if isinstance(data, HostData) else data
    return base64.b64encode(json.dumps(obj).encode()) + b"\r\n"


def config_value(config: Mapping[str, str], key: str) -> str | None:
    """The provider config value of `key` (upper case), the config's keys matched without
    regard to case or surrounding blanks; None when absent."""
    return next((v for k, v in config.items() if k.strip().upper() == key), None)
