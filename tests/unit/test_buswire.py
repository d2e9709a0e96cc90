"""The encoding of messages between instances: maps only, bounded."""

from __future__ import annotations

import msgpack
import pytest

from provider.buswire import pack_map, unpack_map


def test_a_map_round_trips() -> None:
    obj = {"op": "handover", "sid": "ws_x", "body": b"\x00\xff", "n": [1, 2]}
    assert unpack_map(pack_map(obj), "move message") == obj


def test_anything_but_a_map_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cluster message is not a map"):
        unpack_map(msgpack.packb([1, 2]), "cluster message")


def test_a_map_over_the_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds max_map_len"):
        unpack_map(msgpack.packb({str(i): i for i in range(65)}), "cluster message")
