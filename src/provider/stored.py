"""`Stored`: the outcome of one history append, for those who wait on it without a task.

A message for a session whose history is kept in JetStream waits for the store twice: its
frame is not written to the client, and the component's `consumer.publish` is not answered,
before JetStream acknowledged it. Both wait here: `then` registers a callback that is
called (synchronously, in order) with `ok` when the append is over — True when stored,
False when it failed, was refused or timed out — so a message costs no task, future or
event-loop wake-up beyond the acknowledgement's own delivery. It is the SDK's `Later` of
that `ok`.
"""

from __future__ import annotations

from wasmcloud_provider_sdk import Later


class Stored(Later[bool]):
    """One append's outcome: `done` once the store answered (or gave up), `ok` when it
    has the message."""

    __slots__ = ()

    @property
    def ok(self) -> bool:
        """Stored (False while not over, or when it failed)."""
        return self.done and self.value

    @classmethod
    def not_stored(cls) -> Stored:
        """An outcome that is over, the message not stored (e.g. the lattice is down)."""
        stored = cls()
        stored.set(False)
        return stored
