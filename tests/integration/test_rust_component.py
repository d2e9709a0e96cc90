"""The Rust example component (examples/rust-component) builds and has the provider's contract.

Builds it with cargo for `wasm32-wasip2` (target dir under build/, not committed), then reads
the component binary: its top-level exports must include `wasmcloud:messaging/handler@0.2.0`,
its imports `wasmcloud:messaging/consumer@0.2.0`, and nothing a wasmCloud host does not give
(WASI 0.2 cli/io, wasi:logging). The names are read with a small parser of the component
binary format below (no tool needed). Where the `wasmtime` Python package is installed, the
component is also run: a host written here implements `consumer` and `wasi:logging`, and
`handle-message` is called with each of the message conventions of its README.

Skips, printing why, where cargo or the wasm32-wasip2 target is missing (`rustup target add
wasm32-wasip2`), or crates.io cannot be reached; under CI=true those fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRATE = ROOT / "examples" / "rust-component"
TARGET_DIR = ROOT / "build" / "rust-component-target"
WASM = TARGET_DIR / "wasm32-wasip2" / "release" / "websocket_messaging_component.wasm"

HANDLER = "wasmcloud:messaging/handler@0.2.0"
CONSUMER = "wasmcloud:messaging/consumer@0.2.0"
LOGGING = "wasi:logging/logging@0.1.0-draft"

# The build, from nothing, takes about a minute on a busy 2-core machine.
pytestmark = pytest.mark.timeout(900)


def skip_or_fail(reason: str) -> None:
    """Skip (printing why), or fail under CI=true, where the example must be built."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    print(f"skipping: {reason}")
    pytest.skip(reason)


def find_cargo() -> str | None:
    found = shutil.which("cargo")
    if found:
        return found
    fallback = Path.home() / ".cargo" / "bin" / "cargo"
    return str(fallback) if fallback.exists() else None


NETWORK_ERRORS = (
    "failed to download",
    "failed to get",
    "failed to query replaced source",
    "spurious network error",
    "could not resolve host",
    "couldn't resolve host",
    "failed to load source for dependency",
)


