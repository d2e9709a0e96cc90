"""The encoding of messages between instances of one provider (cluster bus, moves). Sans-I/O.

A map, in msgpack; what arrives from another instance is bounded (arrays of at most 10,000
items, maps of at most 64 keys) and must be a map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgpack


class BusMessage(Protocol):
    """A message of the cluster bus as its callbacks read it (a nats-py `Msg`, or the SDK's
    `WireMsg` for the sessions' subjects); `reply` is empty when there is none."""

    @property
    def subject(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    @property
    def data(self) -> bytes: ...


def pack_map(obj: dict[str, Any]) -> bytes:
    """`obj` as msgpack bytes."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack_map(data: bytes, what: str) -> dict[str, Any]:
    """The map in `data`; ValueError ("<what> is not a map", or msgpack's) otherwise."""
    obj = msgpack.unpackb(data, raw=False, max_array_len=10_000, max_map_len=64)
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a map")
    return obj
