"""Every example runs, and does what its docstring says."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from provider.natsserver import free_port
from tests.harness import ROOT
from tests.wsclient import Client

EXAMPLES = ROOT / "examples"


def test_basic_usage_client_mode_round_trip() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "basic_usage.py")],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("handle-message got subject='echo.in'") == 3
    assert "body=b'a component'" in result.stdout


def test_server_mode_library_example() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "server_mode.py"), "--self-test", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["echo"] == {
        "type": "message",
        "seq": 1,
        "subject": "echo",
        "body": "hello",
        "reply_to": None,
    }
    assert report["clients"] == 1


async def test_chat_example_broadcasts_to_everyone() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "chat" / "chat.py"),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert b"chat on" in await asyncio.wait_for(proc.stdout.readline(), 30)
        alice = await Client.open(f"ws://127.0.0.1:{port}/chat")
        assert (await alice.recv())["body"].endswith("joined")
        bob = await Client.open(f"ws://127.0.0.1:{port}/chat")
        assert (await alice.recv())["body"].endswith("joined")
        assert (await bob.recv())["body"].endswith("joined")
        await alice.message("chat", "hi bob")
        name = alice.session_id[-6:]
        for client in (alice, bob):
            frame = await client.recv()
            assert (frame["subject"], frame["body"]) == ("broadcast", f"{name}: hi bob")
        # The chat page is served at / (the demo page, wired to /chat).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert response.startswith(b"HTTP/1.1 200") and b'"/chat"' in response
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_chat_example_says_who_is_away_and_back() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "chat" / "chat.py"),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert b"chat on" in await asyncio.wait_for(proc.stdout.readline(), 30)
        url = f"ws://127.0.0.1:{port}/chat"
        alice = await Client.open(url)
        assert (await alice.recv())["body"].endswith("joined")
        bob = await Client.open(url)
        bob_name = bob.session_id[-6:]
        assert (await alice.recv())["body"] == f"{bob_name} joined"
        assert bob.welcome is not None
        token, last_seq = bob.welcome["resume_token"], 0
        while (frame := await bob.recv())["body"] != f"{bob_name} joined":
            last_seq = frame["seq"]
        last_seq = frame["seq"]
        bob.ws.transport.abort()  # the network drops: no close frame, the session waits
        assert (await alice.recv())["body"] == f"{bob_name} lost the connection (may come back)"
        back = await Client.open(f"{url}?resume={token}&last_seq={last_seq}")
        assert back.welcome is not None and back.welcome["resumed"] is True
        assert (await alice.recv())["body"] == f"{bob_name} is back"
        await back.message("chat", "hello again")
        frame = await alice.recv()
        assert frame["body"] == f"{bob_name}: hello again"  # no raw event JSON in between
        await alice.close()
        await back.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_cli_help_and_exit_codes() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provider", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    top = run("--help")
    assert top.returncode == 0
    assert "exit codes" in top.stdout and "dev" in top.stdout
    dev = run("dev", "--help")
    assert dev.returncode == 0 and "--listen" in dev.stdout
    package = run("package", "--help")
    assert package.returncode == 0 and "--mode" in package.stdout and "launcher" in package.stdout
    assert run("no-such-command").returncode == 2
    # No host data on stdin: exit code 2 with a clear message.
    empty = subprocess.run(
        [sys.executable, "-m", "provider"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert empty.returncode == 2 and "host data is empty" in empty.stderr
    # The console script is the same CLI.
    script = Path(sys.executable).parent / "wasmcloud-websocket-provider"
    assert script.is_file(), "pip install -e . installs the console script"
    listed = subprocess.run(
        [str(script), "dev", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert listed.returncode == 0 and "--config KEY=VALUE" in listed.stdout


def test_dev_mode_says_when_its_port_is_taken() -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "provider", "dev", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        busy.close()
    assert result.returncode == 1
    # Said once (before anything starts), with the fix.
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"cannot serve on 127.0.0.1:{port}: address already in use" in line
    assert f"make run LISTEN=127.0.0.1:{port + 1}" in line
    assert "Traceback" not in result.stderr


def test_dev_mode_with_an_unreachable_nats_url_fails_in_one_line() -> None:
    nats_port = free_port()  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider",
            "dev",
            "--nats-url",
            f"nats://127.0.0.1:{nats_port}",
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 10, "took longer than a few seconds"
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"cannot reach the lattice NATS at nats://127.0.0.1:{nats_port}" in line
    assert "connection refused" in line
    assert "--nats-url" in line  # what to do


def test_started_from_a_terminal_it_says_to_use_dev() -> None:
    # stdin a terminal, as when someone types `python -m provider`: no host will write the
    # host data there, so waiting for it would look like a hang.
    import pty

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "provider"],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 2
    assert "stdin is a terminal" in result.stderr
    assert "python -m provider dev" in result.stderr and "make run" in result.stderr


async def start_dev(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provider",
        "dev",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


async def test_double_ctrl_c_after_start_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = await start_dev(
        "--listen", f"127.0.0.1:{free_port()}", env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert proc.stdout is not None and proc.stderr is not None
    while b"Open http" not in await asyncio.wait_for(proc.stdout.readline(), 60):
        pass
    assert os.listdir(tmp_path), "the embedded nats-server keeps its files in TMPDIR"
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # impatient: the second one while the first is handled
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    assert stderr.count(b"stopping:") == 1
    assert os.listdir(tmp_path) == []  # nats-server's config and JetStream store
    assert processes_mentioning(str(tmp_path)) == []  # and nats-server itself


async def test_double_ctrl_c_while_connecting_stops_at_once() -> None:
    # A NATS address that accepts and never answers: the dev mode is inside its connect
    # attempts (6 s at most) when the Ctrl-Cs come; it must stop now, quietly.
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proc = await start_dev(
            "--nats-url", f"nats://127.0.0.1:{port}", "--listen", f"127.0.0.1:{free_port()}"
        )
        await asyncio.wait_for(accepted.wait(), 60)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert time.monotonic() - signalled < 3, "waited for the connect attempts"
        assert proc.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr and b"cannot reach" not in stderr, stderr.decode()
        assert stderr.count(b"stopping:") == 1
    finally:
        server.close()
        await server.wait_closed()


async def read_until(stream: asyncio.StreamReader, needle: bytes, timeout: float = 60) -> bytes:
    """Lines of `stream` up to and including the first one containing `needle`."""
    seen = b""
    while True:
        line = await asyncio.wait_for(stream.readline(), timeout)
        if not line:
            raise AssertionError(f"ended before {needle!r}:\n{seen.decode()}")
        seen += line
        if needle in line:
            return seen


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return response


async def test_dev_mode_config_limits_metrics_auth_and_the_demo_topic(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    token = "t0k3n-not-for-logs"
    config_file = tmp_path / "dev.env"
    config_file.write_text(f"# authentication\nAUTH=token\nAUTH_TOKENS={token}\n")
    port = free_port()
    proc = await start_dev(
        "--listen",
        f"127.0.0.1:{port}",
        "--config-file",
        str(config_file),
        "--config",
        "METRICS=true",
        "--config",
        "MAX_SESSIONS=1",
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = await read_until(proc.stdout, b"Open http")
        assert f"metrics:     http://127.0.0.1:{port}/metrics".encode() in banner
        assert b"AUTH_TOKENS=<hidden>" in banner and b"MAX_SESSIONS=1" in banner
        assert f"http://127.0.0.1:{port}/#token=<token>".encode() in banner
        url = f"ws://127.0.0.1:{port}/ws"
        with pytest.raises(InvalidStatus) as refused:  # AUTH=token from the file
            await Client.open(url)
        assert refused.value.response.status_code == 401
        # As the demo page does it: the token offered as subprotocols "bearer", <token>.
        protocols: Any = ["wasmcloud.messaging.v1", "bearer", token]
        client = await Client.open(url, subprotocols=protocols)
        with pytest.raises(InvalidStatus) as full:  # MAX_SESSIONS=1
            await Client.open(url, subprotocols=protocols)
        assert full.value.response.status_code == 503
        assert b"200 OK" in (await http_get(port, "/metrics")).split(b"\r\n")[0]
        # The echo component publishes a tick to the demo topic: a subscriber sees it.
        await client.send({"type": "subscribe", "subject": "demo.>"})
        frame = await client.recv(timeout=15)
        while frame.get("subject", "").startswith("ws.session") or frame["type"] != "message":
            frame = await client.recv(timeout=15)
        assert frame["subject"] == "demo.tick" and frame["body"].startswith("tick ")
        await client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert token.encode() not in banner + stdout + stderr
    # The dev mode answers the provider's control-interface question itself: no warning.
    assert b"no host answered" not in stderr, stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "MAX_SESSIONS=lots"], "--config: invalid MAX_SESSIONS='lots'"),
        (["--config", "NOPE"], "expected KEY=VALUE, got 'NOPE'"),
        (["--config", "MODE=client"], "the dev mode serves WebSocket clients"),
        (["--config", "URI=0.0.0.0:1"], "give the address with --listen"),
        (["--listen", "8080"], "--listen '8080': host:port"),
        (["--config-file", "/no/such/file"], "--config-file /no/such/file: No such file"),
        (["--config", "AUTH=token", "--config", "AUTH_TOKENS="], "AUTH_TOKENS='<hidden>'"),
    ],
)
def test_dev_mode_refuses_bad_arguments_before_starting(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provider", "dev", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ")
    assert message in result.stderr, result.stderr
    assert "nats" not in result.stderr.lower()  # nothing was started


async def test_make_run_takes_listen_and_config() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        make,
        "--no-print-directory",
        "run",
        f"LISTEN=127.0.0.1:{port}",
        "CONFIG=METRICS=true WELCOME=false",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches make and the dev mode alike
    )
    assert proc.stdout is not None
    try:
        banner = await read_until(proc.stdout, b"Open http")
        assert f"Open http://127.0.0.1:{port}/ in a browser".encode() in banner
        assert b"METRICS=true, WELCOME=false" in banner
        assert b"200 OK" in (await http_get(port, "/metrics")).split(b"\r\n")[0]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert b"Traceback" not in stderr, stderr.decode()
