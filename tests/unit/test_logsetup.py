"""Log lines cannot be forged by values that came from clients."""

from __future__ import annotations

import io
import json
import logging

import pytest

from wasmcloud_provider_sdk.logsetup import configure_logging, escape_controls


@pytest.fixture
def restore_root() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_escape_controls() -> None:
    assert escape_controls("a\r\nb\tc\x00\x1b[31m\u2028") == "a\\r\\nb\\tc\\x00\\x1b[31m\\u2028"
    assert escape_controls("plain é ✓") == "plain é ✓"


def test_text_lines_stay_one_line_per_record(restore_root: object) -> None:
    out = io.StringIO()
    configure_logging("info", False, out)
    forged = "ws_x\r\n2026-01-01 00:00:00,000 ERROR provider: FORGED"
    logging.getLogger("provider.test").info(
        "resume of %s refused", forged, extra={"session_id": forged}
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\\r\\n2026-01-01" in lines[0] and "FORGED" in lines[0]


def test_tracebacks_keep_their_lines(restore_root: object) -> None:
    out = io.StringIO()
    configure_logging("info", False, out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("provider.test").exception("failed for %s", "a\nb")
    lines = out.getvalue().splitlines()
    assert "failed for a\\nb" in lines[0]
    assert lines[1].startswith("Traceback")


def test_json_lines_stay_valid(restore_root: object) -> None:
    out = io.StringIO()
    configure_logging("info", True, out)
    forged = 'x"}\n{"level": "ERROR", "message": "FORGED"}'
    logging.getLogger("provider.test").info("token %s", forged, extra={"session_id": forged})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == f"token {forged}" and record["session_id"] == forged
