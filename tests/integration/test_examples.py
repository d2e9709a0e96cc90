"""Every example runs, and does what its docstring says."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr


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
