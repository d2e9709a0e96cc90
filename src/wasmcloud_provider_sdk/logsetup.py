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


class TextFormatter(logging.Formatter):
    """Human-readable lines; context fields appended as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
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
