"""A small driver of wadm's API over NATS (nats-py), doing what `wash app …` does.

Written against the code the test wadm is compiled from: the `wadm` crate 0.21.1, its
`wadm-types` 0.8 (`src/api.rs`: requests, answers, `Status`) and the client `wash` uses,
`wadm-client` (`Client::put_manifest`, `deploy_manifest`, …). References:

- subjects: `wadm/src/server/mod.rs` `Server::serve` / `parse_subject`:
  `wadm.api.<lattice>.model.<operation>[.<name>]` (`DEFAULT_WADM_TOPIC_PREFIX = "wadm.api"`),
  operations `put`, `get`, `del`, `versions`, `deploy`, `undeploy`, `status`;
- payloads: `wadm-client` `put_manifest` parses the manifest (YAML or JSON) and sends it as
  JSON with `Content-Type: application/json`; `deploy` sends `{"version": …}` (or nothing:
  the latest), `del` `{"version": …}` (or nothing: every version), `undeploy` and `status`
  nothing;
- answers: `PutModelResponse {result: created|newversion|error, current_version, name,
  message, total_versions}`, `DeployModelResponse {result: acknowledged|notfound|error, …}`,
  `DeleteModelResponse {result: deleted|noop|error, message, undeploy}`, `StatusResponse
  {result: ok|notfound|error, message, status}`; any request wadm cannot handle is answered
  `{"result": "error", "message": …}` (`Handler::send_error`).
- status: the last message on `wadm.status.<lattice>.<name>` (a JetStream stream; wadm
  publishes there whenever it changes): `Status {status: {type, message}, scalers: [...]}`,
  `type` one of `waiting`, `undeployed`, `reconciling`, `deployed`, `failed`, `unhealthy`.

`wash app deploy <file>` (the `app` module of wash in the wasmCloud repository,
`crates/wash/src/lib/app`: `load_app_manifest`, then `put_and_deploy_model`) does one more
thing before it sends the manifest: every string of the YAML that is a relative `file://`
reference (`file://` not followed by `/`) is resolved against the directory of the manifest
file (canonicalized), must exist, and is replaced by the absolute `file:///…` URL.
`load_manifest` does the same here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.js.errors
import yaml
from nats.aio.client import Client as NatsClient

#: wadm-types `api::DEFAULT_WADM_TOPIC_PREFIX`.
API_PREFIX = "wadm.api"
#: wadm-types `api::WADM_STATUS_API_PREFIX`: `wadm.status.<lattice>.<name>`.
STATUS_PREFIX = "wadm.status"
READY_PREFIX = "WSP_TEST_WADM_READY="
#: wadm's event workers read `wadm_event_consumer` (wadm/src/nats.rs
#: `ensure_event_consumer_stream`), a stream that sources `wadm_events` (`wadm.evt.*.>`: its
#: own manifest_published / manifest_unpublished) and `wasmbus_events` (`wasmbus.evt.*.>`: the
#: hosts'), both renamed to `wadm_event_consumer.evt.<lattice>.<event>`.
EVENT_CONSUMER_STREAM = "wadm_event_consumer"
#: A lattice no host uses; its probe events carry no event type wadm acts on.
PROBE_LATTICE = "wsp-test-probe"


class WadmError(RuntimeError):
    """wadm answered `result: error` (or not found), did not answer, or a status never came."""


def resolve_relative_file_paths(value: Any, base_dir: Path) -> Any:
    """What `wash app deploy` does to a manifest read from a file: every string that is a
    relative `file://` reference becomes the absolute file URL of `base_dir / <path>`.

    Raises `WadmError` when such a file does not exist (wash refuses to deploy then too).
    """
    if isinstance(value, str):
        if value.startswith("file://") and value[7:8] not in ("", "/"):
            path = base_dir / value.removeprefix("file://")
            if not path.exists():
                raise WadmError(
                    f"relative file path [{value}] (resolved to [{path}]) does not exist"
                )
            return path.as_uri()
        return value
    if isinstance(value, dict):
        return {k: resolve_relative_file_paths(v, base_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_relative_file_paths(v, base_dir) for v in value]
    return value


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest file as `wash app deploy` does (YAML; relative `file://` resolved
    against the file's canonical directory)."""
    manifest = yaml.safe_load(path.read_text())
    if not isinstance(manifest, dict):
        raise WadmError(f"{path}: not a manifest")
    resolved = resolve_relative_file_paths(manifest, path.resolve().parent)
    assert isinstance(resolved, dict)
    return resolved


