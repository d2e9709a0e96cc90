"""`run_provider`: the process entry point a provider binary calls."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import IO

from .errors import HostDataError, LatticeConnectError
from .eventloop import event_loop_choice, loop_factory
from .eventloop import run as run_loop
from .hostdata import read_host_data
from .logsetup import configure_logging
from .provider import Provider
from .runtime import ProviderRuntime
from .workers import WorkerSupervisor, own_command, worker_count

log = logging.getLogger(__name__)

#: Exit codes of `run_provider`.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_HOST_DATA = 2


def run_provider(
    provider: Provider | Callable[[], Provider],
    *,
    name: str = "python-provider",
    stdin: IO[bytes] | None = None,
    terminal_hint: str | None = None,
    workers: bool = False,
) -> int:
    """Read HostData from stdin, run `provider` until shutdown; return the exit code.

    `provider` may be a factory (e.g. the class): it is called once the control subjects are
    subscribed, so that slow imports and set-up cannot make the host's first link puts arrive
    before the provider listens. Keep the module that calls this light for the same reason.

    0 after a clean shutdown, 2 when stdin held no valid host data, 1 on any other failure
    (a lattice NATS that cannot be reached at start is said in one line, within seconds).
    Started from a terminal (stdin is a TTY: no host will write there) it says so at once,
    with `terminal_hint` (e.g. the command to use instead), and returns 2.

    `workers=True`: the provider can run as several processes that act as one through the
    lattice (instances of one provider id, sharing their ports); the provider config key
    `WORKERS` then says how many (`workers.py`). A bad `WORKERS` value returns 2 with a
    message naming the key.

    The provider config key `EVENT_LOOP` (`auto`, `uvloop`, `asyncio`) picks the event loop
    (`eventloop.py`); a bad value returns 2 as well.
    """
    source = stdin or sys.stdin.buffer
    if _is_terminal(source):
        configure_logging("info", False)
        log.error(
            "no host data: stdin is a terminal. A wasmCloud host starts a provider with the "
            "host data (one line of base64 JSON) on stdin%s",
            f". {terminal_hint}" if terminal_hint else "",
        )
        return EXIT_BAD_HOST_DATA
    try:
        host_data = read_host_data(source)
    except HostDataError as exc:
        configure_logging("info", False)
        log.error("cannot start: %s", exc)
        return EXIT_BAD_HOST_DATA
    configure_logging(host_data.log_level, host_data.structured_logging)
    try:
        factory, loop_name = loop_factory(event_loop_choice(host_data.config))
    except HostDataError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_BAD_HOST_DATA
    supervisor: WorkerSupervisor | None = None
    parent_fd: int | None = None
    if workers and host_data.worker_index == 0:
        try:
            count = worker_count(host_data.config, os.cpu_count())
        except HostDataError as exc:
            log.error("cannot start: %s", exc)
            return EXIT_BAD_HOST_DATA
        if count > 1:
            supervisor = WorkerSupervisor(host_data, count, own_command())
    elif workers:
        parent_fd = _fileno(source)
    runtime = ProviderRuntime(
        provider, host_data, name=name, workers=supervisor, parent_fd=parent_fd
    )
    log.debug("event loop: %s", loop_name)
    try:
        run_loop(runtime.run(), factory)
    except LatticeConnectError as exc:
        # One line, no traceback: the address, why, and what to check.
        log.error(
            "provider %s: %s. The host gave this address (lattice_rpc_url): check that "
            "nats-server runs there and that this machine can reach it. Exiting.",
            host_data.provider_key,
            exc,
        )
        return EXIT_FAILURE
    except Exception as exc:
        log.error("provider %s failed: %s", host_data.provider_key, exc, exc_info=True)
        return EXIT_FAILURE
    return EXIT_OK


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _is_terminal(stream: IO[bytes]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
