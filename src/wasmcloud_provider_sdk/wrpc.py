"""wRPC over NATS (`wrpc.0.0.1`), both directions: serving exports and invoking them.

docs/PROTOCOL.md, section 4. The wire rules kept here:

* invocation subject `{prefix}.wrpc.0.0.1.{instance}.{function}`, exports queue-subscribed
  with group = prefix;
* the invoker publishes the first parameter bytes with reply = its inbox `Rc`, the server
  answers with an empty handshake whose reply is the server inbox `Rs`;
* further parameter bytes go to `Rs.params`, results to `Rc.results`; an empty message ends
  each stream; a server that cannot run the call sends only the empty end;
* every message fits `max_payload` counting its header block (nats-py does not count it).

One wildcard subscription `{inbox}.>` made at start carries every handshake, result and
parameter chunk addressed to this process; its callback feeds them to the call they belong
to (a small state machine), so a call costs no task, queue, future or timer of its own
(deadlines are checked by one sweep). A served call whose handler answers at once is
answered inside the NATS callback; a handler that has to wait returns an awaitable, which
runs as a task.

No path leaves a peer waiting on us. A served call always ends with its results or, whatever
happened (bad parameters, a failing or cancelled handler), the empty end of the result stream.
An invocation we stop waiting for before its handshake came (timeout, cancellation) is
remembered for `ABANDONED_MEMORY` seconds: if the handshake arrives late, the end of the
parameter stream is still sent, so the peer's call can finish (its result is discarded). A
wasmCloud host holds one of the component's invocation permits until the parameters end;
without that answer a late handshake would keep the permit for ever.

Where each part lives: `wrpc_wire` (sans-I/O: subjects, sizes, chunking, the handshake rule,
the memory of abandoned calls), `wrpc_inbox` (the wildcard subscription and its routing),
`wrpc_serve` (`ExportServer`), `wrpc_invoke` (`Invoker`), `wrpc_trace` (trace context and
spans). `WrpcTransport` is both halves over one connection and one inbox; it inherits them
rather than holding them, so a call costs no extra await or lookup on the hot path.
"""

from __future__ import annotations

from nats.aio.client import Client as NatsClient

from .wire import Wire
from .wire_natspy import NatsPyWire
from .wrpc_invoke import Invoker
from .wrpc_serve import ExportServer
from .wrpc_trace import current_trace_headers
from .wrpc_wire import (
    ABANDONED_MAX,
    ABANDONED_MEMORY,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_PARAMS_TIMEOUT,
    DEFAULT_RESULT_TIMEOUT,
    PROTOCOL,
    STATUS_HEADER,
    TRACE_HEADERS,
    Handler,
    InvocationContext,
    ParamsDecoder,
    header_block_len,
    invocation_subject,
    split_chunks,
)

__all__ = [
    "ABANDONED_MAX",
    "ABANDONED_MEMORY",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_STREAM_BYTES",
    "DEFAULT_PARAMS_TIMEOUT",
    "DEFAULT_RESULT_TIMEOUT",
    "PROTOCOL",
    "STATUS_HEADER",
    "TRACE_HEADERS",
    "ExportServer",
    "Handler",
    "InvocationContext",
    "Invoker",
    "ParamsDecoder",
    "WrpcTransport",
    "current_trace_headers",
    "header_block_len",
    "invocation_subject",
    "split_chunks",
]


class WrpcTransport(ExportServer, Invoker):
    """Serves and invokes wRPC functions over one NATS connection: a `Wire` (the
    provider's runtime passes a `natswire.NatsWire`), or a nats-py client (wrapped in
    `wire_natspy.NatsPyWire`: correct, slower).

    `handshake_timeout` is the default wait for an invoked function's handshake,
    `params_timeout` the wait for each parameter chunk of a served call, `max_stream_bytes`
    the largest parameter or result stream accepted (both directions). Call `start()` once
    before serving or invoking.
    """

    def __init__(
        self,
        nc: Wire | NatsClient,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        params_timeout: float = DEFAULT_PARAMS_TIMEOUT,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
    ) -> None:
        # Cooperative: ExportServer takes params_timeout, Invoker handshake_timeout,
        # InboxRouter the connection and max_stream_bytes.
        wire: Wire = NatsPyWire(nc) if isinstance(nc, NatsClient) else nc
        super().__init__(
            wire,
            handshake_timeout=handshake_timeout,
            params_timeout=params_timeout,
            max_stream_bytes=max_stream_bytes,
        )

    async def close(self) -> None:
        """Close the connection the calls go over (one made for this transport: `NatsWire`;
        a nats-py client handed in stays open, it is the caller's)."""
        await self._wire.close(0.2)
