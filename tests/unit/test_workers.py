"""The sans-I/O parts of worker processes: the `WORKERS` value, a worker's HostData, the
restart delay."""

from __future__ import annotations

import pytest

from wasmcloud_provider_sdk.errors import HostDataError
from wasmcloud_provider_sdk.hostdata import HostData
from wasmcloud_provider_sdk.workers import (
    RESTART_MAX_DELAY,
    RESTART_MIN_DELAY,
    RESTART_RESET_AFTER,
    restart_delay,
    worker_count,
    worker_host_data,
)


def test_worker_count() -> None:
    assert worker_count({}, 8) == 1
    assert worker_count({"WORKERS": "3"}, 8) == 3
    assert worker_count({"workers": " 2 "}, 8) == 2
    assert worker_count({"WORKERS": "auto"}, 8) == 8
    assert worker_count({"WORKERS": "AUTO"}, None) == 1
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(HostDataError, match=f"invalid provider config WORKERS={bad!r}"):
            worker_count({"WORKERS": bad}, 8)


def test_a_worker_gets_the_same_host_data_with_its_own_instance_id() -> None:
    hd = HostData(instance_id="abc", provider_key="p", config={"WORKERS": "2"})
    worker = worker_host_data(hd, 1)
    assert (worker.worker_index, worker.instance_id) == (1, "abc-1")
    assert worker.model_dump(exclude={"worker_index", "instance_id"}) == hd.model_dump(
        exclude={"worker_index", "instance_id"}
    )


def test_restart_delay_doubles_while_a_worker_keeps_dying() -> None:
    delay = restart_delay(None, 0.0)
    assert delay == RESTART_MIN_DELAY
    seen = [delay]
    for _ in range(20):
        delay = restart_delay(delay, 0.5)
        seen.append(delay)
    assert seen[1] == 2 * RESTART_MIN_DELAY and seen[-1] == RESTART_MAX_DELAY
    assert restart_delay(RESTART_MAX_DELAY, RESTART_RESET_AFTER) == RESTART_MIN_DELAY
