"""Scale-out: several provider instances (separate processes, one provider id, one
nats-server) act as one. Clients are spread over them; a component's consumer calls land on
whichever instance the wRPC queue group picks."""

from __future__ import annotations

import asyncio
import time
import uuid

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

CALLS = 20  # enough that both instances serve some calls (chance all on one: 2 * 2**-20)


class Instance:
    def __init__(self, proc: ProviderProcess, port: int, instance_id: str) -> None:
        self.proc = proc
        self.port = port
        self.id = instance_id

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def start_instances(host: FakeHost, n: int) -> list[Instance]:
    """n processes with the same provider id and links; each listens on its own port (given
    as provider-level config, as a host-specific named config would)."""
    links = [
        host.consumer_link("comp1"),
        host.handler_link("comp1", source_config={"MODE": "server"}),
        # comp2 has an endpoint of its own (on a random port) next to comp1's
        host.consumer_link("comp2", target_config={"MODE": "server", "URI": "127.0.0.1:0/c2"}),
    ]
    instances = []
    for _ in range(n):
        port, instance_id = free_port(), str(uuid.uuid4())
        proc = await host.start_provider(
            WS_PROVIDER,
            link_definitions=links,
            instance_id=instance_id,
            config={"URI": f"127.0.0.1:{port}/ws"},
        )
        await proc.wait_for_line(" ready: ")
        instances.append(Instance(proc, port, instance_id))
    return instances


async def test_targeted_broadcast_topic_and_request_across_instances(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    a_inst, b_inst = await start_instances(host, 2)
    a, b = await Client.open(a_inst.url), await Client.open(b_inst.url)
    # Targeted sends to sessions on both instances, whichever instance serves the call.
    for i in range(CALLS):
        for client in (a, b):
            assert await comp.publish(client.session_id, str(i).encode()) == Ok()
    for client in (a, b):
        assert [(await client.recv())["body"] for _ in range(CALLS)] == [
            str(i) for i in range(CALLS)
        ]
    # Broadcast: every session once per publish.
    for i in range(CALLS):
        assert await comp.publish("broadcast", f"b{i}".encode()) == Ok()
    for client in (a, b):
        got = sorted([(await client.recv())["body"] for _ in range(CALLS)])
        assert got == sorted(f"b{i}" for i in range(CALLS))
    # Topics across instances.
    await a.send({"type": "subscribe", "subject": "news.*"})
    await b.send({"type": "subscribe", "subject": "news.>"})
    await a.message("sync-a")
    await b.message("sync-b")
    assert {(await comp.next()).subject for _ in range(2)} == {"sync-a", "sync-b"}
    for i in range(CALLS):
        assert await comp.publish("news.tech", f"n{i}".encode()) == Ok()
    for client in (a, b):
        got = sorted([(await client.recv())["body"] for _ in range(CALLS)])
        assert got == sorted(f"n{i}" for i in range(CALLS))
    # Exactly once: the next frame each client sees is a marker, not a duplicate.
    for client in (a, b):
        assert await comp.publish(client.session_id, b"marker") == Ok()
        assert (await client.recv())["body"] == "marker"
    # Requests to sessions on either instance, answered by the client.
    for client in (a, b):
        for _ in range(4):
            task = asyncio.create_task(comp.request(client.session_id, b"q?", 5000))
            question = await client.recv()
            await client.message(question["reply_to"], "a!")
            result = await task
            assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage)
            assert result.value.body == b"a!"
    # Timeouts are honoured across instances too.
    result = await comp.request(b.session_id, b"ignored", 300)
    assert isinstance(result, Err) and "timed out after 300 ms" in result.message
    # Unknown sessions: no instance answers.
    ghost = "ws_" + "G" * 22
    assert await comp.publish(ghost, b"x") == Err(f"no such session: {ghost}")


