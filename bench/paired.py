"""Settings (or versions of the provider) measured side by side, at the same time.

`python -m bench paired --sides off,js` starts one complete stack per side (nats-server,
provider, stand-in component: all on the server core, as in every scenario) and runs their
round trips *at once*, each with its own generator, for `--rounds` rounds. Sequential runs
on this machine drift by ±15-30 % in msgs/s between minutes, more than a 10 % effect; sides
measured in the same seconds share that drift, so their ratio is steady. Each side gets
about 1/n of the core: absolute figures are lower than the round-trip scenario's, and a
cost that shrinks with batching (the JetStream journal) weighs somewhat more. Not part of
`all`; it prints its table.

A side is `name` or `name=setting[@src]`: `setting` one of `SETTINGS`, `src` a `src/`
directory to run the provider from (e.g. a `git worktree` of an older commit), for
comparing code versions the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass
from typing import Any

from . import loadgen, scenarios, services

#: name -> (endpoint config, JetStream on the lattice)
SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "off": ({"RESUME_WINDOW_SEC": "0"}, False),
    "mem": ({}, False),
    "js": ({}, True),
}


@dataclass
class Side:
    name: str
    config: dict[str, str]
    jetstream: bool
    src: str | None


def parse_side(spec: str) -> Side:
    """`name` or `name=setting[@src]` (ValueError naming what is wrong)."""
    name, _, rest = spec.partition("=")
    setting, _, src = (rest or name).partition("@")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r} in {spec!r} (known: {', '.join(SETTINGS)})")
    config, jetstream = SETTINGS[setting]
    return Side(name, config, jetstream, src or None)


@contextlib.asynccontextmanager
async def _stack(side: Side) -> Any:
    if side.src is None:
        async with services.ours(
            component="auto", config=side.config, jetstream=side.jetstream
        ) as stack:
            yield stack
        return
    original = services.spawn

    async def spawn(name: str, args: list[str], **kw: Any) -> services.Child:
        if name == "provider":
            kw["env"] = {**(kw.get("env") or {}), "PYTHONPATH": side.src}
        return await original(name, args, **kw)

    services.spawn = spawn
    try:
        entered = services.ours(component="auto", config=side.config, jetstream=side.jetstream)
        stack = await entered.__aenter__()
    finally:
        services.spawn = original
    try:
        yield stack
    finally:
        await entered.__aexit__(None, None, None)


async def run(sides: list[Side], rounds: int, sizes: scenarios.Sizes) -> dict[str, Any]:
    measured: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    async with contextlib.AsyncExitStack() as exits:
        stacks = [await exits.enter_async_context(_stack(side)) for side in sides]
        for round_no in range(rounds):
            results = await asyncio.gather(
                *(
                    loadgen.round_trips(scenarios._rt_config(s, sizes, sizes.clients), s.pids)
                    for s in stacks
                )
            )
            for side, rt in zip(sides, results, strict=True):
                measured[side.name].append(rt)
            scenarios._log(
                f"paired round {round_no + 1}: "
                + ", ".join(
                    f"{side.name} {rt['msgs_per_s']:.0f} msg/s"
                    for side, rt in zip(sides, results, strict=True)
                )
            )
    return {"clients": sizes.clients, "window": sizes.window, "rounds": rounds, "sides": measured}


def markdown(found: dict[str, Any], command: str) -> str:
    sides: dict[str, list[dict[str, Any]]] = found["sides"]
    first = next(iter(sides))
    base = sides[first]
    lines = [
        f"`{command}`: {found['rounds']} rounds, all sides at once, {found['clients']} clients "
        f"x {found['window']} in flight each.",
        "",
        f"| side | msgs/s (median) | ÷ {first}, per round | median ratio | provider µs/msg "
        "| nats-server µs/msg | component µs/msg |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rts in sides.items():
        ratios = [rt["msgs_per_s"] / ref["msgs_per_s"] for rt, ref in zip(rts, base, strict=True)]

        def med(key: str, rts: list[dict[str, Any]] = rts) -> float:
            return statistics.median(float(rt["cpu_us_per_msg"].get(key, 0.0)) for rt in rts)

        lines.append(
            f"| {name} | {statistics.median(rt['msgs_per_s'] for rt in rts):,.0f} | "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f" | {statistics.median(ratios):.2f}× | {med('provider'):.1f} | "
            f"{med('nats-server'):.1f} | {med('component'):.1f} |"
        )
    return "\n".join(lines)
