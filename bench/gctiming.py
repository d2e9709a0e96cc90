"""The provider's garbage collections with many sessions open, timed inside the provider.

    python -m bench.gctiming [--sessions 10000] [--repeats 7] [--count-sessions 2000]

Runs the broadcast scenario (`--sessions` idle sessions, `--repeats` broadcasts) with every
collection of the provider timed (`gc.callbacks`, generation, milliseconds, objects
collected), then counts the objects the collector tracks with no session and with
`--count-sessions` sessions open (a full collection first, itself timed). The timing is
loaded into the provider process as a `sitecustomize` module on its PYTHONPATH; the
provider's code is not changed. Prints one summary; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import loadgen, scenarios, services

#: Loaded into the provider: each collection, and a count of tracked objects whenever the
#: file `count` appears beside it, appended to `gc-<pid>.log` there (a thread polls for the
#: request: a signal handler would run only when the event loop next runs Python code,
#: which an idle provider may not do for long).
SITECUSTOMIZE = """
import gc, os, threading, time
_here = os.path.dirname(os.path.abspath(__file__))
_log = open(os.path.join(_here, f"gc-{os.getpid()}.log"), "a", buffering=1)
_started = [0.0]
def _timed(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        ms = (time.perf_counter() - _started[0]) * 1000
        _log.write(f"GCTIME gen={info['generation']} ms={ms:.2f} collected={info['collected']}\\n")
gc.callbacks.append(_timed)
_request = os.path.join(_here, "count")
def _watch():
    while True:
        if os.path.exists(_request):
            os.remove(_request)
            started = time.perf_counter()
            gc.collect()
            ms = (time.perf_counter() - started) * 1000
            _log.write(f"GCOBJECTS objects={len(gc.get_objects())} full_ms={ms:.1f}\\n")
        time.sleep(0.05)
threading.Thread(target=_watch, daemon=True, name="gctiming").start()
"""
#: Seconds to wait for the provider's count of its objects.
COUNT_TIMEOUT = 30.0


def _fields(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in (part.split("=", 1) for part in line.split()[1:])}


def _lines(site: str, pid: int, kind: str) -> list[dict[str, float]]:
    path = Path(site, f"gc-{pid}.log")
    text = path.read_text() if path.exists() else ""
    return [_fields(x) for x in text.splitlines() if x.startswith(kind + " ")]


async def _count(site: str, pid: int) -> dict[str, float]:
    """Ask the provider `pid` to count its tracked objects; its answer."""
    before = len(await asyncio.to_thread(_lines, site, pid, "GCOBJECTS"))
    await asyncio.to_thread(Path(site, "count").touch)
    deadline = time.monotonic() + COUNT_TIMEOUT
    # Polling a file the provider writes: it is not our process, there is no event to await.
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(_lines, site, pid, "GCOBJECTS")
        if len(counts) > before:
            return counts[-1]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the provider did not count its objects within {COUNT_TIMEOUT} s")


async def run(site: str, sessions: int, repeats: int, count_sessions: int) -> dict[str, Any]:
    """`site`: a directory holding `SITECUSTOMIZE` as sitecustomize.py."""
    providers: list[services.Child] = []
    original = services.spawn

    async def spawn(name: str, args: list[str], **kw: Any) -> services.Child:
        if name == "provider":
            kw["env"] = {**(kw.get("env") or {}), "PYTHONPATH": site}
        child = await original(name, args, **kw)
        if name == "provider":
            providers.append(child)
        return child

    services.spawn = spawn
    try:
        sizes = scenarios.Sizes(broadcast_sessions=[sessions], broadcast_repeats=repeats)
        broadcast = (await scenarios.broadcast(sizes))["rows"][0]
        pauses = await asyncio.to_thread(_lines, site, providers[0].pid, "GCTIME")
        async with services.ours(component=None, config={"WELCOME": "true"}) as stack:
            pid = stack.pids["provider"]
            empty = await _count(site, pid)
            holder = await loadgen.Holder.open(
                {
                    "proto": "ws",
                    "url": stack.url,
                    "welcome": True,
                    "clients": count_sessions,
                    "workers": 1,
                    "local_addrs": scenarios.LOCAL_ADDRS,
                    "concurrency": 100,
                }
            )
            try:
                full = await _count(site, pid)
            finally:
                await holder.close()
    finally:
        services.spawn = original
    by_gen = {gen: [p["ms"] for p in pauses if p["gen"] == gen] for gen in (0, 1, 2)}
    return {
        "sessions": sessions,
        "broadcast_median_ms": broadcast["median_ms"],
        "broadcast_max_ms": broadcast["max_ms"],
        "collections": {
            gen: {
                "count": len(ms),
                "median_ms": round(statistics.median(ms), 2) if ms else None,
                "max_ms": round(max(ms), 2) if ms else None,
            }
            for gen, ms in by_gen.items()
        },
        "gen2_ms": [round(ms, 1) for ms in by_gen[2]],
        "objects_empty": int(empty["objects"]),
        "objects_with_sessions": int(full["objects"]),
        "count_sessions": holder.ok,
        "objects_per_session": round((full["objects"] - empty["objects"]) / max(holder.ok, 1), 1),
        "full_collection_ms": {"empty": empty["full_ms"], "with_sessions": full["full_ms"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gctiming", description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--count-sessions", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as site:
        Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
        out = asyncio.run(run(site, args.sessions, args.repeats, args.count_sessions))
    print(
        f"broadcast to {out['sessions']}: median {out['broadcast_median_ms']} ms, "
        f"max {out['broadcast_max_ms']} ms"
    )
    for gen, c in out["collections"].items():
        print(
            f"generation {gen} collections: {c['count']}, median {c['median_ms']} ms, "
            f"max {c['max_ms']} ms"
        )
    print(f"generation 2 pauses (ms): {out['gen2_ms']}")
    print(
        f"tracked objects: {out['objects_empty']} with no session, "
        f"{out['objects_with_sessions']} with {out['count_sessions']} sessions: "
        f"{out['objects_per_session']} per session; a full collection took "
        f"{out['full_collection_ms']['empty']} ms and "
        f"{out['full_collection_ms']['with_sessions']} ms"
    )


if __name__ == "__main__":
    main()
