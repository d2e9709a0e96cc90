"""Every process of a provider with worker processes binds its shared listeners at about the
same moment (real worker processes, the SDK's supervisor): each worker says `ready` on a pipe
before its first listener and waits for `listen` on its stdin; worker 0 sends `listen` to all
once every worker is ready (or once it stops waiting), and binds its own then."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from wasmcloud_provider_sdk.hostdata import HostData
from wasmcloud_provider_sdk.workers import WorkerSupervisor

#: A stand-in worker: reads its HostData; if its index is in argv[1] (comma-separated) it
#: says ready, waits for `listen` and exits 0 on it (EOF first: exit 4); "exit" exits 3 at
#: once; otherwise it runs until its stdin (worker 0) closes.
WORKER = """
import os, sys
from wasmcloud_provider_sdk.hostdata import parse_host_data
stdin = sys.stdin.buffer
hd = parse_host_data(stdin.readline())
if sys.argv[1] == "exit":
    sys.exit(3)
if str(hd.worker_index) in sys.argv[1].split(","):
    os.write(hd.ready_fd, b"ready\\n")
    line = stdin.readline()
    sys.exit(0 if line == b"listen\\n" else 4)
stdin.read()
"""


def supervisor(ready: str, count: int = 3) -> WorkerSupervisor:
    hd = HostData(instance_id="inst", provider_key="prov", config={"WORKERS": str(count)})
    return WorkerSupervisor(hd, count, [sys.executable, "-c", WORKER, ready])


async def exit_code(workers: WorkerSupervisor, index: int) -> int | None:
    async def spawned() -> asyncio.subprocess.Process:
        while index not in workers.procs:  # noqa: ASYNC110 - spawned in the supervisor's task
            await asyncio.sleep(0.01)
        return workers.procs[index]

    proc = await asyncio.wait_for(spawned(), 30)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_every_worker_is_told_to_listen_once_all_are_ready() -> None:
    workers = supervisor("1,2")
    workers.start()
    try:
        await workers.wait_ready(timeout=30)
        assert workers.all_ready.is_set() and workers.released.is_set()
        assert workers.ready_workers == {1, 2}
        # Each got `listen` on its stdin (it exits 0 on it).
        assert await exit_code(workers, 1) == 0
        assert await exit_code(workers, 2) == 0
    finally:
        await workers.wait(5)


async def test_after_the_timeout_the_ready_ones_listen_and_no_later_call_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = supervisor("1")
    workers.start()
    try:
        with caplog.at_level(logging.WARNING):
            await workers.wait_ready(timeout=3)
        assert not workers.all_ready.is_set() and workers.released.is_set()
        assert workers.ready_workers == {1}
        assert "worker(s) 2 not ready after 3 s: the others listen without them" in caplog.text
        assert await exit_code(workers, 1) == 0  # told to listen when worker 0 gave up
        # Given up once: every later shared listener binds at once.
        await asyncio.wait_for(workers.wait_ready(timeout=30), 1)
    finally:
        await workers.wait(5)


async def test_a_worker_ready_after_the_release_is_told_to_listen_at_once() -> None:
    workers = supervisor("1,2", count=3)
    workers._release()  # as after a timeout, before any worker is up
    workers.start()
    try:
        assert await exit_code(workers, 1) == 0
        assert await exit_code(workers, 2) == 0
    finally:
        await workers.wait(5)


async def test_stopping_ends_the_wait_of_worker_0_with_nothing_to_bind() -> None:
    workers = supervisor("")  # never ready
    workers.start()
    waiting = asyncio.ensure_future(workers.wait_ready(timeout=30))
    await asyncio.sleep(0)
    assert not waiting.done()
    workers.terminate()
    await asyncio.wait([waiting], timeout=1)
    assert waiting.cancelled()  # at once, and the caller binds nothing
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
    await asyncio.wait_for(workers.wait_ready(timeout=30), 0.1)
    assert workers.all_ready.is_set()
