"""The wasmCloud WebSocket messaging provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import WebSocketMessagingProvider

__all__ = ["WebSocketMessagingProvider"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `python -m provider` under a host subscribes its control
    # subjects before it imports the WebSocket stack.
    if name == "WebSocketMessagingProvider":
        from .app import WebSocketMessagingProvider

        return WebSocketMessagingProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