async def test_isolation_holds_across_instances(host: FakeHost) -> None:
    comp1 = await TestComponent(host, "comp1").serve()
    comp2 = TestComponent(host, "comp2")
    a_inst, b_inst = await start_instances(host, 2)
    a, b = await Client.open(a_inst.url), await Client.open(b_inst.url)
    for _ in range(CALLS // 2):
        for client in (a, b):
            assert await comp2.publish(client.session_id, b"x") == Err(
                f"no such session: {client.session_id}"
            )
    assert await comp2.publish("broadcast", b"not for you") == Ok()
    assert await comp1.publish(a.session_id, b"mine") == Ok()
    assert (await a.recv())["body"] == "mine"  # comp2's broadcast reached nobody


async def test_instance_killed_mid_traffic(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    survivors = await start_instances(host, 3)
    victim = survivors.pop()
    clients = [await Client.open(i.url) for i in survivors]
    doomed = await Client.open(victim.url)
    listed = await list_cluster(host, comp)
    assert {s["instance"] for s in listed} == {i.id for i in [*survivors, victim]}
    await victim.proc.kill()  # SIGKILL: no goodbye
    for i in range(CALLS):
        for client in clients:
            assert await comp.publish(client.session_id, str(i).encode()) == Ok()
    for client in clients:
        assert [(await client.recv())["body"] for _ in range(CALLS)] == [
            str(i) for i in range(CALLS)
        ]
    assert await comp.publish(doomed.session_id, b"x") == Err(
        f"no such session: {doomed.session_id}"
    )
    listed = await list_cluster(host, comp)
    assert {s["session_id"] for s in listed} == {c.session_id for c in clients}


async def list_cluster(host: FakeHost, comp: TestComponent) -> list[dict[str, object]]:
    """Ask any instance for the cluster-wide session list (the subject the API uses)."""
    import msgpack

    assert host.nc is not None
    inbox = host.nc.new_inbox()
    sub = await host.nc.subscribe(inbox)
    out: list[dict[str, object]] = []
    try:
        await host.nc.publish(f"wsp.{host.lattice}.{host.provider_id}.list", b"", reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            out.extend(msgpack.unpackb(msg.data)["sessions"])
    finally:
        await sub.unsubscribe()
    del comp
    return out


async def test_list_ws_clients_cluster_wide(nats_server: object) -> None:
    """The Python API on two in-process instances (each with its own NATS connection)."""
    from bench.cross_instance import host_data

    from provider import WebSocketMessagingProvider
    from wasmcloud_provider_sdk.runtime import ProviderRuntime

    url = nats_server.url  # type: ignore[attr-defined]
    ports = [free_port(), free_port()]
    providers = [WebSocketMessagingProvider(), WebSocketMessagingProvider()]
    runtimes = [
        ProviderRuntime(p, host_data(url, port)) for p, port in zip(providers, ports, strict=True)
    ]
    for runtime in runtimes:
        await runtime.start()
    try:
        clients = [await Client.open(f"ws://127.0.0.1:{port}/ws") for port in ports]
        listed = await providers[0].list_ws_clients(cluster=True)
        by_session = {s["session_id"]: s["instance"] for s in listed}
        assert by_session == {
            c.session_id: r.host_data.instance_id for c, r in zip(clients, runtimes, strict=True)
        }
        assert len(await providers[0].list_ws_clients()) == 1  # local only by default
    finally:
        for runtime in runtimes:
            await runtime.stop()


async def test_client_mode_sessions_are_reachable_from_any_instance(host: FakeHost) -> None:
    """Client mode is per instance: each instance's connection is a session of its own,
    listed cluster-wide, and a publish to its id is forwarded to the instance that holds it."""
    from tests.peers import PeerServer

    comp = await TestComponent(host, "comp1").serve()
    peer = await PeerServer().start()
    try:
        links = [host.consumer_link("comp1", target_config={"MODE": "client", "URI": peer.url})]
        for _ in range(2):
            proc = await host.start_provider(
                WS_PROVIDER, link_definitions=links, instance_id=str(uuid.uuid4())
            )
            await proc.wait_for_line(" ready: ")
        listed = await list_cluster(host, comp)
        assert [s["mode"] for s in listed] == ["client", "client"]
        assert len({s["instance"] for s in listed}) == 2
        sids = [str(s["session_id"]) for s in listed]
        assert sids[0] != sids[1]
        for i in range(CALLS):
            for n, sid in enumerate(sids):
                assert await comp.publish(f"{sid}.s{n}", str(i).encode()) == Ok()
        got = sorted([(await peer.next_json())["subject"] for _ in range(2 * CALLS)])
        assert got == sorted(["s0"] * CALLS + ["s1"] * CALLS)
        # Each frame went out on the connection of the session it was addressed to.
        counts: dict[object, object] = {}
        for entry in await list_cluster(host, comp):
            counters = entry["counters"]
            assert isinstance(counters, dict)
            counts[entry["session_id"]] = counters["messages_out"]
        assert counts == dict.fromkeys(sids, CALLS)
    finally:
        await peer.stop()


async def test_sessions_no_instance_holds_answer_at_once(host: FakeHost) -> None:
    """A session that closed on one instance, one whose instance was killed, and an id no
    instance ever held: publishes and requests get `no such session` long before any
    timeout, whichever instance the call lands on (under a real host, a component's only
    instance waited 7 s per such call and every other session waited with it)."""
    comp = await TestComponent(host, "comp1").serve()
    a_inst, _, victim = await start_instances(host, 3)
    closed = await Client.open(a_inst.url)
    await closed.close()
    await comp.next_event("ws.session.disconnected")
    orphaned = await Client.open(victim.url)
    await victim.proc.kill()  # SIGKILL: its sessions are held by no instance now
    ghost = "ws_" + "G" * 22
    for sid in (closed.session_id, orphaned.session_id, ghost):
        for _ in range(CALLS // 2):
            started = time.monotonic()
            assert await comp.publish(sid, b"x") == Err(f"no such session: {sid}")
            assert await comp.request(f"{sid}.r", b"?", timeout_ms=5000) == Err(
                f"no such session: {sid}"
            )
            # Answered, not timed out: the request alone would have waited 5 s.
            assert time.monotonic() - started < 1.0, sid
