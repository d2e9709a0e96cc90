"""Worker processes: one provider on every core (provider config key `WORKERS`).

Python's GIL keeps one process on one core. With `WORKERS=N` the process the host started
(worker 0) starts N-1 more processes of the same program. Each is a full instance of the
provider: the same provider id, its own instance id, its own lattice connection; they share
the listening ports (`SO_REUSEPORT`) and act as one through NATS like instances on
different hosts. Only worker 0 answers the host's health and shutdown requests.

How a worker is started (never through argv or the environment, which other users of the
machine can read: the HostData holds secrets): the same command as worker 0, the HostData
on its stdin as a host writes it, with `worker_index` and a distinct `instance_id`. Worker 0
keeps that stdin open for the worker's life; the worker watches it, and EOF (worker 0 gone,
even killed with SIGKILL) makes it exit. Worker 0 restarts a worker that dies, with backoff,
and on shutdown stops them all within a budget.

Every process binds its shared listeners at about the same moment, once all of them have
started: with SO_REUSEPORT the kernel spreads connections over the sockets bound when each
arrives, and WebSocket sessions last, so clients that connect while only some processes
listen (all of them, after a restart: they reconnect at once) would stay on those. A worker
about to bind its first listener (or done starting without one) says `ready` on a pipe
worker 0 gives it (`ready_fd`) and waits for `listen` on its stdin; worker 0 waits for every
worker's `ready`, then writes `listen` to each and binds its own. After `READY_TIMEOUT`
worker 0 stops waiting for latecomers (named in a warning); a worker started later, or
restarted, is told `listen` as soon as it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from .errors import HostDataError
from .hostdata import HostData, config_value, encode_host_data

log = logging.getLogger(__name__)

#: The provider config key.
WORKERS_KEY = "WORKERS"
#: A restarted worker waits this long first, doubled per quick death, up to the maximum.
RESTART_MIN_DELAY = 0.1
RESTART_MAX_DELAY = 10.0
#: A worker that ran this long before it died is restarted after the minimum delay again.
RESTART_RESET_AFTER = 30.0
#: Worker 0 waits at most this long for the other workers to be ready before it listens.
READY_TIMEOUT = 20.0
#: What a worker writes on its ready pipe, and what worker 0 then writes on its stdin.
READY_LINE = b"ready\n"
LISTEN_LINE = b"listen\n"
#: A worker waits this long for `listen` before it binds anyway.
LISTEN_TIMEOUT = READY_TIMEOUT + 5.0


def worker_count(config: Mapping[str, str], cpus: int | None) -> int:
    """The number of worker processes `config` asks for: `WORKERS` (key matched without
    regard to case) is an integer >= 1 or `auto` (the number of cores, `cpus`); absent: 1.
    Raises `HostDataError` naming the key and the value otherwise."""
    value = config_value(config, WORKERS_KEY)
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, cpus or 1)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise HostDataError(
            f"invalid provider config {WORKERS_KEY}={value!r}: 'auto' or an integer >= 1"
        )
    return count


def worker_host_data(host_data: HostData, index: int, ready_fd: int | None = None) -> HostData:
    """What worker `index` is given on its stdin: the same HostData, its own instance id,
    and the fd of its ready pipe (`ready_fd`)."""
    base = host_data.instance_id or "provider"
    return host_data.model_copy(
        update={"worker_index": index, "instance_id": f"{base}-{index}", "ready_fd": ready_fd}
    )


def own_command() -> list[str]:
    """The command that started this process (a frozen binary: the binary itself)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, *sys.orig_argv[1:]]


def restart_delay(previous: float | None, ran_for: float) -> float:
    """How long to wait before restarting a worker that died after `ran_for` seconds, the
    previous delay being `previous` (None: first death)."""
    if previous is None or ran_for >= RESTART_RESET_AFTER:
        return RESTART_MIN_DELAY
    return min(previous * 2, RESTART_MAX_DELAY)


