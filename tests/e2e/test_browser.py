"""End to end in a real browser: headless Chromium on the dev mode's demo page.

`python -m provider dev` (embedded nats-server, the provider in server mode, the echo
component over real wRPC) runs as a child process; `tests/js/browser.mjs` drives the system
Chromium with playwright-core (never a downloaded browser): two tabs, two sessions, a message
and its echo, a broadcast seen by both tabs, a topic subscription, and a screenshot.

Chromium is Debian's `chromium` package (installed here with apt-get when missing and we are
root). Without Chromium or Node.js the test skips with a printed reason; with CI set it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from provider.natsserver import free_port
from tests.interop import test_js_client

# The session fixture of the Node.js interop tests: the `node` executable, `npm ci` done.
node = test_js_client.node

REPO = Path(__file__).resolve().parents[2]
JS_DIR = REPO / "tests" / "js"
BROWSER_SCRIPT = JS_DIR / "browser.mjs"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
APT_TIMEOUT = 600
NPM_CI_TIMEOUT = 300
DEV_START_TIMEOUT = 60
BROWSER_TIMEOUT = 120
DEV_STOP_TIMEOUT = 10
SCREENSHOT_COPY = Path("/tmp/devpage.png")
SESSION_ID = re.compile(r"^ws_[A-Za-z0-9_-]{22}$")
OPEN_LINE = re.compile(r"Open (http://\S+/) in a browser")


def _unavailable(reason: str) -> NoReturn:
    """Skip (printing why), or fail in CI where the browser test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    print(f"skipping the browser test: {reason}")
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float, deadline: float | None = None) -> bool:
    """Run a setup command, printing it and its output; True when it exits 0."""
    if deadline is not None:
        timeout = min(timeout, max(1.0, deadline - time.monotonic()))
    print("+", " ".join(cmd), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s")
        return False
    tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
    print("\n".join(f"  {line}" for line in tail))
    print(f"  exit status {result.returncode}")
    return result.returncode == 0


def _install_chromium() -> None:
    """`apt-get install -y chromium` (after `apt-get update` when apt knows no candidate)."""
    apt_get, apt_cache = shutil.which("apt-get"), shutil.which("apt-cache")
    if apt_get is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    print(f"{CHROMIUM} is missing: installing Debian's chromium package with apt-get")
    deadline = time.monotonic() + APT_TIMEOUT
    # Wait for the dpkg lock rather than fail when another apt-get is running.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    policy = ""
    if apt_cache is not None:
        policy = subprocess.run(
            [apt_cache, "policy", "chromium"], capture_output=True, text=True, check=False
        ).stdout
    if not re.search(r"Candidate: (?!\(none\))", policy):
        _run([apt_get, *lock, "update"], APT_TIMEOUT, deadline)
    install = [apt_get, *lock, "install", "-y", "--no-install-recommends", "chromium"]
    if not _run(install, APT_TIMEOUT, deadline) and time.monotonic() < deadline:
        # Perhaps stale package lists: refresh them and try once more.
        _run([apt_get, *lock, "update"], APT_TIMEOUT, deadline)
        _run(install, APT_TIMEOUT, deadline)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium (Debian's `chromium`), installed with apt-get if possible."""
    if not CHROMIUM.exists():
        _install_chromium()
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            how = "no apt-get here to install Debian's chromium package"
        elif not hasattr(os, "geteuid") or os.geteuid() != 0:
            how = "install Debian's chromium package, or run the tests as root"
        else:
            how = "`apt-get install chromium` did not provide it"
        _unavailable(f"{CHROMIUM} is missing ({how})")
    try:
        version = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{CHROMIUM} --version did not run: {exc}")
    if version.returncode != 0 or "Chromium" not in version.stdout:
        _unavailable(f"{CHROMIUM} --version failed: {version.stdout}{version.stderr}")
    print(version.stdout.strip())
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def playwright_node(node: str) -> str:
    """`node`, with playwright-core (as pinned in tests/js/package.json) in node_modules."""
    major = subprocess.run(
        [node, "-p", "process.versions.node.split('.')[0]"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    if not major.isdigit() or int(major) < 20:
        _unavailable(f"playwright-core needs Node.js >= 20, found major version {major!r}")
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]["playwright-core"]
    installed = JS_DIR / "node_modules" / "playwright-core" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != wanted:
        npm = shutil.which("npm")
        assert npm is not None  # the `node` fixture checked
        print(f"installing playwright-core {wanted}: npm ci in {JS_DIR}")
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {JS_DIR} took more than {NPM_CI_TIMEOUT} s")
        if result.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed:\n{result.stdout}\n{result.stderr}")
    return node


class DevProcess:
    """`python -m provider dev` as a child process, its output collected by two threads."""

    def __init__(self, listen: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provider", "dev", "--listen", listen],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if self.url is None and (match := OPEN_LINE.search(line)):
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # end of output: wake wait_ready() to report the exit

    def wait_ready(self, timeout: float) -> str:
        """The page URL from the "Open http://…/ in a browser" line."""
        if not self._ready.wait(timeout):
            pytest.fail(f"dev mode printed no 'Open http://' line in {timeout} s\n{self.output()}")
        if self.url is None:
            pytest.fail(
                f"dev mode exited ({self.proc.wait(5)}) before it was ready\n{self.output()}"
            )
        return self.url

    def stop(self, timeout: float) -> int:
        """SIGINT (Ctrl-C), then the exit status; fails if it does not exit in `timeout` s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dev mode did not exit within {timeout} s of SIGINT\n{self.output()}")
        for thread in self._threads:
            thread.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return f"--- dev stdout ---\n{''.join(self.stdout)}--- dev stderr ---\n" + "".join(
            self.stderr[-60:]
        )


@pytest.fixture
def dev() -> Iterator[DevProcess]:
    process = DevProcess(f"127.0.0.1:{free_port()}")
    try:
        yield process
    finally:
        process.kill()


@pytest.mark.timeout(APT_TIMEOUT + NPM_CI_TIMEOUT + DEV_START_TIMEOUT + BROWSER_TIMEOUT + 60)
def test_dev_page_echo_and_broadcast_in_chromium(
    chromium: str, playwright_node: str, dev: DevProcess, tmp_path: Path
) -> None:
    url = dev.wait_ready(DEV_START_TIMEOUT)
    screenshot = tmp_path / "devpage.png"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [playwright_node, str(BROWSER_SCRIPT), url, str(screenshot)],
            cwd=JS_DIR,
            env=dict(os.environ, CHROMIUM=chromium),
            capture_output=True,
            text=True,
            timeout=BROWSER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"browser.mjs ran more than {BROWSER_TIMEOUT} s: {exc}\n{dev.output()}")
    elapsed = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    try:
        seen: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        seen = {}
    report = (
        f"browser.mjs exit {result.returncode} after {elapsed:.1f} s\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\n{dev.output()}"
    )
    assert result.returncode == 0 and seen.get("ok") is True, report
    print(f"browser.mjs: {elapsed:.1f} s, Chromium {seen['browser']}, timings {seen['timings']}")

    session1, session2 = seen["sessions"]
    assert SESSION_ID.match(session1) and SESSION_ID.match(session2), seen["sessions"]
    assert session1 != session2
    echo_line = f"← {session1}: {seen['echo']['sent']}"
    assert seen["echo"]["seen"] == echo_line
    assert echo_line in seen["logs"]["page1"]
    assert echo_line not in seen["logs"]["page2"]
    broadcast_line = f"← broadcast: {seen['broadcast']['sent']}"
    assert seen["broadcast"]["seen"] == broadcast_line
    assert broadcast_line in seen["logs"]["page1"]
    assert broadcast_line in seen["logs"]["page2"]
    assert seen["topics"] == ["news.e2e.>"]
    assert seen["topics_after_reload"] == ["news.e2e.>"]  # the list survives a reload
    assert seen["resumed"] == session2  # a reload resumed the same session
    assert f"resumed: session {session2} (recovered)" in seen["logs"]["page2_after_reload"]
    if seen["console_errors"]:
        print("browser console errors:", *seen["console_errors"], sep="\n  ")

    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, len(data)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"screenshot: {screenshot} (copied to {SCREENSHOT_COPY})")

    assert dev.stop(DEV_STOP_TIMEOUT) == 0, dev.output()
