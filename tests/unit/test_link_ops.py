"""The ordered op queue and the link hooks, without NATS: a provider that records its calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

from wasmcloud_provider_sdk import HostData, LinkConfig, LinkNotInEffect, Provider
from wasmcloud_provider_sdk.context import ProviderContext
from wasmcloud_provider_sdk.control import Op, OpKind, parse_link_definition
from wasmcloud_provider_sdk.link_ops import LinkApplier, apply_in_order
from wasmcloud_provider_sdk.links import LinkTable


def link_json(**kw: object) -> bytes:
    base: dict[str, object] = {
        "source_id": "comp1",
        "target": "prov1",
        "name": "default",
        "wit_namespace": "wasmcloud",
        "wit_package": "messaging",
        "interfaces": ["consumer"],
    }
    base.update(kw)
    return json.dumps(base).encode()


class Recorder(Provider):
    def __init__(self, *, refuse: str = "", not_in_effect: str = "") -> None:
        self.calls: list[tuple[str, Any]] = []
        self.refuse = refuse
        self.not_in_effect = not_in_effect

    async def on_link_as_target(self, link: LinkConfig) -> None:
        self.calls.append(("target", link.link_name))
        if link.link_name == self.refuse:
            raise RuntimeError("refused")
        if link.link_name == self.not_in_effect:
            raise LinkNotInEffect("config incomplete")

    async def on_link_as_source(self, link: LinkConfig) -> None:
        self.calls.append(("source", link.link_name))

    async def on_link_updated_as_target(self, old: LinkConfig, new: LinkConfig) -> None:
        self.calls.append(("updated", (old.config, new.config)))

    async def on_link_deleted_as_target(self, link: LinkConfig) -> None:
        self.calls.append(("deleted", link.link_name))

    async def on_config_update(self, config: dict[str, str]) -> None:
        self.calls.append(("config", config))


def context() -> ProviderContext:
    # The applier reads only the host data, the link table and the config.
    return ProviderContext(
        host_data=HostData(provider_key="prov1"),
        nc=cast(Any, None),
        transport=cast(Any, None),
        handler_client=cast(Any, None),
        links=LinkTable(),
    )


def test_a_link_is_stored_only_after_its_hook_succeeded() -> None:
    provider = Recorder(refuse="bad", not_in_effect="later")
    ctx = context()
    applier = LinkApplier(provider, ctx)

    async def scenario() -> None:
        for name in ("good", "bad", "later"):
            await applier.apply_put(parse_link_definition(link_json(name=name)))
        await applier.apply_put(parse_link_definition(link_json(name="good")))  # duplicate
        await applier.apply_put(parse_link_definition(link_json(target="someone-else")))

    asyncio.run(scenario())
    assert provider.calls == [("target", "good"), ("target", "bad"), ("target", "later")]
    assert sorted(link.name for link in ctx.links) == ["good", "later"]


def test_an_update_and_a_delete_reach_their_hooks_and_deletes_are_remembered() -> None:
    provider = Recorder()
    ctx = context()
    applier = LinkApplier(provider, ctx)
    first = parse_link_definition(link_json(target_config={"a": "1"}))
    second = parse_link_definition(link_json(target_config={"a": "2"}))

    async def scenario() -> None:
        await applier.apply_put(first)
        await applier.apply_put(second)
        await applier.apply_del(second)
        await applier.apply_del(second)  # idempotent

    asyncio.run(scenario())
    assert provider.calls == [
        ("target", "default"),
        ("updated", ({"a": "1"}, {"a": "2"})),
        ("deleted", "default"),
    ]
    assert len(ctx.links) == 0
    assert applier.holds(first.identity)  # deleted since start: never re-applied


def test_ops_are_applied_in_arrival_order_and_a_bad_one_is_skipped() -> None:
    provider = Recorder()
    ctx = context()
    applier = LinkApplier(provider, ctx)
    recovered = asyncio.Event()

    async def recover() -> None:
        provider.calls.append(("lattice", None))
        recovered.set()

    async def scenario() -> None:
        ops: asyncio.Queue[Op] = asyncio.Queue()
        for op in [
            (OpKind.PUT, link_json(name="one")),
            (OpKind.PUT, b"{not json"),
            (OpKind.CONFIG, b'{"k": "v"}'),
            (OpKind.CONFIG, b'{"k": "v"}'),  # identical: ignored
            (OpKind.DELETE, link_json(name="one")),
            (OpKind.LATTICE, b""),
        ]:
            ops.put_nowait(op)
        worker = asyncio.get_running_loop().create_task(apply_in_order(ops, applier, recover))
        try:
            await asyncio.wait_for(recovered.wait(), 5)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    asyncio.run(scenario())
    assert provider.calls == [
        ("target", "one"),
        ("config", {"k": "v"}),
        ("deleted", "one"),
        ("lattice", None),
    ]
    assert ctx.config == {"k": "v"}