class WorkerSupervisor:
    """Worker 0's side: starts workers 1..count-1, restarts those that die, stops them."""

    def __init__(self, host_data: HostData, count: int, command: Sequence[str]) -> None:
        self.host_data = host_data
        self.count = count
        self.command = list(command)
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Workers that have been ready at least once; set once all of them have.
        self.ready_workers: set[int] = set()
        self.all_ready = asyncio.Event()
        #: Set once the processes may listen: all ready, given up waiting, or stopping.
        self.released = asyncio.Event()
        if count <= 1:
            self.all_ready.set()
            self.released.set()

    def start(self) -> None:
        """Start every other worker (and keep each running until `stop`)."""
        loop = asyncio.get_running_loop()
        self._keepers = [loop.create_task(self._keep(i)) for i in range(1, self.count)]

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Worker 0's gate before it binds a shared listener: return once every worker is
        ready (each is then told to listen), or once `timeout` has passed since the first
        call (a warning names the workers not ready; they are told to listen when they are).
        Once released it returns at once. Stopping raises CancelledError in a waiting caller:
        nothing is to be bound then."""
        if self.released.is_set():
            return
        try:
            async with asyncio.timeout(timeout):  # cancellable even as it is released
                await self.released.wait()
            if self._stopping:
                raise asyncio.CancelledError("stopping: nothing to bind")
        except TimeoutError:
            missing = sorted(set(range(1, self.count)) - self.ready_workers)
            log.warning(
                "worker(s) %s not ready after %.0f s: the others listen without them "
                "(connections made until they listen are all held by the others)",
                ", ".join(map(str, missing)),
                timeout,
            )
            self._release()

    def _release(self) -> None:
        if not self.released.is_set():
            self.released.set()
            for index in sorted(self.ready_workers):
                self._tell_listen(index)

    def _tell_listen(self, index: int) -> None:
        proc = self.procs.get(index)
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        try:
            proc.stdin.write(LISTEN_LINE)
        except (OSError, RuntimeError) as exc:  # gone meanwhile: it is restarted
            log.debug("worker %d: listen not sent: %s", index, exc)

    def _mark_ready(self, index: int) -> None:
        if index not in self.ready_workers:
            self.ready_workers.add(index)
            log.info("worker %d ready", index)
        if self.released.is_set():  # restarted, or late: listen at once
            self._tell_listen(index)
        elif len(self.ready_workers) >= self.count - 1:
            self.all_ready.set()
            self._release()

    def _watch_ready(self, index: int, fd: int) -> None:
        """Read worker `index`'s ready pipe (`fd`, ours to close) until its line or EOF."""
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        seen = bytearray()

        def readable() -> None:
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            seen.extend(data)
            if READY_LINE in seen:
                self._mark_ready(index)
            if not data or READY_LINE in seen:
                loop.remove_reader(fd)
                os.close(fd)

        loop.add_reader(fd, readable)

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        ready_read, ready_write = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=None,
                stderr=None,
                pass_fds=(ready_write,),
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)  # the worker holds its own copy
        self._watch_ready(index, ready_read)
        assert proc.stdin is not None
        proc.stdin.write(encode_host_data(worker_host_data(self.host_data, index, ready_write)))
        # stdin stays open: its EOF tells the worker that worker 0 is gone.
        self.procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay: float | None = None
        while not self._stopping:
            started = loop.time()
            try:
                proc = await self._spawn(index)
            except OSError as exc:
                log.error("worker %d could not be started: %s", index, exc)
            else:
                code = await proc.wait()
                if self._stopping:
                    return
                log.warning("worker %d (pid %d) exited with %s", index, proc.pid, code)
            delay = restart_delay(delay, loop.time() - started)
            log.info("restarting worker %d in %.1f s", index, delay)
            await asyncio.sleep(delay)

    def terminate(self) -> None:
        """Ask every worker to stop (SIGTERM: each runs its own clean shutdown)."""
        self._stopping = True
        self.released.set()  # nothing to wait for any more
        for keeper in self._keepers:
            keeper.cancel()
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()

    async def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the workers to exit, then kill the rest."""
        self.terminate()
        waits = [p.wait() for p in self.procs.values() if p.returncode is None]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=timeout
            )
            for fut in pending:
                fut.cancel()
        for index, proc in self.procs.items():
            if proc.returncode is None:
                log.warning("worker %d did not stop within %.0f ms: killed", index, timeout * 1000)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


class ParentLink:
    """A worker's side: its stdin, held open by worker 0 (EOF: worker 0 is gone; a
    `listen` line: bind), and its ready pipe (`ready_fd`)."""

    def __init__(self, stdin_fd: int, ready_fd: int | None) -> None:
        self.stdin_fd = stdin_fd
        self.ready_fd = ready_fd
        self.listen = asyncio.Event()
        if ready_fd is None:  # nobody to wait for
            self.listen.set()
        self._buffer = bytearray()

    def watch(self, on_gone: Callable[[], None]) -> None:
        """Read stdin from now on: `listen` sets `self.listen`, EOF calls `on_gone`."""
        loop = asyncio.get_running_loop()
        fd = self.stdin_fd
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                self.listen.set()  # nobody left to wait for
                on_gone()
                return
            self._buffer.extend(data)
            if LISTEN_LINE in self._buffer:
                self._buffer.clear()
                self.listen.set()

        loop.add_reader(fd, readable)

    def tell_ready(self) -> None:
        """Say `ready` on the ready pipe, once (then it is closed)."""
        fd, self.ready_fd = self.ready_fd, None
        if fd is None:
            return
        try:
            os.write(fd, READY_LINE)
        except OSError as exc:  # worker 0 gone: EOF on stdin follows
            log.debug("ready pipe: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def ready_to_listen(self, timeout: float = LISTEN_TIMEOUT) -> None:
        """The gate before a shared listener binds: say `ready`, wait for `listen`."""
        self.tell_ready()
        if self.listen.is_set():
            return
        try:
            async with asyncio.timeout(timeout):
                await self.listen.wait()
        except TimeoutError:
            log.warning("no word from worker 0 after %.0f s: listening anyway", timeout)
            self.listen.set()
