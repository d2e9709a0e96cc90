"""README "Deploying with wadm", run with the real wadm: `wash app deploy wadm.minimal.yaml`.

A JetStream nats-server, the real wadm (tests/realhost/wadm: the `wadm` crate 0.21.1), the
real host (tests/realhost/host), the provider archive built by `python -m provider package`
and the Rust component built by cargo (conftest fixtures), and `wadm.minimal.yaml` byte for
byte as it is in the repository.

There is no `wash` here; `tests/realhost/wadm.py` sends what `wash app …` sends (see its
docstring). That includes what `wash app deploy <file>` does before sending: relative
`file://./…` images are resolved against the manifest's directory and must exist. The
manifest is copied into a directory laid out like the repository after the README's build
steps (`build/wasmcloud-websocket-provider.par.gz`, `examples/rust-component/target/…wasm`,
links to the fixtures' files), so the test leaves the checkout alone.

wadm learns about hosts from their events, so it starts before the host; its scalers act on a
host only once they have its heartbeat (see `HEARTBEAT_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from provider.natsserver import NatsServer
from tests.realhost.conftest import ROOT, HostProcess, start_host, unavailable
from tests.realhost.test_real_host import (
    expect_closed,
    expect_message,
    greeted,
    open_when_listening,
    refused,
)
from tests.realhost.wadm import (
    AppStatus,
    Wadm,
    WadmProcess,
    load_manifest,
    start_wadm,
    wait_event_sources,
)
from tests.wsclient import Client

pytestmark = [pytest.mark.realhost, pytest.mark.timeout(420)]

LATTICE = "wsp-wadm"
#: wadm's scalers place nothing on a host until they have its heartbeat (host_started is not
#: enough), and the host's first heartbeat comes one interval after its start: 30 s by
#: default. A short interval keeps the test short; the README tells users about the wait.
HEARTBEAT_SECONDS = 2
#: What wadm.minimal.yaml says: `URI: 0.0.0.0:8080/ws`.
URL = "ws://127.0.0.1:8080/ws"
#: Where the README's build steps put the two images, relative to the repository.
ARCHIVE_IN_REPO = Path("build/wasmcloud-websocket-provider.par.gz")
WASM_IN_REPO = Path(
    "examples/rust-component/target/wasm32-wasip2/release/websocket_messaging_component.wasm"
)


def deployed(s: AppStatus) -> bool:
    return s.type == "deployed"


def undeployed(s: AppStatus) -> bool:
    return s.type == "undeployed"


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@pytest.fixture
def app_dir(tmp_path: Path, frozen_archive: Path, component_wasm: Path) -> Path:
    """The repository's manifests next to the images, where the README's steps build them."""
    app = tmp_path / "app"
    for rel, target in ((ARCHIVE_IN_REPO, frozen_archive), (WASM_IN_REPO, component_wasm)):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).symlink_to(target.resolve())
    for name in ("wadm.minimal.yaml", "wadm.yaml"):
        shutil.copyfile(ROOT / name, app / name)
    return app


@dataclass
class Deployment:
    nc: NatsClient
    wadm: Wadm
    wadm_process: WadmProcess
    host: HostProcess


@pytest.fixture
async def deployment(
    wadm_binary: Path, host_binary: Path, js_nats: NatsServer, tmp_path: Path
) -> AsyncIterator[Deployment]:
    if not port_is_free(8080):
        unavailable("port 8080 (wadm.minimal.yaml's endpoint) is in use on this machine")
    wadm_process = await start_wadm(wadm_binary, js_nats.url, tmp_path / "wadm.log")
    host: HostProcess | None = None
    nc: NatsClient | None = None
    try:
        nc = await nats.connect(js_nats.url, name="wadm-test")
        print(f"wadm's event sources wired after {await wait_event_sources(nc)} probes")
        host = await start_host(
            host_binary,
            js_nats.url,
            LATTICE,
            tmp_path / "host.log",
            extra_args=("--heartbeat-seconds", str(HEARTBEAT_SECONDS)),
        )
        yield Deployment(nc, Wadm(nc, LATTICE), wadm_process, host)
    finally:
        if nc is not None:
            await nc.close()
        if host is not None:
            with contextlib.suppress(AssertionError):
                await host.stop()
            print(f"--- host log, tail ---\n{host.log_tail(4000)}")
        await wadm_process.stop()
        print(f"--- wadm log, tail ---\n{wadm_process.log_tail(4000)}")


async def session(url: str) -> Client:
    """A client of the deployed endpoint, greeted by the component and echoed."""
    client = await open_when_listening(url)
    await greeted(client)
    await client.message("echo.test", "hi")
    await expect_message(client, client.session_id, "hi")
    return client


async def test_wash_app_deploy_of_the_minimal_manifest(
    deployment: Deployment, app_dir: Path
) -> None:
    d = deployment
    manifest = load_manifest(app_dir / "wadm.minimal.yaml")
    images = {c["name"]: c["properties"]["image"] for c in manifest["spec"]["components"]}
    assert images == {
        "echo": (app_dir / WASM_IN_REPO).as_uri(),
        "websocket": (app_dir / ARCHIVE_IN_REPO).as_uri(),
    }

    # wash app deploy wadm.minimal.yaml
    assert await d.wadm.put_and_deploy(manifest) == ("websocket-minimal", "v0.1.0")
    # wash app status websocket-minimal, until it says Deployed
    status = await d.wadm.wait_status("websocket-minimal", deployed, timeout=180)
    print("status:", status)

    # The README: the welcome frame, the component's greeting, an echo of every message.
    a = await session(URL)
    b = await session(URL)
    assert a.session_id != b.session_id
    await a.message("echo.test", "with reply", reply_to="r1")
    await expect_message(a, "r1", "with reply")

    # wash app undeploy: wadm removes the links and stops the provider and the component;
    # the sessions end with 1001 (going away) and the endpoint is gone.
    await d.wadm.undeploy("websocket-minimal")
    await expect_closed(a, 1001, timeout=60)
    await expect_closed(b, 1001, timeout=10)
    await refused(URL, timeout=30)
    await d.wadm.wait_status("websocket-minimal", undeployed, timeout=60)

    # wash app deploy websocket-minimal (the stored version), then wash app delete.
    await d.wadm.deploy("websocket-minimal")
    await d.wadm.wait_status("websocket-minimal", deployed, timeout=180)
    c = await session(URL)
    answer = await d.wadm.delete("websocket-minimal")
    assert answer["result"] == "deleted" and answer["undeploy"] is True, answer
    await expect_closed(c, 1001, timeout=60)
    await refused(URL, timeout=30)
    assert (await d.wadm.get("websocket-minimal"))["result"] == "notfound"


async def test_the_full_manifest_passes_wadm_validation(
    deployment: Deployment, app_dir: Path
) -> None:
    """`wash app put wadm.yaml`: wadm parses and validates it (the secret reference, the
    policy, the links' config) without any secrets backend; deploying it needs one."""
    d = deployment
    name, version = await d.wadm.put(load_manifest(app_dir / "wadm.yaml"))
    assert (name, version) == ("websocket-echo", "v0.1.0")
    stored = await d.wadm.get("websocket-echo")
    assert stored["result"] == "success", stored
    assert (await d.wadm.status("websocket-echo")).type == "undeployed"
    assert (await d.wadm.delete("websocket-echo"))["result"] == "deleted"


async def wash(binary: Path, cwd: Path, nats_url: str, *args: str) -> str:
    """Run the real `wash` CLI against this test's NATS and lattice; its stdout."""
    host, port = nats_url.removeprefix("nats://").rsplit(":", 1)
    argv = [str(binary), *args, "--ctl-host", host, "--ctl-port", port, "--lattice", LATTICE]
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    print(f"$ wash {' '.join(args)}\n{done.stdout}{done.stderr}")
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def test_the_readme_wash_commands(
    deployment: Deployment, app_dir: Path, wash_binary: Path, js_nats: NatsServer
) -> None:
    """The README's commands as written, with the real `wash` 0.43.0 (`wash up` aside: it
    downloads the host and wadm; here they are started by the fixtures, and `--ctl-host`,
    `--ctl-port`, `--lattice` point wash at them): `wash app deploy wadm.minimal.yaml`,
    `wash app status`, clients, `wash app undeploy`, `wash app deploy <name>`,
    `wash app delete`."""
    d = deployment
    await wash(wash_binary, app_dir, js_nats.url, "app", "deploy", "wadm.minimal.yaml")
    await d.wadm.wait_status("websocket-minimal", deployed, timeout=180)
    status = json.loads(
        await wash(
            wash_binary, app_dir, js_nats.url, "app", "status", "websocket-minimal", "-o", "json"
        )
    )
    print("wash app status:", status)
    assert "deployed" in json.dumps(status).lower()

    a = await session(URL)
    await wash(wash_binary, app_dir, js_nats.url, "app", "undeploy", "websocket-minimal")
    await expect_closed(a, 1001, timeout=60)
    await refused(URL, timeout=30)

    await wash(wash_binary, app_dir, js_nats.url, "app", "deploy", "websocket-minimal")
    await d.wadm.wait_status("websocket-minimal", deployed, timeout=180)
    b = await session(URL)
    await wash(wash_binary, app_dir, js_nats.url, "app", "delete", "websocket-minimal")
    await expect_closed(b, 1001, timeout=60)
    await refused(URL, timeout=30)
