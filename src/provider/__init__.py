"""The wasmCloud WebSocket messaging provider."""

from .app import WebSocketMessagingProvider

__all__ = ["WebSocketMessagingProvider"]
