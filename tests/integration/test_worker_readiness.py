"""Worker 0 waits for its workers to be ready (real worker processes, the SDK's supervisor):
each worker says so on a pipe once its listeners are bound, and worker 0 binds its own only
then, so that connections made while the workers start are spread over all of them."""

from __future__ import annotations

import logging
import sys

import pytest

from wasmcloud_provider_sdk.hostdata import HostData
from wasmcloud_provider_sdk.workers import WorkerSupervisor

#: A stand-in worker: reads its HostData, says it is ready when its index is in argv[1]
#: (comma-separated), then runs until its stdin (worker 0) closes; "exit" exits instead.
WORKER = """
import sys
from wasmcloud_provider_sdk.hostdata import parse_host_data
from wasmcloud_provider_sdk.workers import tell_ready
hd = parse_host_data(sys.stdin.readline())
if sys.argv[1] == "exit":
    sys.exit(3)
if str(hd.worker_index) in sys.argv[1].split(","):
    tell_ready(hd)
sys.stdin.read()
"""


def supervisor(ready: str, count: int = 3) -> WorkerSupervisor:
    hd = HostData(instance_id="inst", provider_key="prov", config={"WORKERS": str(count)})
    return WorkerSupervisor(hd, count, [sys.executable, "-c", WORKER, ready])


async def test_worker_0_goes_on_once_every_worker_is_ready() -> None:
    workers = supervisor("1,2")
    workers.start()
    try:
        await workers.wait_ready(timeout=30)
        assert workers.all_ready.is_set()
        assert workers.ready_workers == {1, 2}
    finally:
        await workers.wait(5)


async def test_a_worker_that_never_gets_ready_is_named_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = supervisor("1")
    workers.start()
    try:
        with caplog.at_level(logging.WARNING):
            await workers.wait_ready(timeout=3)
        assert not workers.all_ready.is_set()
        assert workers.ready_workers == {1}
        assert "worker(s) 2 not ready after 3 s: worker 0 listens without them" in caplog.text
    finally:
        await workers.wait(5)


async def test_a_worker_that_exits_before_it_is_ready_does_not_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = supervisor("exit", count=2)
    workers.start()
    try:
        with caplog.at_level(logging.WARNING):
            await workers.wait_ready(timeout=2)
        assert workers.ready_workers == set()
        assert "worker(s) 1 not ready" in caplog.text
    finally:
        await workers.wait(5)


async def test_one_process_has_nothing_to_wait_for() -> None:
    workers = supervisor("", count=1)
    await workers.wait_ready(timeout=0.01)
    assert workers.all_ready.is_set()