@dataclass(frozen=True)
class AppStatus:
    """`Status` (wadm-types api.rs): the application's status and its scalers'."""

    type: str
    message: str
    scalers: list[dict[str, Any]]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AppStatus:
        info = raw.get("status", {})
        return cls(str(info.get("type", "")), str(info.get("message", "")), raw.get("scalers", []))


class Wadm:
    """wadm's API for one lattice, over an existing NATS connection."""

    def __init__(self, nc: NatsClient, lattice: str, timeout: float = 10.0) -> None:
        self.nc = nc
        self.lattice = lattice
        self.timeout = timeout

    def subject(self, operation: str, name: str | None = None) -> str:
        base = f"{API_PREFIX}.{self.lattice}.model.{operation}"
        return base if name is None else f"{base}.{name}"

    async def request(
        self, subject: str, payload: bytes = b"", headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            msg = await self.nc.request(subject, payload, timeout=self.timeout, headers=headers)
        except TimeoutError:
            raise WadmError(f"no answer on {subject} within {self.timeout}s") from None
        answer = json.loads(msg.data)
        if not isinstance(answer, dict):
            raise WadmError(f"{subject}: unexpected answer {msg.data[:500]!r}")
        return answer

    async def put(self, manifest: dict[str, Any]) -> tuple[str, str]:
        """`model.put` (`wash app put`): returns (name, current version)."""
        answer = await self.request(
            self.subject("put"),
            json.dumps(manifest).encode(),
            {"Content-Type": "application/json"},
        )
        if answer.get("result") not in ("created", "newversion"):
            raise WadmError(f"model.put: {answer.get('message', answer)}")
        return str(answer["name"]), str(answer["current_version"])

    async def deploy(self, name: str, version: str | None = None) -> dict[str, Any]:
        """`model.deploy.<name>`: acknowledged, not done (wait for the status)."""
        body = b"" if version is None else json.dumps({"version": version}).encode()
        answer = await self.request(self.subject("deploy", name), body)
        if answer.get("result") != "acknowledged":
            raise WadmError(f"model.deploy {name}: {answer.get('message', answer)}")
        return answer

    async def put_and_deploy(self, manifest: dict[str, Any]) -> tuple[str, str]:
        """`wash app deploy <file>`: put, then deploy the version just put."""
        name, version = await self.put(manifest)
        await self.deploy(name, version)
        return name, version

    async def undeploy(self, name: str) -> dict[str, Any]:
        """`model.undeploy.<name>` (`wash app undeploy`)."""
        answer = await self.request(self.subject("undeploy", name))
        if answer.get("result") != "acknowledged":
            raise WadmError(f"model.undeploy {name}: {answer.get('message', answer)}")
        return answer

    async def delete(self, name: str, version: str | None = None) -> dict[str, Any]:
        """`model.del.<name>` (`wash app delete`): every version when `version` is None."""
        body = b"" if version is None else json.dumps({"version": version}).encode()
        answer = await self.request(self.subject("del", name), body)
        if answer.get("result") not in ("deleted", "noop"):
            raise WadmError(f"model.del {name}: {answer.get('message', answer)}")
        return answer

    async def get(self, name: str) -> dict[str, Any]:
        """`model.get.<name>`: the raw answer (`result`: success, notfound or error)."""
        return await self.request(self.subject("get", name))

    async def status(self, name: str) -> AppStatus:
        """`model.status.<name>` (`wash app status`)."""
        answer = await self.request(self.subject("status", name))
        if answer.get("result") != "ok":
            raise WadmError(f"model.status {name}: {answer.get('message', answer)}")
        return AppStatus.parse(answer.get("status") or {})

    async def wait_status(
        self, name: str, done: Callable[[AppStatus], bool], timeout: float = 60.0
    ) -> AppStatus:
        """Wait until the application's status satisfies `done`: subscribe to its status
        subject first, then ask once (a status published before the subscription is what the
        request answers), then take every update."""
        updates: asyncio.Queue[AppStatus] = asyncio.Queue()

        async def on_update(msg: Any) -> None:
            with contextlib.suppress(ValueError):
                updates.put_nowait(AppStatus.parse(json.loads(msg.data)))

        sub = await self.nc.subscribe(f"{STATUS_PREFIX}.{self.lattice}.{name}", cb=on_update)
        seen: list[AppStatus] = []
        try:
            await self.nc.flush()
            current = await self.status(name)
            async with asyncio.timeout(timeout):
                while True:
                    seen.append(current)
                    if done(current):
                        return current
                    current = await updates.get()
        except TimeoutError:
            trail = "\n".join(f"  {s.type}: {s.message}" for s in seen[-8:])
            raise WadmError(
                f"{name}: status not reached within {timeout}s; last:\n{trail}"
            ) from None
        finally:
            await sub.unsubscribe()


@dataclass
class WadmProcess:
    """A running `wsp-test-wadm` (its stderr goes to `log_path`)."""

    proc: asyncio.subprocess.Process
    log_path: Path
    _stdout_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM; returns the exit code (kills it after `timeout`)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._stdout_task is not None:
            self._stdout_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stdout_task
        rc = self.proc.returncode
        assert rc is not None
        return rc


async def start_wadm(
    binary: Path, nats_url: str, log_path: Path, timeout: float = 30.0
) -> WadmProcess:
    """Start wadm and wait for its ready line (printed once its API is subscribed)."""
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            str(binary),
            "--nats-url",
            nats_url,
            "--stream-persistence",
            "memory",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
    finally:
        os.close(log)
    assert proc.stdout is not None
    stdout = proc.stdout
    wadm = WadmProcess(proc, log_path)

    async def ready() -> None:
        while line := await stdout.readline():
            if line.decode(errors="replace").startswith(READY_PREFIX):
                return
        raise WadmError(f"wadm exited ({await proc.wait()}) before ready:\n{wadm.log_tail()}")

    try:
        await asyncio.wait_for(ready(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise

    async def drain() -> None:  # keep reading so the pipe never fills
        while await stdout.readline():
            pass

    wadm._stdout_task = asyncio.get_running_loop().create_task(drain())
    return wadm


async def wait_event_sources(nc: NatsClient, timeout: float = 30.0) -> int:
    """Wait until events published on `wadm.evt.…` and `wasmbus.evt.…` reach wadm's event
    stream. `start_wadm` returns once the streams exist, but events published in the first
    moments after they are created may never be sourced into `wadm_event_consumer` (seen here,
    nats-server 2.15: a deploy's manifest_published that never reached wadm's event worker, the
    application stuck `undeployed` for good; a host_started likewise). A probe event per
    origin, re-sent until it shows up there, says the sourcing runs. Returns how many probes
    were sent."""
    js = nc.jetstream()
    sent = 0
    deadline = asyncio.get_running_loop().time() + timeout
    for origin in ("wadm", "wasmbus"):
        event = f"probe_{origin}"
        while True:
            await nc.publish(f"{origin}.evt.{PROBE_LATTICE}.{event}", b"probe")
            sent += 1
            await nc.flush()
            try:
                await js.get_last_msg(
                    EVENT_CONSUMER_STREAM, f"{EVENT_CONSUMER_STREAM}.evt.{PROBE_LATTICE}.{event}"
                )
                break
            except nats.js.errors.NotFoundError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise WadmError(
                        f"{origin}.evt events do not reach {EVENT_CONSUMER_STREAM} after {timeout}s"
                    ) from None
                await asyncio.sleep(0.1)  # sourcing is asynchronous; pace the probes
    return sent