@pytest.fixture(scope="module")
def component() -> bytes:
    cargo = find_cargo()
    if cargo is None:
        skip_or_fail("cargo is not installed: cannot build examples/rust-component")
    assert cargo is not None
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(cargo).parent), env.get("PATH", "")])
    env["CARGO_TARGET_DIR"] = str(TARGET_DIR)
    rustc = shutil.which("rustc", path=env["PATH"])
    if rustc is None:
        skip_or_fail("rustc is not installed: cannot build examples/rust-component")
    assert rustc is not None
    sysroot = subprocess.run(
        [rustc, "--print", "sysroot"],
        cwd=CRATE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if sysroot.returncode != 0:
        skip_or_fail(f"rustc does not run: {sysroot.stderr.strip()}")
    if not (Path(sysroot.stdout.strip()) / "lib" / "rustlib" / "wasm32-wasip2").is_dir():
        skip_or_fail("the wasm32-wasip2 target is not installed: rustup target add wasm32-wasip2")
    build = subprocess.run(
        [cargo, "build", "--release", "--target", "wasm32-wasip2", "--locked"],
        cwd=CRATE,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    if build.returncode != 0:
        if any(marker in build.stderr.lower() for marker in NETWORK_ERRORS):
            skip_or_fail(f"crates.io cannot be reached to build the example:\n{build.stderr}")
        pytest.fail(f"cargo build of examples/rust-component failed:\n{build.stderr}")
    return WASM.read_bytes()


# --- the component binary format: top-level import and export names --------------------------
# https://github.com/WebAssembly/component-model/blob/main/design/mvp/Binary.md


class Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ValueError("unexpected end of the component binary")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def leb(self) -> int:
        """An unsigned LEB128 (also skips an s33 valtype: same byte layout)."""
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            shift += 7
            if not value & 0x80:
                return result

    def name(self) -> str:
        size = self.leb()
        if self.pos + size > self.end:
            raise ValueError("a name runs past its section")
        text = self.data[self.pos : self.pos + size].decode("utf-8")
        self.pos += size
        return text

    def extern_name(self) -> str:
        # 0x00 today; 0x01 marked `a:b/c` interface names in older binaries.
        kind = self.byte()
        if kind not in (0x00, 0x01):
            raise ValueError(f"unknown import/export name kind {kind:#x}")
        return self.name()

    def externdesc(self) -> None:
        kind = self.byte()
        if kind == 0x00:  # core module: 0x11 typeidx
            self.byte()
            self.leb()
        elif kind in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
            self.leb()
        elif kind in (0x02, 0x03):  # value / type bound: 0x00 idx | 0x01 valtype / sub resource
            bound = self.byte()
            if kind == 0x02 or bound == 0x00:
                self.leb()
        else:
            raise ValueError(f"unknown externdesc kind {kind:#x}")


def component_names(wasm: bytes) -> tuple[list[str], list[str]]:
    """The (imports, exports) of a component's top-level import and export sections."""
    if wasm[:4] != b"\0asm" or wasm[6:8] != b"\x01\x00":
        raise ValueError("not a WebAssembly component (a core module, or not wasm at all)")
    imports: list[str] = []
    exports: list[str] = []
    top = Reader(wasm, 8)
    while top.pos < top.end:
        section_id = top.byte()
        size = top.leb()
        section = Reader(wasm, top.pos, top.pos + size)
        top.pos += size
        if section_id == 10:  # import: name externdesc
            for _ in range(section.leb()):
                imports.append(section.extern_name())
                section.externdesc()
        elif section_id == 11:  # export: name sortidx externdesc?
            for _ in range(section.leb()):
                exports.append(section.extern_name())
                if section.byte() == 0x00:  # core sort
                    section.byte()
                section.leb()
                if section.byte() == 0x01:
                    section.externdesc()
    return imports, exports


def test_component_exports_handler_and_imports_consumer(component: bytes) -> None:
    imports, exports = component_names(component)
    print(f"{WASM.name}: {len(component)} bytes\n  imports: {imports}\n  exports: {exports}")
    assert HANDLER in exports
    assert CONSUMER in imports
    # Only what a wasmCloud 1.x host provides: WASI 0.2 (std's cli/io), logging, messaging.
    for name in imports:
        ok = name in (CONSUMER, LOGGING, "wasmcloud:messaging/types@0.2.0") or (
            name.startswith(("wasi:cli/", "wasi:io/")) and "@0.2." in name
        )
        assert ok, f"unexpected import {name!r}"


def test_the_parser_refuses_a_core_module() -> None:
    with pytest.raises(ValueError, match="not a WebAssembly component"):
        component_names(b"\0asm\x01\x00\x00\x00")


# --- running it (wasmtime, when installed) -----------------------------------------------------


@dataclass
class Host:
    """The component's imports, as a test double of the provider and the host's logging."""

    publish_errors: dict[str, str] = field(default_factory=dict)
    answer: Callable[[str, bytes, int], Any] | None = None
    published: list[tuple[str, bytes]] = field(default_factory=list)
    requests: list[tuple[str, bytes, int]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def wasmtime() -> tuple[Any, Any]:
    """(wasmtime, wasmtime.component), typed Any: the package is optional."""
    reason = (
        "the wasmtime package is not installed: not running the component (pip install wasmtime)"
    )
    return (
        pytest.importorskip("wasmtime", reason=reason),
        pytest.importorskip("wasmtime.component", reason=reason),
    )


@pytest.fixture
def call(component: bytes, wasmtime: tuple[Any, Any]) -> tuple[Host, Callable[..., Any]]:
    """A fresh instance and its host; `run(subject, body, reply_to)` calls handle-message and
    returns its result (None for Ok, the text for Err)."""
    wt, wc = wasmtime
    host = Host()

    def record(subject: str, body: bytes, reply_to: str | None) -> Any:
        msg = wc.Record()
        msg.subject = subject
        msg.body = body
        setattr(msg, "reply-to", reply_to)
        return msg

    def publish(_store: Any, msg: Any) -> str | None:
        host.published.append((msg.subject, msg.body))
        return host.publish_errors.get(msg.subject)  # None is Ok(()), a string Err(string)

    def request(_store: Any, subject: str, body: bytes, timeout_ms: int) -> Any:
        host.requests.append((subject, body, timeout_ms))
        assert host.answer is not None
        answer = host.answer(subject, body, timeout_ms)
        return record("rq_1", answer, subject) if isinstance(answer, bytes) else answer

    def log(_store: Any, level: str, _context: str, message: str) -> None:
        host.logs.append((level, message))

    engine = wt.Engine()
    loaded = wc.Component(engine, component)
    linker = wc.Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance(CONSUMER) as consumer:
            consumer.add_func("publish", publish)
            consumer.add_func("request", request)
        with root.add_instance(LOGGING) as logging:
            logging.add_func("log", log)
    store = wt.Store(engine)
    store.set_wasi(wt.WasiConfig())
    instance = linker.instantiate(store, loaded)
    handler = instance.get_export_index(store, HANDLER)
    handle = instance.get_func(store, instance.get_export_index(store, "handle-message", handler))

    def run(subject: str, body: bytes, reply_to: str | None) -> Any:
        return handle(store, record(subject, body, reply_to))

    return host, run


SESSION = "ws_AAAAAAAAAAAAAAAAAAAAAA"


def test_echo_answers_the_reply_to(call: tuple[Host, Callable[..., Any]]) -> None:
    host, run = call
    assert run("chat", b"hi", SESSION) is None
    assert run("chat", b"again", f"{SESSION}.r1") is None
    assert host.published == [(SESSION, b"hi"), (f"{SESSION}.r1", b"again")]


def test_broadcast_and_topics(call: tuple[Host, Callable[..., Any]]) -> None:
    host, run = call
    assert run("broadcast", b"to all", SESSION) is None
    assert run("topic.news.sport", b"goal", SESSION) is None
    assert host.published == [("broadcast", b"to all"), ("news.sport", b"goal")]


def test_ask_sends_the_clients_answer_or_the_error_back(
    call: tuple[Host, Callable[..., Any]],
) -> None:
    host, run = call
    host.answer = lambda _subject, body, _timeout: b"answer to " + body
    assert run("ask", b"question", f"{SESSION}.r1") is None
    host.answer = lambda *_: "timed out after 5000 ms waiting for session " + SESSION
    assert run("ask", b"again", SESSION) is None
    assert host.requests == [
        (f"{SESSION}.ask", b"question", 5000),
        (f"{SESSION}.ask", b"again", 5000),
    ]
    assert host.published == [
        (f"{SESSION}.r1", b"answer to question"),
        (SESSION, f"ask failed: timed out after 5000 ms waiting for session {SESSION}".encode()),
    ]


def test_session_events(call: tuple[Host, Callable[..., Any]]) -> None:
    host, run = call
    connected = b'{"session_id": "%s", "remote_addr": "127.0.0.1:5000", "identity": null}'
    assert run("ws.session.connected", connected % SESSION.encode(), SESSION) is None
    assert run("ws.session.detached", b"{}", SESSION) is None
    assert run("ws.session.resumed", b"{}", SESSION) is None
    # The session is gone: the goodbye's Err is logged, handle-message still returns Ok.
    host.publish_errors[f"{SESSION}.goodbye"] = f"no such session: {SESSION}"
    assert run("ws.session.disconnected", b"{}", SESSION) is None
    assert host.published == [
        (f"{SESSION}.greeting", f"hello {SESSION}".encode()),
        (f"{SESSION}.goodbye", f"goodbye {SESSION}".encode()),
    ]
    assert host.logs == [
        ("info", f"session {SESSION} detached"),
        ("info", f"session {SESSION} resumed"),
        ("info", f"goodbye {SESSION}: no such session: {SESSION}"),
    ]


def test_a_failed_publish_is_an_err_not_a_trap(call: tuple[Host, Callable[..., Any]]) -> None:
    host, run = call
    host.publish_errors[SESSION] = f"no such session: {SESSION}"
    assert run("chat", b"hi", SESSION) == f"no such session: {SESSION}"
    assert run("chat", b"no reply-to", None) is None  # nobody to answer: logged
    assert host.published == [(SESSION, b"hi")]
    assert host.logs == [("warn", "chat: no reply-to")]
