"""Logging to stderr as the host expects (docs/PROTOCOL.md, section 2.2)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


#: Record attributes (set with `extra=`) that log lines carry as fields when present.
CONTEXT_FIELDS = ("session_id", "component_id", "link_name", "instance_id")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {k: getattr(record, k) for k in CONTEXT_FIELDS if hasattr(record, k)}


#: Control characters (and Unicode line breaks) in a text log line are written escaped: a
#: value from a client (a URL, a header, a frame) must not be able to start a forged line.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85)} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    """`text` with every control character and line break written as an escape."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """Human-readable lines; context fields appended as `key=value`. The message and the
    context values are escaped (one record, one line; a traceback follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        if context:
            fields = " ".join(f"{k}={escape_controls(str(v))}" for k, v in context.items())
            line += " [" + fields + "]"
        return line


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, target (logger), message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(
    level: str | None, structured: bool, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger to stderr at `level` (host names: trace…critical; default info)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if structured:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get((level or "info").lower(), logging.INFO))
    # nats-py logs every reconnect attempt at error level; keep it at warning unless debugging.
    return handler
